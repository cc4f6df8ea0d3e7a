"""How much of a long search's speedup the cheap ways of tuning keep: the audit set.

Kernels of real networks (distinct anchors of the zoo's networks, in network order) are timed on `local`
(one thread) untuned (`default`), after a long search (the reference: `--full-trials` with `--full-search`), and after each
cheap way:

- small: the budget-sized search alone, `--trials` per kernel, each kernel from an empty database;
- transfer: what a campaign does: one database for the whole set, each new kernel first tries the
  schedules of kernels already tuned (tiles refitted) and searches `--trials` only when they fall short;
- transfer_only: the same, never searching once its ops have a tuned kernel;
- reps: what a campaign does now: a kernel with no representative of its anchor within ``--rep-radius`` is a
  representative, searched ``--rep-trials`` with the reference's setting; the others take the nearest tuned
  schedules and search ``--trials`` only where those are not 1.5x faster than untuned code. A representative's
  search would be the reference's first ``--rep-trials`` candidates (same search, same rounds), so those records
  are taken from the reference instead of searching again, at that share of its tuning time. A kernel whose untuned
  code runs in under ``Representatives.min_ms`` is not made a representative (a campaign would not search it long);
- reps_loops: the same, with ``Representatives(same_unit_loops=True)``: a representative covers only kernels whose
  loops of extent 1 are its own (a 3x3 convolution's does not cover a 1x1 one);
- reps_r4, reps_r2: the same as reps with a radius of 4 and 2 (more representatives, each nearer its kernels);
- reps_t256, reps_t128, reps_t64: the same as reps with representatives searched 256, 128 and 64 trials, run side by
  side in one go (the ``reps`` leg's ``--rep-trials`` ran with the first legs);
- reps_lean, reps_ref256: representatives searched for real, 256 trials with the ``lean`` setting (not taken from the
  reference), and beside it, in the same run, the reference's first 256 as reps_t256;
- reps_warm128: representatives searched for real, 128 trials of the stock search, with one cost model kept from
  each search of the leg to the next, the representatives' and the 16-trial ones' (MetaSchedule's XGBoost model
  guesses until it holds 100 measured candidates: a cold 128-trial search of 64 a round is guided in none of its
  rounds).

For each: share of the full speedup = (t_default - t_cheap) / (t_default - t_full), and tuning seconds.

Usage: python bench/tuning_audit.py [--kernels 10] [--trials 16] [--full-trials 128] [--full-search small] [--full-per-round 16]
       [--rep-trials 256] [--rep-radius 8] [--order interleaved] [--workers 2] [--state DIR]
Kernels are taken one from each network in turn (``--order interleaved``), so a run stopped early is a sample of
every network; candidates are built in ``--workers`` processes, as a campaign builds them.
Writes bench/out/tuning_audit.{json,csv,png} when all ``--kernels`` are done; ``--report`` writes the kernels done so far
to bench/out/tuning_audit_partial.{json,csv,png} (never over the finished audit's files).

Resumable: each kernel's row lands in ``--state``/rows.jsonl as it is done, the tuning databases beside it
(default bench/state/tuning_audit/FULL-TRIALS_TRIALS_FULL-SEARCH_FULL-PER-ROUND_ORDER, in the repository: at the
issue's size the audit takes most of a day of this machine, longer than a working session, so what is done is
committed and a later run on another machine goes on from it; a reference's database is about 1.7 MB of JSON, 70 kB
compressed). Run again with the same settings to go on from the first kernel without a row (a kernel stopped half-way
is tuned again from scratch, except in the transfer chains, which keep what it had recorded: stop a run right after
a row is printed).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from bench.rep_search_split import register_lean  # noqa: E402
from bench.tuning_split import network_anchors  # noqa: E402
from edgelat.ops import main_module  # noqa: E402
from edgelat.profiler.builds import Builder  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.tuning import KernelTuner, Representatives, kernel_args  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def built_seconds(func: Any, target: dict[str, Any], measure: Any, tmp: Path) -> float:
    """The median seconds of ``func`` (a PrimFunc, scheduled or not) built as it is for ``target``."""
    import tvm

    path = tmp / f"untuned-{time.monotonic_ns()}" / "k.so"
    path.parent.mkdir(parents=True)
    tvm.compile(main_module(func), target=tvm.target.Target(target)).export_library(str(path))
    runs = measure(str(path), kernel_args(func))
    return statistics.median(runs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", type=int, default=10)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--full-trials", type=int, default=128)
    parser.add_argument("--full-search", default="small", help="the reference's search setting (stock costs ~1 min per 16 trials here)")
    parser.add_argument(
        "--full-per-round", type=int, default=16, help="the reference's candidates per search round (MetaSchedule's default: 64)"
    )
    parser.add_argument("--rep-trials", type=int, default=256, help="the reps leg's representatives' trials (at most --full-trials)")
    parser.add_argument("--rep-radius", type=float, default=8.0)
    parser.add_argument(
        "--networks", default="mobilenetv2_100,resnet18,mnasnet_100,efficientnet_b0", help="where the kernels come from, in order"
    )
    parser.add_argument(
        "--order",
        choices=("interleaved", "networks"),
        default="interleaved",
        help="kernels one from each network in turn (any first few are a sample of all the networks) or network after network",
    )
    parser.add_argument("--workers", type=int, default=2, help="build workers for candidates (0: build in this process)")
    parser.add_argument(
        "--report",
        action="store_true",
        help="summarise the kernels --state holds so far into bench/out/tuning_audit_partial.* (tuning_audit.* once all --kernels are done), and stop",
    )
    parser.add_argument(
        "--sources",
        help="instead of tuning: for each budget B (e.g. 16,128,256,512), what transfer alone keeps on each kernel done so far when "
        "its sources are the other kernels' references cut to their first B candidates; writes bench/out/tuning_audit_sources.{json,csv} "
        "(resumable: rows in --state)",
    )
    parser.add_argument("--state", type=Path, help="where rows and tuning databases are kept between runs")
    args = parser.parse_args()
    register_lean()
    state = (
        args.state
        or Path(__file__).parent
        / "state"
        / "tuning_audit"
        / f"{args.full_trials}_{args.trials}_{args.full_search}_{args.full_per_round}_{args.order}"
    )
    state.mkdir(parents=True, exist_ok=True)
    done_file = state / "rows.jsonl"
    rows: list[dict[str, Any]] = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    if args.report:  # the kernels done so far, summarised; nothing tuned
        table, summary = summarize(rows, args)
        print(table[["kernel", "default_us", "full_us", *(f"{leg}_share" for leg in LEGS if f"{leg}_us" in table)]].to_string(index=False))
        write(table, summary, "tuning_audit" if len(rows) >= args.kernels else "tuning_audit_partial")
        return
    kernels = network_anchors(len(rows) if args.sources else args.kernels, tuple(args.networks.split(",")), args.order == "interleaved")
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        open_workspace(Path(tmpdir) / "ws") as ws,
        Builder(Path(tmpdir) / "cache", workers=args.workers) as pool,
    ):
        tmp = Path(tmpdir)
        device = get_device(ws, "local")
        target = device.preset_info.target()
        with agent_session(ws, device, threads=1) as agent:

            def measure(path: str, a: list[list[Any]]) -> list[float]:
                return agent.time_library(Path(path), a, repeat=5, min_repeat_ms=5.0)

            def tuner(name: str, **kw: Any) -> KernelTuner:
                return KernelTuner(state / name, target, 1, None, measure, builder=pool, **kw)

            if args.sources:
                budgets = [int(b) for b in args.sources.split(",")]
                return source_budgets(kernels, budgets, tuner, lambda f: built_seconds(f, target, measure, tmp), tmp, state)

            chain, chain_only = tuner("chain"), tuner("chain-only", keep_speedup=0.0)
            chain_reps = {
                leg: tuner(
                    f"chain-{leg}-{trials or args.rep_trials}-{radius or args.rep_radius:g}",
                    representatives=Representatives(
                        trials or args.rep_trials,
                        radius or args.rep_radius,
                        search or args.full_search,
                        args.full_per_round,
                        same_unit_loops=unit_loops,
                    ),
                )
                for leg, (unit_loops, radius, trials, search) in REP_LEGS.items()
            }
            from tvm.s_tir import meta_schedule as ms

            models = {leg: ms.cost_model.XGBModel(num_tuning_cores=1) for leg in WARM_LEGS}  # one for each warm leg's run
            for i, (label, func) in enumerate(kernels):
                row = next((r for r in rows if r["kernel"] == label), None)
                if row is not None and all(f"{leg}_us" in row for leg in REP_LEGS):
                    continue
                if row is None:  # a kernel stopped half-way starts again
                    for name in (f"full-{i}", f"small-{i}"):
                        shutil.rmtree(state / name, ignore_errors=True)
                    row = {"kernel": label, "default_us": built_seconds(func, target, measure, tmp) * 1e6}
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
                for leg, t in chain_reps.items():
                    if f"{leg}_us" in row:  # this leg's chain has it already
                        continue
                    reps = t.representatives
                    assert reps is not None
                    # A representative is searched long unless its code runs in under min_ms before the search (the
                    # tuner also counts transferred schedules there; the untuned time stands in for both here).
                    row[f"{leg}_representative"] = t.needs_representative(func) and row["default_us"] >= reps.min_ms * 1e3
                    extra = 0.0
                    if row[f"{leg}_representative"] and REP_LEGS[leg][3] is None:  # the reference's first candidates (and the untuned kernel)
                        full = tuner(f"full-{i}", transfers=0)
                        t.add_records(func, read_records(full.work_dir, reps.trials + 1))
                        full.close()
                        extra = row["full_tune_s"] * reps.trials / args.full_trials
                    with shared_cost_model(models[leg]) if leg in models else contextlib.nullcontext():
                        out = t.tune(func, args.trials)
                    row[f"{leg}_us"] = t.best_seconds(func) * 1e6
                    row[f"{leg}_tune_s"] = out.tune_s + extra
                    row[f"{leg}_searched"] = out.searched
                partial = done_file.with_suffix(".tmp")  # rows rewritten whole, then swapped in: never half a file
                partial.write_text("".join(json.dumps(r) + "\n" for r in rows))
                partial.replace(done_file)
                print(f"{i + 1}/{len(kernels)}", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
            for t in (chain, chain_only, *chain_reps.values()):
                t.close()
    table, summary = summarize(rows, args)
    write(table, summary, "tuning_audit")


def write(table: pd.DataFrame, summary: dict[str, Any], name: str) -> None:
    """bench/out/NAME.{csv,json,png}: the kernels, the summary and a plot of both."""
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / f"{name}.csv", index=False)
    (OUT / f"{name}.json").write_text(json.dumps(summary, indent=2))
    plot(table, summary, OUT / f"{name}.png")
    print(json.dumps(summary, indent=2))


def plot(table: pd.DataFrame, summary: dict[str, Any], path: Path) -> None:
    """Each way's share of the full speedup per kernel (representatives hollow) and its tuning seconds per kernel."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    legs = [leg for leg in LEGS if f"{leg}_share" in table]
    tunable = table["default_us"] >= MIN_FULL_SPEEDUP * table["full_us"]
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(7, 7), sharex=True)
    for x, leg in enumerate(legs):
        share = table[f"{leg}_share"].clip(-0.5, 1.2)
        jitter = pd.Series([x + 0.25 * ((i * 0.618) % 1 - 0.5) for i in range(len(table))], index=table.index)
        rep = table.get(f"{leg}_representative", pd.Series(False, index=table.index)).fillna(False).astype(bool)
        top.scatter(jitter[tunable & ~rep], share[tunable & ~rep], s=14, color=f"C{x}")
        top.scatter(jitter[tunable & rep], share[tunable & rep], s=22, facecolors="none", edgecolors=f"C{x}")
        top.hlines(summary[leg]["median_share_of_full_speedup"], x - 0.3, x + 0.3, color="k", lw=2)
        bottom.scatter(jitter, table[f"{leg}_tune_s"], s=14, color=f"C{x}")
    top.axhline(0.7, color="grey", ls="--", lw=0.8, label="target: median 0.7")
    top.set(ylabel="share of the full speedup kept\n(clipped to -0.5..1.2; hollow: representative)",
            title=f"audit: {summary['kernels']} kernels, reference {summary['full_trials']} trials ({summary['full_search']})")  # fmt: skip
    top.legend(fontsize=7, loc="lower left")
    bottom.axhline(summary["full"]["median_tune_s"], color="k", ls=":", lw=0.8, label="reference's median")
    bottom.set(yscale="log", ylabel="tuning s per kernel", xticks=range(len(legs)), xticklabels=legs)
    bottom.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# The ways with representatives: whether a representative covers only kernels with its loops of extent 1
