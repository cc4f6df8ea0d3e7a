"""Search alone vs search at a looser budget then prune, on `local`, side by side.

For each (space, budget): `edgelat.workflows.search_then_prune` runs both routes with the same
search settings and seed, trains both winners on scikit-learn's digits for the same number of
steps in total, and measures both on the device (1 thread, default recipe). Reported per route:
measured latency, its distance to the budget, parameters and digits validation accuracy.

Usage: python bench/search_then_prune.py [--workspace ~/.cache/edgelat-bench] [--only fbnet]
Writes bench/out/search_then_prune.json (and each run's outputs under bench/out/routes/).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

from _workspace import DEFAULT, ensure_trained  # noqa: E402

from edgelat.workflows import SearchOptions, search_then_prune  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"
CASES = [("nb201", 9.0, 1.3), ("fbnet", 30.0, 1.3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=DEFAULT)
    parser.add_argument("--only", default=None, help="run only this space's cases")
    parser.add_argument("--generations", type=int, default=10)
    parser.add_argument("--population", type=int, default=24)
    args = parser.parse_args()
    import torch

    torch.set_num_threads(1)
    rows = []
    with open_workspace(args.workspace) as ws:
        ensure_trained(ws)
        for space, budget, looser in CASES:
            if args.only and space != args.only:
                continue
            start = time.time()
            routes = search_then_prune(
                ws, "local", space, budget, looser=looser, search=SearchOptions(population=args.population, generations=args.generations),
                out_dir=OUT / "routes" / f"{space}-{budget:g}ms-x{looser:g}",
            )  # fmt: skip
            rows.append({"space": space, "budget_ms": budget, "looser": looser, "minutes": (time.time() - start) / 60, **routes})
            (OUT / "search_then_prune.json").write_text(json.dumps(rows, indent=2, default=str))
    print("| space | budget ms | route | measured ms | vs budget | params | digits accuracy % |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        for name in ("search_alone", "search_then_prune"):
            route = r.get(name, {})
            label = name.replace("_", " ") + (f" (x{r['looser']:g})" if name == "search_then_prune" else "")
            if "measured_ms" not in route:
                print(f"| {r['space']} | {r['budget_ms']:g} | {label} | {route.get('error', 'no result')} | | | |")
                continue
            print(
                f"| {r['space']} | {r['budget_ms']:g} | {label} | {route['measured_ms']:.3f} | "
                f"{100 * (route['measured_ms'] / r['budget_ms'] - 1):+.1f}% | {route['params']:,} | {route['accuracy']:.1f} |"
            )
    print("minutes per case: " + ", ".join(f"{r['space']} {r['budget_ms']:g} x{r['looser']:g}: {r['minutes']:.1f}" for r in rows))


if __name__ == "__main__":
    main()
