"""Where a representative's long search spends its time, per search setting: the evolution, building candidates,
timing them; and the fastest code each finds.

Kernels of resnet18 at 160 px (its distinct anchors, in network order; pick them by index) are tuned on `local`
(one thread) from an empty database, as a campaign searches a representative: ``--trials`` candidates, 64 a round,
candidates built in two workers, with each setting in turn, side by side in one run.

``--search-cores 1,2`` compares the host cores MetaSchedule's search runs on (``KernelTuner(search_cores=...)``) instead.

Usage: python bench/rep_search_split.py [--kernels 5,8] [--settings stock,lean] [--trials 256] [--search-cores 2]
Prints one line per kernel and setting (the README quotes them).
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.tuning_split import network_anchors  # noqa: E402
from edgelat.profiler.builds import Builder  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.tuning import SEARCH_SETTINGS, KernelTuner, Representatives  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def register_lean() -> None:
    """The ``lean`` search setting the audit tried for representatives (not the product's: it found slower code):
    MetaSchedule's evolution with half its population (256) and half its genetic rounds (2)."""
    from tvm.s_tir import meta_schedule as ms

    if "lean" not in SEARCH_SETTINGS.names():
        SEARCH_SETTINGS.register("lean", lambda trials: ms.search_strategy.EvolutionarySearch(population_size=256, genetic_num_iters=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", default="5,8", help="indices into resnet18's distinct anchors")
    parser.add_argument("--settings", default="stock,lean")
    parser.add_argument("--trials", type=int, default=Representatives.trials)
    parser.add_argument("--search-cores", default="0", help="comma-separated; 0: all of this host's (the product's default)")
    args = parser.parse_args()
    register_lean()
    kernels = network_anchors(12, ("resnet18",))
    with tempfile.TemporaryDirectory() as tmp, open_workspace(Path(tmp) / "ws") as ws, Builder(Path(tmp) / "cache", workers=2) as pool:
        device = get_device(ws, "local")
        target = device.preset_info.target()
        with agent_session(ws, device, threads=1) as agent:

            def measure(path: str, a: list[list[object]]) -> list[float]:
                return agent.time_library(Path(path), a, repeat=5, min_repeat_ms=5.0)

            for i in (int(k) for k in args.kernels.split(",")):
                label, func = kernels[i]
                for setting, cores in itertools.product(args.settings.split(","), [int(c) for c in args.search_cores.split(",")]):
                    t = KernelTuner(Path(tmp) / f"db-{i}-{setting}-{cores}", target, 1, None, measure, search=setting, transfers=0,
                                    builder=pool, per_round=Representatives.per_round, search_cores=cores or None)  # fmt: skip
                    cpu = time.process_time()
                    out = t.tune(func, args.trials)
                    cpu = time.process_time() - cpu
                    best = t.best_seconds(func)
                    t.close()
                    print(f"{setting:>6} {t.search_cores} cores {args.trials} trials {out.tune_s:6.1f} s = search {out.search_s:5.1f} + build "
                          f"{out.build_s:5.1f} + measure {out.measure_s:5.1f}; this process's CPU {cpu:6.1f} s; best {best * 1e6:9.1f} us  "
                          f"{label[:90]}", flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
