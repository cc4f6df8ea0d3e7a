"""Which timing of kernels predicts networks: a recipe's models trained on the workspace's warm timings and on its
flushed timings of the same kernels, each predicting the networks of one `edgelat validate --json` run against
the measurements of that run (the same measurements for both).

With --retime, the kernels the recipe's profile timed one way only are timed the other way first (tuned kernels
come from the tuning database: nothing is tuned again). Trains into the workspace's model folder for the recipe
and leaves there the model of the recipe's own way, as `train` would.

Usage: python bench/caches_models.py --workspace WS --recipe tuned --validation VALIDATE.json [--retime]
Writes bench/out/caches_models_RECIPE.json.
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
from edgelat.profiler.campaign import ProfileConfig, profile  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import Workspace, open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"
WAYS = ("warm", "flushed")


def retime(ws: Workspace, recipe: str, trials: int) -> dict[str, Any]:
    """Time every kernel of ``recipe``'s profile the way it has not been timed yet."""
    kind = type(get_recipe(recipe))
    own, done = kind.caches, {}
    for way in WAYS:
        rows = ws.store.rows(
            """SELECT DISTINCT k.op, k.params FROM measurements m JOIN kernel_configs k USING (config_id)
               WHERE m.device = 'local' AND m.recipe = :recipe AND m.status = 'ok' AND m.caches != :way
               AND m.config_id NOT IN (SELECT config_id FROM measurements WHERE recipe = :recipe AND caches = :way AND status = 'ok')""",
            {"recipe": recipe, "way": way},
        )
        if not rows:
            continue
        kind.caches = way
        start = time.time()
        try:
            profile(
                ws, "local", ProfileConfig(configs=tuple((r["op"], json.loads(r["params"])) for r in rows), recipe=recipe, trials=trials, threads=1)
            )
        finally:
            kind.caches = own
        done[way] = {"kernels": len(rows), "seconds": time.time() - start}
        print(f"timed {len(rows)} {recipe} kernels {way} in {time.time() - start:.0f} s", flush=True)
    return done


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--recipe", default="tuned")
    parser.add_argument("--validation", type=Path, required=True, help="the JSON `edgelat validate --recipe R --json` printed")
    parser.add_argument("--retime", action="store_true")
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    measured = {r["network"]: r["measured_ms"] for r in json.loads(args.validation.read_text())["rows"]}
    kernels = {
        name: network_kernels(relax_from_torch(factory(), torch.randn(1, 3, res, res)))
        for name, factory, res in validation_networks(",".join(measured))
    }
    kind = type(get_recipe(args.recipe))
    own = kind.caches
    report: dict[str, Any] = {"recipe": args.recipe, "validation": str(args.validation)}
    with open_workspace(args.workspace) as ws:
        if args.retime:
            report["retimed"] = retime(ws, args.recipe, args.trials)
        try:
            for way in WAYS:
                kind.caches = way  # what the model trains on: the measurements timed this way
                train_device(ws, "local", args.recipe)
                model = load_model(ws, "local", args.recipe)
                errors = {name: 100 * (predict_kernels(model, kernels[name]).total_ms / ms - 1) for name, ms in measured.items()}
                values = list(errors.values())
                report[way] = {
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
    (OUT / f"caches_models_{args.recipe}.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
