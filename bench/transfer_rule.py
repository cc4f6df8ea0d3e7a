"""Two ways of tuning networks from the same start, timed side by side. ``--compare share`` (the default): when a
transferred schedule is kept without a search, beating untuned code (1.5x) alone, or also reaching a share
of the throughput its sources reached (``KernelTuner(keep_share=...)``). ``--compare caches``: MetaSchedule's
candidates (searched and transferred) timed warm, or the way the tuned recipe times its kernels (``llc``).
``--compare sources``: transfer from the nearest tuned kernels only, or from those and the ``--fastest`` nearby that
reached the highest throughput (``KernelTuner(fastest=...)``; ``bench/transfer_sources.py`` compares them kernel by
kernel).

Untuned dense convolutions are so slow that almost any transferred schedule beats them 1.5x, so a kernel can keep a
schedule far worse than its neighbours' without being searched. This bench builds networks tuned both ways from the
same start and times them side by side:

1. the representatives: each network built tuned from an empty database (``Representatives()``, the campaign's
   default: a kernel with none of its anchor within the radius is searched long), keeping only the representatives'
   records (workloads with at least half the representatives' trials);
2. each way from a copy of that database: every other kernel takes the nearest tuned schedules and is searched
   ``--trials`` where they fall short by that way's rule (new representatives are searched as in 1.);
3. the networks built each way timed on `local` (one thread), alternating, ``--rounds`` times; medians.

Usage: python bench/transfer_rule.py [--compare share|caches|sources] [--fastest 4] [--networks resnet18@96,mobilenetv2_100@160]
       [--keep-share 0.5] [--trials 16] [--rep-trials 256] [--rounds 5] [--state DIR] [--start DB] [--stem NAME]
Writes bench/out/transfer_rule.{json,csv} (``--compare caches``: candidate_caches.{json,csv}; ``--compare sources``:
transfer_sources_networks.{json,csv}). The databases stay in ``--state`` (default ~/.cache/edgelat-transfer-rule):
a rerun reuses step 1's representatives. ``--start DB``: start from a device's tuning database (a profile's) instead of
step 1's. ``--stem``: the output files' name.
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.ops.network import relax_from_torch  # noqa: E402
from edgelat.profiler.builds import Builder  # noqa: E402
from edgelat.profiler.e2e import build_network  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.profiler.tuning import KernelTuner, Representatives, TuneOutcome  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def build_all(
    ws: Any,
    agent: Any,
    networks: list[tuple[str, Any, int]],
    db: Path,
    out: Path,
    keep_share: float,
    trials: int,
    reps: Representatives,
    caches: str = "warm",
    fastest: int | None = None,
) -> dict[str, dict[str, Any]]:
    """Each network built tuned into ``out``/NAME.so through one tuner on ``db``: tuning seconds and what each kernel did."""
    device = get_device(ws, "local")
    target = device.target("tuned")
    found: dict[str, dict[str, Any]] = {}
    with Builder(ws.cache_dir) as workers:
        tuner = KernelTuner(
            db, target, 1, None, lambda p, a: agent.time_library(Path(p), a, caches=caches), builder=workers,
            representatives=reps, keep_share=keep_share, **({} if fastest is None else {"fastest": fastest}),
        )  # fmt: skip
        outcomes: list[TuneOutcome] = []
        tune = tuner.tune

        def tune_and_keep(func: Any, n: int) -> TuneOutcome:
            outcome = tune(func, n)
            outcomes.append(outcome)
            return outcome

        tuner.tune = tune_and_keep  # type: ignore[method-assign]
        try:
            for name, factory, resolution in networks:
                outcomes.clear()
                mod = relax_from_torch(factory().eval(), torch.randn(1, 3, resolution, resolution))
                start = time.perf_counter()
                build_network(mod, target, out / f"{name}.so", None, get_recipe("tuned"), tuner, trials)
                found[name] = {
                    "build_s": time.perf_counter() - start,
                    "kernels": len(outcomes),
                    "searched": sum(o.searched for o in outcomes),
                    "kept_transfer": sum(o.kept_transfer for o in outcomes),
                    "tune_s": sum(o.tune_s for o in outcomes),
                }
                print(name, found[name], flush=True)
        finally:
            tuner.close()
    return found


def keep_representatives(src: Path, dst: Path, min_records: int) -> int:
    """A database in ``dst`` holding the records of the workloads of ``src`` with at least ``min_records`` measured
    records (the representatives); returns how many there are."""
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    from edgelat.profiler.tuning import MODULE_EQUALITY

    source = ms.database.JSONDatabase(work_dir=str(src), module_equality=MODULE_EQUALITY)
    groups: dict[int, list[Any]] = {}
    for record in source.get_all_tuning_records():
        if record.run_secs:
            groups.setdefault(int(tvm_ffi.structural_hash(record.workload.mod)), []).append(record)
    dst.mkdir(parents=True)
    kept = ms.database.JSONDatabase(work_dir=str(dst), module_equality=MODULE_EQUALITY)
    reps = [records for records in groups.values() if len(records) >= min_records]
    for records in reps:
        workload = kept.commit_workload(records[0].workload.mod)
        for r in records:
            kept.commit_tuning_record(ms.database.TuningRecord(r.trace, workload, r.run_secs, r.target, r.args_info))
    return len(reps)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--compare", choices=("share", "caches", "sources"), default="share")
    parser.add_argument("--networks", default="resnet18@96,mobilenetv2_100@160", help="as `edgelat validate --zoo`")
    parser.add_argument("--keep-share", type=float, default=0.5)
    parser.add_argument("--fastest", type=int, default=4, help="--compare sources: the fastest sources nearby tried too")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--rep-trials", type=int, default=Representatives().trials)
    parser.add_argument(
        "--start", type=Path, help="a device's tuning database (a profile's) to start from instead of the representatives of 1."
    )
    parser.add_argument("--stem", help="Output file name in bench/out (without suffix).")
    parser.add_argument("--state", type=Path, default=Path.home() / ".cache" / "edgelat-transfer-rule")
    args = parser.parse_args()
    networks = validation_networks(args.networks)
    reps = Representatives(trials=args.rep_trials)
    args.state.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {
        "networks": args.networks, "compare": args.compare, "keep_share": args.keep_share, "trials": args.trials, "start": str(args.start or ""),
    }  # fmt: skip
    rows: list[dict[str, Any]] = []
    with open_workspace(args.state / "ws") as ws:
        device = get_device(ws, "local")
        with agent_session(ws, device, threads=1) as agent:
            first = args.state / "representatives-search"
            start_db = args.start or args.state / "representatives"
            if args.start is None and not start_db.exists():
                shutil.rmtree(first, ignore_errors=True)
                start = time.perf_counter()
                summary["representatives_build"] = build_all(ws, agent, networks, first / "db", first / "libs", 0.0, args.trials, reps)
                summary["representatives_s"] = time.perf_counter() - start
                summary["representatives"] = keep_representatives(first / "db", args.state / "representatives", reps.trials // 2)
            # Each way: (keep_share, how candidates are timed, how many of the fastest sources nearby are tried).
            if args.compare == "share":
                ways = {"speedup": (0.0, "warm", None), f"speedup+share{args.keep_share:g}": (args.keep_share, "warm", None)}
            elif args.compare == "caches":
                ways = {"candidates-warm": (0.0, "warm", 0), "candidates-llc": (0.0, get_recipe("tuned").caches, 0)}
            else:
                ways = {"sources-nearest": (0.0, "warm", 0), f"sources-nearest+fastest{args.fastest}": (0.0, "warm", args.fastest)}
            libs: dict[str, Path] = {}
            for way, (share, caches, fastest) in ways.items():
                work = args.state / way
                shutil.rmtree(work, ignore_errors=True)
                shutil.copytree(start_db, work / "db")
                summary[way] = build_all(ws, agent, networks, work / "db", work / "libs", share, args.trials, reps, caches, fastest)
                libs[way] = work / "libs"
            # Side by side: each network's builds timed alternately.
            for name, _, resolution in networks:
                times: dict[str, list[float]] = {way: [] for way in ways}
                inputs = [[[1, 3, resolution, resolution], "float32"]]
                remote = {way: agent.remote_library(libs[way] / f"{name}.so", prefix=way) for way in ways}
                for way in ways:
                    agent.transport.put(libs[way] / f"{name}.so", remote[way])
                for _ in range(args.rounds):
                    for way in ways:
                        reply = agent.request("bench_network", {"lib": remote[way], "inputs": inputs, "repeat": 5, "min_repeat_ms": 100.0}, timeout=1800)
                        times[way].append(statistics.median(reply["seconds"]) * 1000)
                for way in ways:
                    rows.append({"network": name, "way": way, "ms": statistics.median(times[way]), **summary[way][name]})
                    print(rows[-1], flush=True)
    write_outputs(args.stem or {"share": "transfer_rule", "caches": "candidate_caches", "sources": "transfer_sources_networks"}[args.compare], summary, rows)


if __name__ == "__main__":
    main()
