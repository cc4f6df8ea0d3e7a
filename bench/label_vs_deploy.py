"""Is a tuned profile's time for a kernel what a network's kernel of that shape gets when it is built?

A tuned profile times each kernel with the schedule it got when it was profiled: transferred from the kernels
tuned before it, or searched. A network built later (``measure --recipe tuned``) gives its new kernels the best
schedules of the *final* database's kernels nearby. The models learn the first and are judged on the second.

This bench takes profiled kernels of a workspace and builds each again as a network's new kernel would be built:
from a copy of the workspace whose tuning database holds every record but theirs (the same recipe, trials and
representatives as a profile). Then both builds are timed alternately in the recipe's way, ``--rounds`` rounds,
so the two times of a kernel are side by side. Per kernel: profiled schedule's time, rebuilt schedule's time.

Usage: python bench/label_vs_deploy.py --workspace WS [--op conv2d] [--kernels 48] [--rounds 2] [--trials 16]
Writes bench/out/label_vs_deploy.{json,csv}. The workspace is not changed (its copy is deleted afterwards).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _workspace import delete_campaign, write_outputs  # noqa: E402  (bench/ is the script's folder)
from transfer_sources import copy_without  # noqa: E402

from edgelat.profiler.campaign import ProfileConfig, profile  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def workload_keys(op: str, config: dict[str, Any]) -> set[int]:
    """The tuning-database keys of the kernels ``config`` builds into (those with an anchor block)."""
    import tvm
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    from edgelat.ops import fuse, get_op, kernel_funcs, main_module
    from edgelat.profiler.tuning import MODULE_EQUALITY, _anchor

    probe = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)
    keys = set()
    for func in kernel_funcs(fuse(get_op(op).emit(config))[0]).functions.values():
        if isinstance(func, tvm.tirx.PrimFunc):
            mod = main_module(func)
            if _anchor(mod) is not None:
                keys.add(int(tvm_ffi.structural_hash(probe.commit_workload(mod).mod)))
    return keys


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--op", default="conv2d")
    parser.add_argument("--kernels", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--min-ms", type=float, default=0.25, help="only kernels profiled at least this slow (and at most 40x it)")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    recipe = get_recipe("tuned")
    with open_workspace(args.workspace) as ws:
        rows = [dict(r) for r in ws.store.rows(
            """SELECT m.config_id, m.median_ms, m.campaign_id, k.params FROM measurements m JOIN kernel_configs k USING (config_id)
               WHERE m.device = 'local' AND m.recipe = 'tuned' AND m.op = :op AND m.status = 'ok' AND m.caches = :caches
               AND m.median_ms BETWEEN :lo AND :hi""", {"op": args.op, "caches": recipe.caches, "lo": args.min_ms, "hi": 40 * args.min_ms})]  # fmt: skip
        tuning = ws.tuning_dir("local")
    by_config = {r["config_id"]: r for r in rows}
    picked = random.Random(args.seed).sample(sorted(by_config), min(args.kernels, len(by_config)))
    plan = [(args.op, json.loads(by_config[c]["params"])) for c in picked]
    leave_out: set[int] = set()
    for op, cfg in plan:
        leave_out |= workload_keys(op, cfg)
    times: dict[str, dict[str, list[float]]] = {c: {"profiled": [], "rebuilt": []} for c in picked}
    summary: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M"), **{k: v for k, v in vars(args).items() if k != "workspace"}}
    with tempfile.TemporaryDirectory(prefix="edgelat-loo-") as tmp:
        copy = Path(tmp) / "ws"
        copy.mkdir()
        shutil.copy2(args.workspace / "edgelat.db", copy / "edgelat.db")
        sources = copy_without(tuning, copy / tuning.relative_to(args.workspace), leave_out)
        summary |= {"sources": sources, "left_out_workloads": len(leave_out)}
        print(summary, flush=True)
        cfg = ProfileConfig(configs=tuple(plan), recipe="tuned", trials=args.trials)
        start = time.perf_counter()
        for rd in range(args.rounds):
            for way, path in (("rebuilt", copy), ("profiled", args.workspace)):
                with open_workspace(path) as ws:
                    result = profile(ws, "local", cfg)
                    try:
                        got = {r["config_id"]: r["median_ms"] for r in ws.store.rows(
                            "SELECT config_id, median_ms FROM measurements WHERE campaign_id = :c AND status = 'ok'", {"c": result.campaign_id})}  # fmt: skip
                    finally:
                        if way == "profiled":  # the workspace's own data stays as it was
                            delete_campaign(ws, result.campaign_id)
                for c, ms_ in got.items():
                    if c in times:
                        times[c][way].append(ms_)
                print(f"round {rd + 1} {way}: {len(got)} kernels, {time.perf_counter() - start:.0f} s", flush=True)
                if rd == 0 and way == "rebuilt":
                    summary["rebuild_s"] = round(time.perf_counter() - start, 1)
    out = []
    for c in picked:
        t = times[c]
        if t["profiled"] and t["rebuilt"]:
            p, r = statistics.median(t["profiled"]), statistics.median(t["rebuilt"])
            out.append({"config_id": c, "params": by_config[c]["params"], "stored_ms": by_config[c]["median_ms"],
                        "profiled_ms": p, "rebuilt_ms": r, "ratio": r / p})  # fmt: skip
    ratios = sorted(o["ratio"] for o in out)
    logs = [abs(math.log(x)) for x in ratios]
    summary |= {
        "kernels_timed": len(out),
        "ratio_median": statistics.median(ratios),
        "ratio_p10_p25_p75_p90": [ratios[int(q * (len(ratios) - 1))] for q in (0.1, 0.25, 0.75, 0.9)],
        "within_10pct": sum(abs(x - 1) <= 0.1 for x in ratios),
        "mean_abs_log_ratio": statistics.mean(logs),
        "sum_profiled_ms": sum(o["profiled_ms"] for o in out),
        "sum_rebuilt_ms": sum(o["rebuilt_ms"] for o in out),
    }
    print(summary, flush=True)
    write_outputs("label_vs_deploy", summary, out)


if __name__ == "__main__":
    main()