# (Representatives.same_unit_loops), their radius (None: --rep-radius), their trials (None: --rep-trials), and the
# search setting they are searched with for real (None: their records are the reference's first candidates).
REP_LEGS: dict[str, tuple[bool, float | None, int | None, str | None]] = {
    "reps": (False, None, None, None),
    "reps_loops": (True, None, None, None),
    "reps_r4": (False, 4.0, None, None),
    "reps_r2": (False, 2.0, None, None),
    "reps_t256": (False, None, 256, None),
    "reps_t128": (False, None, 128, None),
    "reps_t64": (False, None, 64, None),
    "reps_lean": (False, None, 256, "lean"),
    "reps_ref256": (False, None, 256, None),
    "reps_warm128": (False, None, 128, "stock"),
}
# Legs whose searches share one cost model, kept from each search to the next.
WARM_LEGS = {"reps_warm128"}


@contextlib.contextmanager
def shared_cost_model(model: Any) -> Iterator[None]:
    """MetaSchedule's searches run meanwhile use ``model`` (trained on every search before) instead of a fresh one."""
    from tvm.s_tir import meta_schedule as ms

    original = ms.tune_tir
    ms.tune_tir = functools.partial(original, cost_model=model)
    try:
        yield
    finally:
        ms.tune_tir = original
