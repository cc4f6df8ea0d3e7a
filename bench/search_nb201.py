"""How good is the search itself? NAS-Bench-201 with real accuracies and real Pixel 3 latencies.

Every architecture's CIFAR-10 accuracy and Pixel 3 latency are known, so the best one under a
budget is known too. For each budget (the 10th, 25th, 50th and 75th percentiles of the
space's latencies) and seed, NSGA-II (edgelat.nas.search.search, latency and accuracy from the
tables) and random search with the same number of evaluated architectures each return their
best feasible architecture; regret = best true accuracy under the budget - the found one's.

Usage: python bench/search_nb201.py [--seeds 10] [--population 20] [--generations 15]
Writes bench/out/search_nb201.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from edgelat.datasets.tables import load_nb201_table
from edgelat.nas import get_space
from edgelat.nas.oracle import TableOracle
from edgelat.nas.search import random_search, search

OUT = Path(__file__).parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--population", type=int, default=20)
    parser.add_argument("--generations", type=int, default=15)
    args = parser.parse_args()

    table = load_nb201_table()
    space = get_space("nb201")
    latency = TableOracle(dict(zip(table["arch"], table["pixel3_ms"], strict=True)), space)
    accuracy = TableOracle(dict(zip(table["arch"], table["cifar10_test_acc"], strict=True)), space)
    rows = []
    for q in (0.10, 0.25, 0.50, 0.75):
        budget = float(table["pixel3_ms"].quantile(q))
        best = float(table.loc[table["pixel3_ms"] <= budget, "cifar10_test_acc"].max())
        nsga, rand, evals, secs = [], [], [], []
        for seed in range(args.seeds):
            start = time.time()
            found = search(space, latency, accuracy.predict, budget, population=args.population, generations=args.generations, seed=seed)
            secs.append(time.time() - start)
            baseline = random_search(space, latency, accuracy.predict, budget, found.evaluations, seed=seed)
            nsga.append(best - found.best.score)
            rand.append(best - baseline.best.score)
            evals.append(found.evaluations)
        rows.append(
            {
                "budget_quantile": q,
                "budget_ms": budget,
                "best_accuracy": best,
                "evaluations_mean": statistics.fmean(evals),
                "nsga2_regret_mean": statistics.fmean(nsga),
                "nsga2_regret_median": statistics.median(nsga),
                "nsga2_optimum_found": sum(r == 0 for r in nsga) / len(nsga),
                "random_regret_mean": statistics.fmean(rand),
                "random_regret_median": statistics.median(rand),
                "random_optimum_found": sum(r == 0 for r in rand) / len(rand),
                "nsga2_seconds_mean": statistics.fmean(secs),
            }
        )
    report = {"space": "nb201", "latency": "pixel3_ms", "accuracy": "cifar10_test_acc", "seeds": args.seeds,
              "population": args.population, "generations": args.generations, "rows": rows}  # fmt: skip
    OUT.mkdir(exist_ok=True)
    (OUT / "search_nb201.json").write_text(json.dumps(report, indent=2))
    print(f"NAS-Bench-201, Pixel 3 latency, CIFAR-10 accuracy; {args.seeds} seeds, NSGA-II {args.population} x {args.generations}")
    print("| budget (quantile) | best acc % | evals | NSGA-II regret mean / median | random regret mean / median | NSGA-II s |")
    print("|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['budget_ms']:.2f} ms ({r['budget_quantile']:.0%}) | {r['best_accuracy']:.2f} | {r['evaluations_mean']:.0f} | "
            f"{r['nsga2_regret_mean']:.2f} / {r['nsga2_regret_median']:.2f} | {r['random_regret_mean']:.2f} / {r['random_regret_median']:.2f} | "
            f"{r['nsga2_seconds_mean']:.2f} |"
        )


if __name__ == "__main__":
    main()
