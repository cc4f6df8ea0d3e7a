"""How well training-free proxies rank NAS-Bench-201 networks by CIFAR-10 accuracy, and what they cost.

Draws ``--n`` architectures at random from the NAS-Bench-201 table edgelat ships (or ``--csv``),
builds each network once (seeded like ``ProxyScorer``: ``torch.manual_seed(arch_seed(arch))``),
scores it with every registered proxy and with the ensemble (mean rank of params, flops, synflow, zico over the
sample, the same as ProxyScorer("ensemble")), and reports for each:
- Spearman rank correlation with ``cifar10_test_acc`` (scipy.stats.spearmanr);
- seconds per architecture on this CPU (one torch thread unless --threads says otherwise; the
  ensemble's is the sum of the four proxies); network build time is reported separately.

Usage: python bench/proxy_correlation.py [--n 200] [--seed 0] [--threads 1] [--csv PATH]
Writes bench/out/proxy_correlation.json (non-finite scores, such as synflow's -inf for a network
whose output depends on no weight, are stored as the strings "inf"/"-inf").
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy.stats import spearmanr

from edgelat.datasets.nb201 import build_nb201
from edgelat.datasets.tables import load_nb201_table
from edgelat.nas.proxies import ENSEMBLE, ENSEMBLE_MEMBERS, PROXIES, arch_seed, mean_rank

OUT = Path(__file__).parent / "out"
INPUT_SHAPE = (1, 3, 32, 32)


def _json_float(x: float) -> float | str:
    return x if math.isfinite(x) else str(x)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=200, help="architectures to sample")
    parser.add_argument("--seed", type=int, default=0, help="seed of the architecture sample")
    parser.add_argument("--threads", type=int, default=1, help="torch threads; 0 keeps torch's default")
    parser.add_argument("--csv", default=None, help="A CSV with arch and cifar10_test_acc columns (default: the shipped table).")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    OUT.mkdir(exist_ok=True)

    table = pd.read_csv(args.csv) if args.csv else load_nb201_table()
    rows = table.iloc[np.random.default_rng(args.seed).choice(len(table), size=min(args.n, len(table)), replace=False)]
    archs = rows["arch"].tolist()
    acc = rows["cifar10_test_acc"].to_numpy(dtype=np.float64)

    scores: dict[str, list[float]] = {name: [] for name in PROXIES}
    seconds: dict[str, float] = {name: 0.0 for name in PROXIES}
    build_seconds = 0.0
    for arch in archs:
        start = time.perf_counter()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(arch_seed(arch))
            net = build_nb201(arch)
        build_seconds += time.perf_counter() - start
        for name, proxy in PROXIES.items():
            start = time.perf_counter()
            scores[name].append(proxy(net, INPUT_SHAPE))
            seconds[name] += time.perf_counter() - start

    columns = {name: np.array(values, dtype=np.float64) for name, values in scores.items()}
    columns[ENSEMBLE] = mean_rank([columns[name] for name in ENSEMBLE_MEMBERS])
    seconds[ENSEMBLE] = sum(seconds[name] for name in ENSEMBLE_MEMBERS)
    n = len(archs)
    results = {}
    for name, col in columns.items():
        rho, p = spearmanr(col, acc)
        results[name] = {"spearman": float(rho), "p_value": float(p), "s_per_arch": seconds[name] / n}

    report = {
        "n": n,
        "seed": args.seed,
        "csv": args.csv or "edgelat/datasets/data/nb201_latency_pixel3_gold6226.csv.gz",
        "torch_threads": torch.get_num_threads(),
        "build_s_per_arch": build_seconds / n,
        "proxies": results,
        "archs": [
            {"arch": a, "cifar10_test_acc": float(y), **{name: _json_float(float(col[i])) for name, col in columns.items()}}
            for i, (a, y) in enumerate(zip(archs, acc, strict=True))
        ],
    }
    (OUT / "proxy_correlation.json").write_text(json.dumps(report, indent=2, allow_nan=False))

    print(
        f"NAS-Bench-201, {n} random architectures (seed {args.seed}), CIFAR-10 test accuracy, {torch.get_num_threads()} torch thread(s)\n"
    )
    print("| proxy | Spearman rho | s / arch |\n|---|---|---|")
    for name, r in results.items():
        print(f"| {name} | {r['spearman']:.3f} | {r['s_per_arch']:.3f} |")
    print(f"\nbuilding a network: {build_seconds / n:.3f} s / arch")


if __name__ == "__main__":
    main()
