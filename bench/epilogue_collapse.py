"""Network kernels scheduled from the device's tuning database with their epilogue collapsed first, or as they come.

Kernels share tuning records by anchor block (the conv, the matmul), whatever their epilogue, and MetaSchedule's
anchor-trace scheduling replays the record's inlining by block name. A record from a ``conv -> add -> relu`` kernel
breaks a swish epilogue (``add -> sigmoid -> multiply``): the schedule applies but does not build, and a network
build falls back to untuned code for it. ``schedule_like`` collapses the epilogue first (``collapse_epilogue``).
For every distinct kernel of the networks with a record, this bench applies the anchor's fastest record both ways
and reports whether each builds and, where the two differ, both timings (1 thread, this process, median of 5
repeats, the two alternated) and the untuned kernel's.

Usage: python bench/epilogue_collapse.py --workspace WS [--networks efficientnet_b0@96,...]
Writes bench/out/epilogue_collapse.{json,csv}.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)
from transfer_sources import network_funcs  # noqa: E402

from edgelat.profiler.builds import _lowers  # noqa: E402
from edgelat.profiler.inventory import get_device  # noqa: E402
from edgelat.profiler.tuning import KernelTuner, _anchor, anchor_trace, kernel_args, schedule_like  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def _timer(func: Any, target: Any) -> Any:
    import tvm

    lib = tvm.compile(tvm.IRModule({"main": func}), target=target)
    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.uniform(0.1, 1.0, size=shape).astype(dtype), dev) for shape, dtype in kernel_args(func)]
    timer = lib.mod.time_evaluator("main", dev, number=1, repeat=1, min_repeat_ms=20)
    return lambda: float(timer(*args).results[0]) * 1e3


def main() -> None:
    import tvm
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--networks", default="efficientnet_b0@96,mobilenetv3_small_100@160,ghostnet_100@96,resnet18@96")
    parser.add_argument("--device", default="local")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    with open_workspace(args.workspace) as ws:
        target = get_device(ws, args.device).target("tuned")
        tuner = KernelTuner(ws.tuning_dir(args.device), target, 1, None, measure=None)
        seen: set[int] = set()
        for network, mods in network_funcs(args.networks).items():
            for mod in mods:
                key = int(tvm_ffi.structural_hash(mod))
                anchor = _anchor(mod)
                if key in seen or anchor is None or not tuner.database.has_workload(mod):
                    continue
                seen.add(key)
                (record,) = tuner.database.get_top_k(tuner.database.commit_workload(mod), 1)
                funcs: dict[str, Any] = {}
                for way in ("as_they_come", "collapsed"):
                    try:
                        if way == "collapsed":
                            sch = schedule_like(mod, anchor_trace(record), tuner.target)
                        else:
                            sch = tvm.s_tir.Schedule(mod)
                            ms.trace_apply.schedule_using_anchor_trace(sch, anchor_trace(record), tuner.target)
                    except Exception:  # noqa: BLE001 - the record does not apply this way
                        continue
                    if _lowers(sch.mod["main"], target):
                        funcs[way] = sch.mod["main"]
                row: dict[str, Any] = {
                    "network": network, "anchor": anchor[0], "extents": "x".join(map(str, anchor[1])),
                    "builds_as_they_come": "as_they_come" in funcs, "builds_collapsed": "collapsed" in funcs,
                    "same": len(funcs) == 2 and tvm_ffi.structural_equal(funcs["as_they_come"], funcs["collapsed"]),
                    "untuned_ms": None, "as_they_come_ms": None, "collapsed_ms": None,
                }  # fmt: skip
                if not row["same"]:
                    timers = {"untuned": _timer(mod["main"], tuner.target), **{w: _timer(f, tuner.target) for w, f in funcs.items()}}
                    times: dict[str, list[float]] = {w: [] for w in timers}
                    for _ in range(args.rounds):
                        for way, timer in timers.items():
                            times[way].append(timer())
                    for way, ts in times.items():
                        row[f"{way}_ms"] = statistics.median(ts)
                rows.append(row)
                print(row, flush=True)
        tuner.close()
    differ = [r for r in rows if not r["same"]]
    summary = {
        "kernels": len(rows),
        "schedules_differ": len(differ),
        "build_as_they_come": sum(r["builds_as_they_come"] for r in rows),
        "build_collapsed": sum(r["builds_collapsed"] for r in rows),
        # What a network build runs where the two differ: the record's schedule if it builds, else untuned code.
        "differing_ms": {
            way: sum(r[f"{way}_ms"] if r[f"builds_{way}"] else r["untuned_ms"] for r in differ) for way in ("as_they_come", "collapsed")
        },
    }
    print(summary)
    write_outputs("epilogue_collapse", summary, rows)


if __name__ == "__main__":
    main()