LEGS = ("small", "transfer", "transfer_only", *REP_LEGS)

# The reference must beat untuned code by this much for a kernel's share of its speedup to mean something.
MIN_FULL_SPEEDUP = 1.1
# Kernels whose untuned code is within this factor of the reference are the "hard" ones: nearly any tiled schedule
# keeps most of a 20-50x speedup, so the ways differ on these.
HARD_BELOW_SPEEDUP = 10.0
# A kernel "keeps" its speedup at this share (the target for the median).
KEEP_SHARE = 0.7


def kernel_kinds(table: pd.DataFrame) -> tuple[pd.Series, pd.Series]:
    """Which kernels have a speedup to keep (the reference ``MIN_FULL_SPEEDUP`` times faster than untuned code), and
    which of those are hard (untuned code within ``HARD_BELOW_SPEEDUP`` of the reference)."""
    tunable = table["default_us"] >= MIN_FULL_SPEEDUP * table["full_us"]
    return tunable, tunable & (table["default_us"] < HARD_BELOW_SPEEDUP * table["full_us"])


def source_budgets(kernels: list[Any], budgets: list[int], tuner: Any, seconds: Any, tmp: Path, state: Path) -> None:
    """Transfer alone (the 4 nearest sources, ``keep_speedup`` 0) to each kernel from the other kernels' references
    cut to their first B candidates, for each budget B; untuned, reference and transferred code timed side by side
    (``seconds(func)``: a PrimFunc built and timed). Each reference is read once per budget; rows land in
    ``state``/sources-BUDGETS.jsonl as each kernel is done, and a rerun with the same budgets goes on from there."""
    done_file = state / f"sources-{'_'.join(map(str, budgets))}.jsonl"
    rows: list[dict[str, Any]] = [json.loads(line) for line in done_file.read_text().splitlines()] if done_file.exists() else []
    # Each reference's first B candidates (and the untuned kernel's record), read once per budget: read_records
    # cuts the database file in its commit order (a database's own listing need not keep that order).
    records = {(j, b): read_records(state / f"full-{j}", b + 1) for j in range(len(kernels)) for b in budgets}
    for i, (label, func) in enumerate(kernels):
        if any(r["kernel"] == label for r in rows):
            continue
        full = tuner(f"full-{i}", transfers=0)
        row: dict[str, Any] = {"kernel": label, "default_us": seconds(func) * 1e6, "full_us": seconds(full.tune(func, 1).func) * 1e6}
        full.close()
        for budget in budgets:
            t = tuner(str(tmp / f"sources-{i}-{budget}"), keep_speedup=0.0)
            for j, (_, other) in enumerate(kernels):
                if j != i:
                    t.add_records(other, records[j, budget])
            out = t.tune(func, 1)
            row[f"us_{budget}"] = seconds(out.func) * 1e6
            row[f"share_{budget}"] = (row["default_us"] - row[f"us_{budget}"]) / (row["default_us"] - row["full_us"])
            row[f"searched_{budget}"] = out.searched
            t.close()
            shutil.rmtree(tmp / f"sources-{i}-{budget}", ignore_errors=True)
        rows.append(row)
        with done_file.open("a") as f:
            f.write(json.dumps(row) + "\n")
        print(f"{i + 1}/{len(kernels)}", {k: (round(v, 2) if isinstance(v, float) else v) for k, v in row.items()}, flush=True)
    table = pd.DataFrame(rows)
    tunable, hard = kernel_kinds(table)
    summary = {
        "when": time.strftime("%Y-%m-%d"),
        "kernels": len(rows),
        "no_speedup_to_keep": int((~tunable).sum()),
        "median_share": {b: float(table[f"share_{b}"][tunable].median()) for b in budgets},
        "median_share_hard": {b: float(table[f"share_{b}"][hard].median()) for b in budgets},
        f"kernels_keeping_{KEEP_SHARE}": {
            b: f"{int((table[f'share_{b}'][tunable] >= KEEP_SHARE).sum())}/{int(tunable.sum())}" for b in budgets
        },
        "searched": {b: int(table[f"searched_{b}"].astype(bool).sum()) for b in budgets},
    }
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "tuning_audit_sources.csv", index=False)
    (OUT / "tuning_audit_sources.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=1))
    print(json.dumps(summary, indent=2))


def read_records(work_dir: Path, first: int) -> list[Any]:
    """The first ``first`` records a search committed to the JSON database in ``work_dir``, in commit order."""
    from tvm.s_tir import meta_schedule as ms

    lines = (work_dir / "database_tuning_record.json").read_text().splitlines()[:first]
    with tempfile.TemporaryDirectory() as tmp:
        shutil.copy(work_dir / "database_workload.json", tmp)
        (Path(tmp) / "database_tuning_record.json").write_text("".join(line + "\n" for line in lines))
        return list(ms.database.JSONDatabase(work_dir=tmp, module_equality="anchor-block").get_all_tuning_records())


def summarize(rows: list[dict[str, Any]], args: argparse.Namespace) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Each kernel's share of the full speedup per cheap way; medians and tuning seconds over the kernels.

    A kernel the reference did not make ``MIN_FULL_SPEEDUP`` times faster than untuned code has no speedup to keep
    (a share of a gain within timing noise means nothing: -2.4 on a 0.06 µs kernel): it is left out of the medians
    of shares and counted as ``no_speedup_to_keep``; its tuning seconds still count."""
    table = pd.DataFrame(rows)
    gain = table["default_us"] - table["full_us"]
    tunable, hard = kernel_kinds(table)
    summary: dict[str, Any] = {"when": time.strftime("%Y-%m-%d"), "kernels": len(table), "trials": args.trials, "full_trials": args.full_trials,
                               "full_search": args.full_search, "full_per_round": args.full_per_round,
                               "no_speedup_to_keep": int((~tunable).sum()), "min_full_speedup": MIN_FULL_SPEEDUP,
                               "hard_kernels": int(hard.sum()), "hard_below_speedup": HARD_BELOW_SPEEDUP}  # fmt: skip
    for name in LEGS:
        if f"{name}_us" not in table:
            continue
        measured = table[f"{name}_us"].notna()
        share = (table["default_us"] - table[f"{name}_us"]) / gain
        table[f"{name}_share"] = share
        summary[name] = {
            "kernels": int(measured.sum()),
            "median_share_of_full_speedup": float(share[measured & tunable].median()),
            f"kernels_keeping_{KEEP_SHARE}": f"{int((share[measured & tunable] >= KEEP_SHARE).sum())}/{int((measured & tunable).sum())}",
            "median_share_hard": float(share[measured & hard].median()),
            "median_share_easy": float(share[measured & tunable & ~hard].median()),
            "median_tune_s": float(table[f"{name}_tune_s"][measured].median()),
            "total_tune_s": float(table[f"{name}_tune_s"][measured].sum()),
            # The share of a 20-50x speedup is near 1 even where the code runs 1.6x slower than the reference's: the
            # time against the reference's, and the kernels' summed time (a network of them), say what a build costs.
            "geomean_vs_full": float(np.exp(np.log(table[f"{name}_us"][measured & tunable] / table["full_us"][measured & tunable]).mean())),
            "sum_ms": float(table[f"{name}_us"][measured].sum() / 1e3),
        }
    for leg in REP_LEGS:
        if f"{leg}_representative" in table:
            rest = (table[f"{leg}_representative"] == False) & tunable  # noqa: E712 - a pandas column
            summary[leg]["representatives"] = int((table[f"{leg}_representative"] == True).sum())  # noqa: E712
            summary[leg]["median_share_not_representatives"] = float(table[f"{leg}_share"][rest].median())
            summary[leg]["median_share_hard_not_representatives"] = float(table[f"{leg}_share"][rest & hard].median())
    summary["full"] = {"median_tune_s": float(table["full_tune_s"].median()), "total_tune_s": float(table["full_tune_s"].sum()),
                       "median_speedup_over_default": float((table["default_us"] / table["full_us"]).median()),
                       "sum_ms": float(table["full_us"].sum() / 1e3), "default_sum_ms": float(table["default_us"].sum() / 1e3)}  # fmt: skip
    return table, summary


if __name__ == "__main__":
    main()
