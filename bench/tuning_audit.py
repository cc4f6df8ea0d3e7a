"""How much of a long search's speedup the cheap ways of tuning keep: the audit set.

Kernels of real networks (distinct anchors of the zoo's networks, in network order) are timed on `local`
(one thread) untuned (`default`), after a long search (the reference: `--full-trials` with `--full-search`), and after each
cheap way:

- small: the budget-sized search alone, `--trials` per kernel, each kernel from an empty database;
- transfer: what a campaign does: one database for the whole set, each new kernel first tries the
  schedules of kernels already tuned (tiles refitted) and searches `--trials` only when they fall short;
- transfer_only: the same, never searching once its ops have a tuned kernel.

For each: share of the full speedup = (t_default - t_cheap) / (t_default - t_full), and tuning seconds.

Usage: python bench/tuning_audit.py [--kernels 10] [--trials 16] [--full-trials 128] [--full-search small] [--full-per-round 16] [--state DIR]
Writes bench/out/tuning_audit.{json,csv}.

Resumable: each kernel's row lands in ``--state``/rows.jsonl as it is done, the tuning databases beside it
(default ~/.cache/edgelat-audit/FULL-TRIALS_TRIALS_FULL-SEARCH_FULL-PER-ROUND); run again with the same settings to go on
from the first kernel without a row (a kernel stopped half-way is tuned again from scratch, except in the
transfer chains, which keep what it had recorded).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from bench.tuning_split import network_anchors  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.tuning import KernelTuner, kernel_args  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def untuned_seconds(func: Any, target: dict[str, Any], measure: Any, tmp: Path) -> float:
    import tvm

    path = tmp / f"untuned-{time.monotonic_ns()}" / "k.so"
    path.parent.mkdir(parents=True)
    tvm.compile(tvm.IRModule({"main": func.with_attr("global_symbol", "main")}), target=tvm.target.Target(target)).export_library(str(path))
    runs = measure(str(path), kernel_args(func))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", type=int, default=10)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--full-trials", type=int, default=128)
    parser.add_argument("--full-search", default="small", help="the reference's search setting (stock costs ~1 min per 16 trials here)")
    parser.add_argument("--full-per-round", type=int, default=16, help="the reference's candidates per search round (MetaSchedule's default: 64)")
    parser.add_argument("--networks", default="mobilenetv2_100,resnet18,mnasnet_100,efficientnet_b0", help="where the kernels come from, in order")
    parser.add_argument("--report", action="store_true", help="summarise the kernels --state holds so far, and stop")
    parser.add_argument("--state", type=Path, help="where rows and tuning databases are kept between runs")
    args = parser.parse_args()
    state = args.state or Path.home() / ".cache" / "edgelat-audit" / f"{args.full_trials}_{args.trials}_{args.full_search}_{args.full_per_round}"
    state.mkdir(parents=True, exist_ok=True)
    done_file = state / "rows.jsonl"
    rows: list[dict[str, Any]] = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    done = {r["kernel"] for r in rows}
    if args.report:  # the kernels done so far, summarised; nothing tuned, nothing written
        table, summary = summarize(rows, args)
        print(table[["kernel", "default_us", "full_us", "small_share", "transfer_share", "transfer_only_share"]].to_string(index=False))
        print(json.dumps(summary, indent=2))
        return
    kernels = network_anchors(args.kernels, tuple(args.networks.split(",")))
    with tempfile.TemporaryDirectory() as tmpdir, open_workspace(Path(tmpdir) / "ws") as ws:
        tmp = Path(tmpdir)
        device = get_device(ws, "local")
        target = device.preset_info.target()
        with agent_session(ws, device, threads=1) as agent:

            def measure(path: str, a: list[list[Any]]) -> list[float]:
                return agent.time_library(Path(path), a, repeat=5, min_repeat_ms=5.0)

            def tuner(name: str, **kw: Any) -> KernelTuner:
                return KernelTuner(state / name, target, 1, None, measure, **kw)

            chain, chain_only = tuner("chain"), tuner("chain-only", keep_speedup=0.0)
            for i, (label, func) in enumerate(kernels):
                if label in done:
                    continue
                for name in (f"full-{i}", f"small-{i}"):  # a kernel stopped half-way starts again
                    shutil.rmtree(state / name, ignore_errors=True)
                row: dict[str, Any] = {"kernel": label, "default_us": untuned_seconds(func, target, measure, tmp) * 1e6}
                for name, t, trials in (
                    ("full", tuner(f"full-{i}", search=args.full_search, transfers=0, per_round=args.full_per_round), args.full_trials),
                    ("small", tuner(f"small-{i}", transfers=0), args.trials),
                    ("transfer", chain, args.trials),
                    ("transfer_only", chain_only, args.trials),
                ):
                    out = t.tune(func, trials)
                    row[f"{name}_us"] = t.best_seconds(func) * 1e6
                    row[f"{name}_tune_s"] = out.tune_s
                    if name.startswith("transfer"):
                        row[f"{name}_searched"] = out.searched
                    if t not in (chain, chain_only):
                        t.close()
                rows.append(row)
                with done_file.open("a") as f:
                    f.write(json.dumps(row) + "\n")
                print(f"{len(rows)}/{len(kernels)}", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            chain.close()
            chain_only.close()
    table, summary = summarize(rows, args)
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "tuning_audit.csv", index=False)
    (OUT / "tuning_audit.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))


def summarize(rows: list[dict[str, Any]], args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each kernel's share of the full speedup per cheap way; medians and tuning seconds over the kernels."""
    table = pd.DataFrame(rows)
    gain = table["default_us"] - table["full_us"]
    summary: dict[str, Any] = {"when": time.strftime("%Y-%m-%d"), "kernels": len(table), "trials": args.trials, "full_trials": args.full_trials,
                               "full_search": args.full_search, "full_per_round": args.full_per_round}  # fmt: skip
    for name in ("small", "transfer", "transfer_only"):
        share = (table["default_us"] - table[f"{name}_us"]) / gain
        table[f"{name}_share"] = share
        summary[name] = {
            "median_share_of_full_speedup": float(share.median()),
            "median_tune_s": float(table[f"{name}_tune_s"].median()),
            "total_tune_s": float(table[f"{name}_tune_s"].sum()),
        }
    summary["full"] = {"median_tune_s": float(table["full_tune_s"].median()), "total_tune_s": float(table["full_tune_s"].sum()),
                       "median_speedup_over_default": float((table["default_us"] / table["full_us"]).median())}  # fmt: skip
    return table, summary


if __name__ == "__main__":
    main()
