"""Which timing of kernels predicts networks: a recipe's models trained on the workspace's timings of the same
kernels taken each way (warm, flushed, llc: see Recipe.caches), each predicting the same measured networks: those
of one `edgelat validate --json` run, or without --validation the recipe's newest network measurements in the
workspace.

With --retime, the kernels of the recipe's profile are timed every way they have not been yet (tuned kernels come
from the tuning database: nothing is tuned again). Trains into the workspace's model folder for the recipe and
leaves there the model of the recipe's own way, as `train` would. Reports each way's kernel cross-validation too.

With --remeasure, the networks are measured again first (built the recipe's way, timed end to end), so that the
kernels timed now and the networks are timed side by side.

Usage: python bench/caches_models.py --workspace WS --recipe tuned [--validation VALIDATE.json | --remeasure] [--retime] [--ways warm,llc]
Writes bench/out/caches_models_RECIPE.json (--out another name).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.predictors.model import predict_kernels  # noqa: E402
from edgelat.predictors.predict import load_model  # noqa: E402
from edgelat.predictors.train import train_device  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig, profile, untimed_configs  # noqa: E402
from edgelat.profiler.e2e import measure_network  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import Workspace, open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"
WAYS = ("warm", "flushed", "llc")


def retime(ws: Workspace, recipe: str, trials: int, ways: tuple[str, ...]) -> dict[str, Any]:
    """Time every kernel of ``recipe``'s profile each of ``ways`` it has not been timed yet."""
    kind = type(get_recipe(recipe))
    own, done = kind.caches, {}
    for way in ways:
        kind.caches = way  # what untimed_configs and profile take as the recipe's way
        try:
            configs = untimed_configs(ws, "local", recipe)
            if not configs:
                continue
            start = time.time()
            profile(ws, "local", ProfileConfig(configs=configs, recipe=recipe, trials=trials, threads=1))
        finally:
            kind.caches = own
        done[way] = {"kernels": len(configs), "seconds": time.time() - start}
        print(f"timed {len(configs)} {recipe} kernels {way} in {time.time() - start:.0f} s", flush=True)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--recipe", default="tuned")
    parser.add_argument("--validation", type=Path, help="the JSON `edgelat validate --recipe R --json` printed")
    parser.add_argument("--retime", action="store_true")
    parser.add_argument("--remeasure", action="store_true")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--ways", default=",".join(WAYS))
    parser.add_argument("--out", default=None, help="the output's name in bench/out (default caches_models_RECIPE.json)")
    args = parser.parse_args()
    ways = tuple(w for w in args.ways.split(",") if w)
    if args.validation is not None:
        measured = {r["network"]: r["measured_ms"] for r in json.loads(args.validation.read_text())["rows"]}
    else:
        with open_workspace(args.workspace) as ws:
            rows = ws.store.rows(
                "SELECT name, median_ms FROM network_measurements WHERE device = 'local' AND recipe = :recipe ORDER BY id", {"recipe": args.recipe}
            )
        measured = {r["name"]: r["median_ms"] for r in rows}  # the newest of each name
    modules = {name: relax_from_torch(factory(), torch.randn(1, 3, res, res)) for name, factory, res in validation_networks(",".join(measured))}
    kernels = {name: network_kernels(mod) for name, mod in modules.items()}
    if args.remeasure:
        with open_workspace(args.workspace) as ws:
            before = dict(measured)
            for name, mod in modules.items():
                measured[name] = measure_network(ws, "local", mod, name=name, recipe=args.recipe, threads=1, per_kernel=False).median_ms
                print(f"{name}: {measured[name]:.3f} ms (was {before[name]:.3f})", flush=True)
    kind = type(get_recipe(args.recipe))
    own = kind.caches
    report: dict[str, Any] = {"recipe": args.recipe, "validation": str(args.validation or "the workspace's network measurements")}
    report["measured_ms"] = measured
    if args.remeasure:
        report["measured_before_ms"] = before
    with open_workspace(args.workspace) as ws:
        if args.retime:
            report["retimed"] = retime(ws, args.recipe, args.trials, ways)
        try:
            for way in ways:
                kind.caches = way  # what the model trains on: the measurements timed this way
                trained = train_device(ws, "local", args.recipe)
                model = load_model(ws, "local", args.recipe)
                predicted = {name: predict_kernels(model, kernels[name]).total_ms for name in measured}
                errors = {name: 100 * (predicted[name] / ms - 1) for name, ms in measured.items()}
                values = list(errors.values())
                report[way] = {
                    "kernel_cv_rmspe": {r.op: round(r.metrics["xgboost"]["rmspe"], 1) for r in trained.ops},
                    "predicted_ms": predicted,
                    "within_10": sum(abs(e) <= 10 for e in values) / len(values),
                    "median_error_pct": statistics.median(values),
                    "rmspe": (sum(e * e for e in values) / len(values)) ** 0.5,
                    "errors_pct": errors,
                }
                print(way, {k: round(v, 3) for k, v in report[way].items() if not isinstance(v, dict)}, flush=True)
        finally:
            kind.caches = own
        train_device(ws, "local", args.recipe)
    OUT.mkdir(exist_ok=True)
    (OUT / (args.out or f"caches_models_{args.recipe}.json")).write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
