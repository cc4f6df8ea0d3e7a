"""Which tuned kernels a new kernel should borrow schedules from: the nearest only, or the nearest and the fastest nearby.

Most kernels of a tuned profile are not searched: they take the best of the schedules of the nearest tuned kernels of
the same anchor (``KernelTuner.transfer``), and become sources for the kernels after them. So a mediocre schedule is
passed on from neighbour to neighbour. This bench takes the networks' kernels, a device tuning database that holds
none of them (the workspace's, their own workloads left out), and times for each kernel, side by side:

- its untuned code;
- the schedules of its ``--nearest`` nearest sources (what the recipe tries by default);
- the schedules of ``--fastest`` more sources: the highest throughput (anchor iterations a second) among the
  ``FASTEST_POOL`` nearest (``KernelTuner(fastest=...)``).

Every candidate is timed ``--rounds`` times, alternating, the way the recipe times candidates; the figures are the
best of each group (medians over the rounds), the throughput each group reached, and each network's kernels summed.

Usage: python bench/transfer_sources.py --workspace WS [--networks resnet18@96,...] [--nearest 4] [--fastest 4]
Writes bench/out/transfer_sources.{json,csv}.
"""

from __future__ import annotations

import argparse
import math
import os
import statistics
import sys
import tempfile
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.ops import main_module  # noqa: E402
from edgelat.ops.lowering import fuse, kernel_funcs  # noqa: E402
from edgelat.ops.network import relax_from_torch  # noqa: E402
from edgelat.profiler.builds import Builder  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.profiler.tuning import KernelTuner, _anchor  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def network_funcs(networks: str) -> dict[str, list[Any]]:
    """Each network's kernels as the tuner gets them (one PrimFunc per fused kernel, repeats kept)."""
    import tvm

    out = {}
    for name, factory, resolution in validation_networks(networks):
        torch.manual_seed(0)
        fused = kernel_funcs(fuse(relax_from_torch(factory().eval(), torch.randn(1, 3, resolution, resolution)))[0])
        funcs = [f for f in fused.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
        out[name] = [main_module(f) for f in funcs]
    return out


def copy_without(src: Path, dst: Path, leave_out: set[int]) -> int:
    """The records of ``src`` but those of the workloads hashed in ``leave_out``, into a new database in ``dst``."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    from edgelat.profiler.tuning import MODULE_EQUALITY

    source = ms.database.JSONDatabase(work_dir=str(src), module_equality=MODULE_EQUALITY)
    dst.mkdir(parents=True, exist_ok=True)
    kept = ms.database.JSONDatabase(work_dir=str(dst), module_equality=MODULE_EQUALITY)
    workloads: dict[int, Any] = {}
    for r in source.get_all_tuning_records():
        key = int(tvm_ffi.structural_hash(r.workload.mod))
        if r.run_secs and key not in leave_out:
            workload = workloads.setdefault(key, kept.commit_workload(r.workload.mod))
            kept.commit_tuning_record(ms.database.TuningRecord(r.trace, workload, r.run_secs, r.target, r.args_info))
    return len(workloads)


def main() -> None:
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    from edgelat.profiler.tuning import MODULE_EQUALITY

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True, help="a workspace whose `local` has a tuning database")
    parser.add_argument("--networks", default="resnet18@96,resnet18@160,squeezenet1_1@128,mobilenetv2_100@160")
    parser.add_argument("--nearest", type=int, default=4)
    parser.add_argument("--fastest", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    nets = network_funcs(args.networks)
    probe = ms.database.MemoryDatabase(module_equality=MODULE_EQUALITY)  # hashes workloads as the tuner's database does
    keys = {int(tvm_ffi.structural_hash(probe.commit_workload(m).mod)): m for ms_ in nets.values() for m in ms_}
    distinct = {k: m for k, m in keys.items() if _anchor(m) is not None}
    caches = get_recipe("tuned").candidate_caches
    summary: dict[str, Any] = {**vars(args), "workspace": str(args.workspace), "caches": caches, "kernels": len(distinct)}
    rows: list[dict[str, Any]] = []
    with open_workspace(args.workspace) as ws, tempfile.TemporaryDirectory(prefix="edgelat-sources-") as tmp:
        device = get_device(ws, "local")
        target = device.target("tuned")
        summary["sources"] = copy_without(ws.tuning_dir("local"), Path(tmp) / "db", set(distinct))
        print(summary, flush=True)
        with agent_session(ws, device, threads=1) as agent, Builder(ws.cache_dir) as workers:
            tuner = KernelTuner(Path(tmp) / "db", target, 1, None, lambda p, a: agent.time_library(Path(p), a, caches=caches), builder=workers)
            try:
                for n, (key, mod) in enumerate(distinct.items()):
                    lent = tuner.lenders(mod, nearest=args.nearest, fastest=args.fastest)
                    if not lent:
                        continue
                    groups = ["untuned"] + ["nearest" if i < args.nearest else "fastest" for i in range(len(lent))]
                    schedules = [tvm_schedule(mod), *(sch for _, sch in lent)]
                    built = tuner.builder.build([ms.builder.BuilderInput(s.mod, tuner.target) for s in schedules])
                    argsinfo = ArgInfo.from_prim_func(mod["main"])
                    runs: list[list[float]] = [[] for _ in built]
                    for _ in range(args.rounds):
                        for i, b in enumerate(built):
                            if not b.error_msg and b.artifact_path:
                                (future,) = tuner.runner.run([ms.runner.RunnerInput(b.artifact_path, "cpu", argsinfo)])
                                result = future.result()
                                if not result.error_msg and result.run_secs:
                                    runs[i].append(statistics.median(float(t) for t in result.run_secs))
                    seconds = [statistics.median(r) if r else math.inf for r in runs]
                    best = {g: min((s for s, gg in zip(seconds, groups, strict=True) if gg == g), default=math.inf) for g in ("untuned", "nearest", "fastest")}
                    name, extents = _anchor(mod)  # type: ignore[misc]
                    iters = math.prod(extents)
                    row = {
                        "workload": key,
                        "anchor": name,
                        "extents": "x".join(map(str, extents)),
                        "uses": sum(int(tvm_ffi.structural_hash(probe.commit_workload(m).mod)) == key for ms_ in nets.values() for m in ms_),
                        "untuned_ms": best["untuned"] * 1e3,
                        "nearest_ms": best["nearest"] * 1e3,
                        "fastest_ms": best["fastest"] * 1e3,
                        "both_ms": min(best["nearest"], best["fastest"]) * 1e3,
                        "nearest_giter_s": iters / best["nearest"] / 1e9,
                        "both_giter_s": iters / min(best["nearest"], best["fastest"]) / 1e9,
                        "sources_giter_s": ",".join(f"{math.prod(s.extents) / s.seconds / 1e9:.1f}" for s, _ in lent),
                    }
                    rows.append(row)
                    print(n, row, flush=True)
            finally:
                tuner.close()
    per = {r["workload"]: r for r in rows}
    for name, mods in nets.items():
        picked = [per[k] for m in mods if (k := int(tvm_ffi.structural_hash(probe.commit_workload(m).mod))) in per]
        summary[name] = {way: round(sum(r[f"{way}_ms"] for r in picked), 3) for way in ("nearest", "both")} | {"kernels": len(picked)}
    gain = np.array([r["nearest_ms"] / r["both_ms"] for r in rows])
    summary["speedup_over_nearest"] = {"median": float(np.median(gain)), "p90": float(np.percentile(gain, 90)), "max": float(gain.max()), "faster_by_10pct": int((gain > 1.1).sum())}
    for way in ("nearest", "both"):
        rates = np.array([r[f"{way}_giter_s"] for r in rows if r["anchor"] == "conv2d_nchw"] or [math.nan])
        summary[f"{way}_conv_giter_s_p10_p50_p90"] = np.percentile(rates, [10, 50, 90]).round(2).tolist()
    print(summary, flush=True)
    write_outputs("transfer_sources", summary, rows)


def tvm_schedule(mod: Any) -> Any:
    """``mod`` untuned, as the tuner times it beside the transferred schedules."""
    from edgelat.profiler.tuning import _untuned

    return _untuned(mod)


if __name__ == "__main__":
    main()
