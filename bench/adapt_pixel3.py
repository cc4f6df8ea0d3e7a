"""Few-shot adaptation to a real phone: Pixel 3 latencies of NAS-Bench-201 and FBNet networks.

Source: the `local` device's kernel predictors (a trained bench workspace; see
bench/predictor_accuracy.py). Target: the Pixel 3 column of the tables in
edgelat/datasets/data (HW-NAS-Bench via HELP). For K = 5, 10, 20, 50 architectures drawn at
random (10 draws each) the adapter (edgelat.predictors.adapt) is fitted on their Pixel 3
latencies and scored on every other architecture of the table: Spearman rank correlation and
the share within +-10%. K = 0 is the source's own predictions (rank correlation only).
NAS-Bench-201 architectures whose output does not depend on their input (no path of non-zero
edges through the cell; 341 of 15,625) are left out: TFLite folds them to constants, so their
Pixel 3 "latencies" (median 0.05 ms) measure nothing a kernel model could predict.

With --recipe tuned the source is the workspace's tuned models (a tuned profile of the kinds these
networks run: conv2d, dwconv2d, dense, pools, add, mul, activation, channel_shuffle, concat).

Usage: python bench/adapt_pixel3.py [--workspace ~/.cache/edgelat-bench] [--recipe default] [--draws 10]
Writes bench/out/adapt_pixel3.json (adapt_pixel3_tuned.json for the tuned source).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
from _workspace import DEFAULT, ensure_trained
from scipy.stats import spearmanr

from edgelat.datasets.tables import load_fbnet_table, load_nb201_table
from edgelat.nas import get_space
from edgelat.predictors.adapt import LAUNCH, fit_adapter
from edgelat.workflows import device_oracle
from edgelat.workspace import open_workspace

OUT = Path(__file__).parent / "out"
KS = (0, 5, 10, 20, 50)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, default=DEFAULT)
    parser.add_argument("--source", default="local")
    parser.add_argument("--recipe", default="default", help="the source's models: default (untuned) or tuned")
    parser.add_argument("--draws", type=int, default=10)
    args = parser.parse_args()

    report: dict[str, object] = {"source": args.source, "recipe": args.recipe, "draws": args.draws, "spaces": {}}
    with open_workspace(args.workspace) as ws:
        if args.recipe == "default":
            ensure_trained(ws)
        nb201 = load_nb201_table()
        constant = ~nb201["arch"].map(get_space("nb201").output_depends_on_input)
        report["nb201_constant_output_excluded"] = int(constant.sum())
        for space_name, table in (("nb201", nb201[~constant].reset_index(drop=True)), ("fbnet", load_fbnet_table())):
            space = get_space(space_name)
            start = time.time()
            oracle = device_oracle(
                ws, args.source, space, args.recipe, on_block=lambda i, n, s=space_name: print(f"\r{s}: pricing blocks {i}/{n}", end="")
            )
            archs = [space.canonical(a) for a in table["arch"]]
            oracle.price_blocks([k for a in archs for k in space.blocks(a)])
            groups = sorted({g for price in oracle.blocks.values() for g in price})
            x = oracle.features(archs, groups)
            features = [dict(zip(groups, row, strict=True)) for row in x]
            source_ms = x[:, [i for i, g in enumerate(groups) if g != LAUNCH]].sum(axis=1)
            y = table["pixel3_ms"].to_numpy()
            print(f"\r{space_name}: {len(archs)} archs, source features in {time.time() - start:.0f} s")
            rows = []
            for k in KS:
                rhos, within, fit_s = [], [], []
                for draw in range(args.draws if k else 1):
                    rng = np.random.default_rng([draw, k])
                    train = rng.choice(len(y), size=k, replace=False) if k else np.array([], dtype=int)
                    test = np.setdiff1d(np.arange(len(y)), train)
                    if k == 0:
                        pred = source_ms[test]
                    else:
                        t0 = time.time()
                        adapter = fit_adapter([features[i] for i in train], y[train], args.source, args.recipe)
                        fit_s.append(time.time() - t0)
                        pred = adapter.predict([features[i] for i in test])
                        within.append(float(np.mean(np.abs(pred / y[test] - 1) <= 0.10) * 100))
                    rhos.append(float(spearmanr(y[test], pred).statistic))
                rows.append({"k": k, "spearman_mean": statistics.fmean(rhos), "spearman_min": min(rhos),
                             "within_10_mean": statistics.fmean(within) if within else None,
                             "within_10_min": min(within) if within else None, "fit_seconds": statistics.fmean(fit_s) if fit_s else 0.0})  # fmt: skip
            report["spaces"][space_name] = {"archs": len(y), "groups": groups, "rows": rows}  # type: ignore[index]
    OUT.mkdir(exist_ok=True)
    (OUT / ("adapt_pixel3.json" if args.recipe == "default" else f"adapt_pixel3_{args.recipe}.json")).write_text(json.dumps(report, indent=2))
    print(f"source {args.source} ({args.recipe}) -> Pixel 3; {args.draws} random draws per K; scored on every other architecture")
    print("| space | K | Spearman mean (min) | within ±10% mean (min) |")
    print("|---|---|---|---|")
    for name, data in report["spaces"].items():  # type: ignore[attr-defined]
        for r in data["rows"]:
            acc = f"{r['within_10_mean']:.1f}% ({r['within_10_min']:.1f}%)" if r["within_10_mean"] is not None else "-"
            print(f"| {name} | {r['k']} | {r['spearman_mean']:.3f} ({r['spearman_min']:.3f}) | {acc} |")


if __name__ == "__main__":
    main()
