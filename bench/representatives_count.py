"""How many representatives a tuned campaign searches long, with and without ``Representatives(same_unit_loops)``.

Each representative costs a long search (``--rep-trials``, minutes), so a rule that makes more of them makes a
profile slower. This replays a campaign that was run, in the order its kernels were measured, through the
representatives' rule (:meth:`edgelat.profiler.tuning.KernelTuner.needs_representative`: same anchor, within
``--radius``, and with ``same_unit_loops`` the same loops of extent 1), from an empty database: which kernels would
have become representatives. Nothing is built or timed; each kernel's anchor comes from its lowered PrimFunc.

The rule skips a kernel whose code before the search (untuned, or transferred) runs in under ``min_ms``; that time
is not in the store, so two bounds are given: every kernel counted (``upper``), and kernels whose tuned time is under
``min_ms`` left out (``lower``: a kernel tuned under it may have been over it before its search).

Without a workspace, the kernels are the first ``--kernels`` of the plan a tuned campaign would measure
(``edgelat profile local --recipe tuned --ops conv2d,dwconv2d,dense --samples 30 --minutes M``: 500 configs of each
kind, interleaved, measured in that order); no times, so only the upper bound.

Usage: python bench/representatives_count.py --workspace WS [--campaign 1] [--radius 8]
       python bench/representatives_count.py [--ops conv2d,dwconv2d,dense] [--kernels 1000] [--radius 8]
Writes bench/out/representatives_count.json (another radius R: representatives_count_rR.json).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgelat.ops import get_op, kernel_funcs, main_module  # noqa: E402
from edgelat.ops.lowering import fuse  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig, campaign_plan  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.profiler.tuning import Representatives, _anchor, shape_distance, unit_loops  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def anchors(ws: Any, campaign: int) -> list[tuple[str, str, tuple[int, ...], float]]:
    """(op, anchor name, loop extents, tuned ms) of the campaign's measured kernels, in the order they were measured."""
    rows = ws.store.rows(
        """SELECT m.op, k.params, m.median_ms FROM measurements m JOIN kernel_configs k USING (config_id)
           WHERE m.campaign_id = :c AND m.status = 'ok' AND m.median_ms > 0 AND m.caches = :caches ORDER BY m.id""",
        {"c": campaign, "caches": get_recipe("tuned").caches},
    )
    return [(r["op"], *a, float(r["median_ms"])) for r in rows if (a := anchor_of(r["op"], json.loads(r["params"]))) is not None]


def plan_anchors(ops: tuple[str, ...], kernels: int) -> list[tuple[str, str, tuple[int, ...], float]]:
    """(op, anchor name, loop extents, nan) of the first ``kernels`` of a tuned campaign's plan, in its order."""
    _, plan = campaign_plan(ProfileConfig(ops=ops, samples=30, minutes=60.0, recipe="tuned"))
    return [(op, *a, float("nan")) for op, cfg in plan[:kernels] if (a := anchor_of(op, cfg)) is not None]


def anchor_of(op: str, params: dict[str, Any]) -> tuple[str, tuple[int, ...]] | None:
    """The anchor block's name and loop extents of the first fused kernel of ``op`` with ``params`` that has one."""

    funcs = kernel_funcs(fuse(get_op(op).emit(params))[0])
    for gv in funcs.functions:
        if gv.name_hint == "main":
            continue
        anchor = _anchor(main_module(funcs[gv]))
        if anchor is not None:
            return anchor[0], tuple(anchor[1])
    return None


def representatives(kernels: list[tuple[str, str, tuple[int, ...], float]], rule: Representatives, lower: bool) -> dict[str, int]:
    """How many of ``kernels``, in order, become representatives under ``rule``, by op."""
    reps: list[tuple[str, tuple[int, ...]]] = []
    counts: dict[str, int] = {}
    for op, name, extents, ms in kernels:
        if lower and ms < rule.min_ms:
            continue
        covered = any(
            n == name
            and len(e) == len(extents)
            and shape_distance(e, extents) <= rule.radius
            and (not rule.same_unit_loops or unit_loops(e) == unit_loops(extents))
            for n, e in reps
        )
        if not covered:
            reps.append((name, extents))
            counts[op] = counts.get(op, 0) + 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, help="a workspace holding a tuned campaign (without one: a tuned campaign's plan)")
    parser.add_argument("--campaign", type=int, default=1)
    parser.add_argument("--ops", default="conv2d,dwconv2d,dense", help="without a workspace: the op kinds profiled")
    parser.add_argument("--kernels", type=int, default=1000, help="without a workspace: how many of the plan's kernels")
    parser.add_argument("--radius", type=float, default=Representatives.radius)
    args = parser.parse_args()
    if args.workspace is None:
        kernels = plan_anchors(tuple(args.ops.split(",")), args.kernels)
        summary: dict[str, Any] = {"plan": args.ops, "kernels": len(kernels), "radius": args.radius}
    else:
        with open_workspace(args.workspace) as ws:
            kernels = anchors(ws, args.campaign)
        summary = {"campaign": args.campaign, "kernels": len(kernels), "radius": args.radius}
    bounds = ("upper",) if args.workspace is None else ("upper", "lower")
    for same in (False, True):
        rule = Representatives(radius=args.radius, same_unit_loops=same)
        summary[f"same_unit_loops={same}"] = {bound: representatives(kernels, rule, bound == "lower") for bound in bounds}
    OUT.mkdir(exist_ok=True)
    name = "representatives_count" + ("" if args.radius == Representatives.radius else f"_r{args.radius:g}")
    (OUT / f"{name}.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
