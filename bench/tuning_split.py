"""Where the `tuned` recipe's time goes, per kernel: the search itself, building candidates, timing them.

Kernels of a real network (the zoo's mobilenetv2_100 at 160, its distinct anchors: 1x1 and 3x3 convs,
depthwise convs, the classifier) are tuned on `local` through edgelat's KernelTuner (candidates built in
this process, timed by the device agent, one thread), each from an empty database, with each search
setting in turn, side by side in one run. The best kernel time each setting reaches is reported too:
a faster search is only worth it if it finds fast code.

Candidates are built in this process, or with `--workers N` in N build workers (a batch in parallel).

Usage: python bench/tuning_split.py [--kernels 6] [--trials 16,32] [--settings stock,small] [--workers 0,2]
Writes bench/out/tuning_split.{json,csv}.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import pandas as pd  # noqa: E402

from edgelat.datasets.zoo import create_model, example_input  # noqa: E402
from edgelat.ops import kernel_funcs  # noqa: E402
from edgelat.ops.lowering import fuse  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.profiler.builds import Builder  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.tuning import SEARCH_SETTINGS, KernelTuner  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def network_anchors(limit: int, names: tuple[str, ...] = ("mobilenetv2_100",), interleave: bool = False) -> list[tuple[str, object]]:
    """(label, PrimFunc) of the first ``limit`` kernels with distinct anchors (kind and shapes, whatever the epilogue:
    a tuning database tells kernels apart so) of the networks ``names``
    (at 160 px), each network's in network order: network after network, or with ``interleave`` one from each
    network in turn (so that the first few are a sample of all the networks, not of the first one)."""
    queues: list[list[tuple[tuple[str, ...], tuple[str, object]]]] = []
    for name in names:
        mod = relax_from_torch(create_model(name).eval(), example_input(160))
        funcs = kernel_funcs(fuse(mod)[0])
        queues.append(
            [
                ((k.op, *(f"{n}={v}" for n, v in sorted(k.config.items()) if n != "epilogue")), (f"{k.op} {k.config}", funcs[k.name]))
                for k in network_kernels(mod)
                if k.op is not None and k.config is not None
            ]
        )
    order = itertools.chain.from_iterable(itertools.zip_longest(*queues)) if interleave else itertools.chain.from_iterable(queues)
    picked: dict[tuple[str, ...], tuple[str, object]] = {}
    for item in order:
        if item is not None:
            picked.setdefault(*item)
            if len(picked) >= limit:
                break
    return list(picked.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", type=int, default=6)
    parser.add_argument("--trials", default="16,32")
    parser.add_argument("--settings", default=",".join(SEARCH_SETTINGS.names()))
    parser.add_argument("--workers", default="0", help="build workers to compare, e.g. 0,2")
    args = parser.parse_args()
    kernels = network_anchors(args.kernels)
    rows = []
    with tempfile.TemporaryDirectory() as tmp, open_workspace(Path(tmp) / "ws") as ws:
        device = get_device(ws, "local")
        target = device.preset_info.target()
        with agent_session(ws, device, threads=1) as agent:

            def measure(path: str, a: list[list[object]]) -> list[float]:
                return agent.time_library(Path(path), a, repeat=3, min_repeat_ms=2.0)

            pools = {int(w): Builder(Path(tmp) / "cache", workers=int(w)) for w in args.workers.split(",")}
            for trials in (int(t) for t in args.trials.split(",")):
                for label, func in kernels:
                    for setting, (workers, pool) in itertools.product(args.settings.split(","), pools.items()):
                        db = Path(tmp) / f"db-{len(rows)}"
                        tuner = KernelTuner(db, target, 1, None, measure, search=setting, transfers=0, builder=pool)
                        try:
                            out = tuner.tune(func, trials)
                            best = tuner.best_seconds(func)
                        finally:
                            tuner.close()
                        rows.append({"kernel": label, "setting": setting, "workers": workers, "trials": trials, "tune_s": out.tune_s, "search_s": out.search_s,
                                     "build_s": out.build_s, "measure_s": out.measure_s, "best_us": best * 1e6})  # fmt: skip
                        r = rows[-1]
                        print(f"{setting:>6} {workers} workers {trials:>3} trials  {r['tune_s']:6.1f} s = search {r['search_s']:5.1f} + build "
                              f"{r['build_s']:5.1f} + measure {r['measure_s']:5.1f}; best {r['best_us']:9.1f} us  {label[:70]}")  # fmt: skip
            for pool in pools.values():
                pool.close()
    table = pd.DataFrame(rows)
    OUT.mkdir(exist_ok=True)
    table.to_csv(OUT / "tuning_split.csv", index=False)
    summary = {}
    for (setting, workers, trials), g in table.groupby(["setting", "workers", "trials"]):
        summary[f"{setting}@{trials}/{workers}w"] = {
            "kernels": len(g),
            "median_tune_s": statistics.median(g["tune_s"]),
            "median_search_s": statistics.median(g["search_s"]),
            "median_build_s": statistics.median(g["build_s"]),
            "median_measure_s": statistics.median(g["measure_s"]),
        }
    if "stock" in set(table["setting"]):
        base = table[table["setting"] == "stock"].groupby(["kernel", "trials"])["best_us"].min()
        for (setting, workers, trials), g in table.groupby(["setting", "workers", "trials"]):
            ratio = g.set_index(["kernel", "trials"])["best_us"] / base
            summary[f"{setting}@{trials}/{workers}w"]["median_best_vs_stock"] = float(ratio.median())
    (OUT / "tuning_split.json").write_text(json.dumps({"when": time.strftime("%Y-%m-%d"), "summary": summary}, indent=2))
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
