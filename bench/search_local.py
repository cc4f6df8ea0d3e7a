"""Latency-constrained search on the `local` device, verified by measurement.

For each (space, budget) below, `edgelat search` runs end to end on the bench workspace
(see bench/predictor_accuracy.py): NSGA-II with the device's block-cached predictor as the
oracle and the proxy ensemble as the accuracy side, the top picks built with TVM and measured
through the agent, mispredicted picks profiled and the predictor refit. Reported: whether the
chosen network's measured latency meets its budget, its predicted and measured latency, the
rounds and refits it took, and the wall-clock time. Also the oracle's speed once its blocks are
priced (architectures scored per second).

Note: refits add the picks' kernels to the workspace's training data, as the product does.

Usage: python bench/search_local.py [--workspace ~/.cache/edgelat-bench]
Writes bench/out/search_local.json.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _workspace import DEFAULT, ensure_trained  # noqa: E402

from edgelat.nas import get_space  # noqa: E402
from edgelat.workflows import SearchOptions, device_oracle, search_device  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"
CASES = (("nb201", 10.0), ("nb201", 30.0), ("fbnet", 30.0), ("fbnet", 40.0), ("ofa", 60.0))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=DEFAULT)
    parser.add_argument("--population", type=int, default=16)
    parser.add_argument("--generations", type=int, default=8)
    parser.add_argument("--only", help="Run only this space's cases and update them in the existing report.")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows, speed = [], {}
    with open_workspace(args.workspace) as ws:
        ensure_trained(ws)
        for space_name, budget in [c for c in CASES if args.only in (None, c[0])]:
            found = search_device(ws, "local", space_name, budget, SearchOptions(population=args.population, generations=args.generations),
                                  out_dir=OUT / "searches" / f"{space_name}-{budget:g}ms")  # fmt: skip
            r = found.as_dict()
            rows.append({"space": space_name, "budget_ms": budget, **{k: r[k] for k in ("arch", "predicted_ms", "measured_ms", "met_budget", "rounds", "refits", "seconds")},
                         "picks_measured": len(r["verified"])})  # fmt: skip
            print(rows[-1])
        for space_name in ("nb201", "fbnet", "ofa"):
            space = get_space(space_name)
            oracle = device_oracle(ws, "local", space)
            rng = np.random.default_rng(0)
            archs = [space.sample(rng) for _ in range(20000)]
            oracle.predict(archs[:2000])  # price what is missing
            fresh = device_oracle(ws, "local", space)  # cold arch cache, warm block cache
            start = time.perf_counter()
            fresh.predict(archs)
            speed[space_name] = len(archs) / (time.perf_counter() - start)
    if args.only and (OUT / "search_local.json").exists():
        old = json.loads((OUT / "search_local.json").read_text())
        rows = [r for r in old["rows"] if r["space"] != args.only] + rows
        rows.sort(key=lambda r: [c[0] for c in CASES].index(r["space"]))
    report = {"population": args.population, "generations": args.generations, "rows": rows, "oracle_archs_per_s": speed}
    OUT.mkdir(exist_ok=True)
    (OUT / "search_local.json").write_text(json.dumps(report, indent=2))
    met = sum(r["met_budget"] for r in rows)
    print(f"local, 1 thread: {met}/{len(rows)} searches chose a network whose measured latency meets the budget")
    print("| space | budget ms | predicted ms | measured ms | met | rounds | refits | picks measured | minutes |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['space']} | {r['budget_ms']:g} | {r['predicted_ms'] or float('nan'):.2f} | {r['measured_ms'] or float('nan'):.2f} | "
              f"{'yes' if r['met_budget'] else 'no'} | {r['rounds']} | {r['refits']} | {r['picks_measured']} | {r['seconds'] / 60:.1f} |")  # fmt: skip
    print("oracle speed (archs/s, blocks cached): " + ", ".join(f"{k} {v:,.0f}" for k, v in speed.items()))


if __name__ == "__main__":
    main()
