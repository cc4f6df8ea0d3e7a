"""How much of `validate`'s error is the measurement's: every network built once (tuned from the workspace's
tuning database, as `measure --recipe tuned` builds it), then timed in R rounds, the networks in a new random
order each round and a pause between rounds, on `local` with one thread. Each timing is what `validate` takes
(the device agent's median of 7 repeats of at least 100 ms). Beside each network, the workspace's prediction.

Reported per network: every round's time, their median, their spread (max/min - 1), the prediction's error
against each round and against the median. Summary: networks within +-10% per round and against the medians,
and the machine's speed per round (the median over networks of round time / network median), which shows
whether a round's networks drift together.

Usage: python bench/validate_repeat.py --workspace WS [--networks quick,mobilenetv2_100@160,resnet18@160]
       [--recipe tuned] [--rounds 10] [--pause 30]
Writes bench/out/validate_repeat.{json,csv}.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.predictors.predict import load_model, predict_kernels  # noqa: E402
from edgelat.profiler.builds import Builder  # noqa: E402
from edgelat.profiler.e2e import build_network  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.profiler.tuning import KernelTuner, Representatives  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", required=True, help="a workspace with `local` profiled and trained for --recipe")
    parser.add_argument("--networks", default="quick,mobilenetv2_100@160,resnet18@160", help="as `edgelat validate --zoo`")
    parser.add_argument("--recipe", default="tuned")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--pause", type=float, default=30.0, help="seconds between rounds")
    parser.add_argument("--trials", type=int, default=16, help="for kernels the tuning database lacks")
    parser.add_argument("--stem", default="validate_repeat")
    args = parser.parse_args()
    recipe = get_recipe(args.recipe)
    rng = random.Random(0)
    with (
        open_workspace(args.workspace) as ws,
        tempfile.TemporaryDirectory() as tmp,
        agent_session(ws, get_device(ws, "local"), threads=1) as agent,
        Builder(ws.cache_dir) as builder,
    ):
        device = get_device(ws, "local")
        model = load_model(ws, "local", args.recipe)
        tuner = (
            KernelTuner(ws.tuning_dir("local"), device.target(args.recipe), 1, None, lambda p, a: agent.time_library(Path(p), a),
                        builder=builder, representatives=Representatives())
            if recipe.tunes else None
        )  # fmt: skip
        built: dict[str, tuple[str, list[list[Any]], float]] = {}  # network -> (library on the device, inputs, predicted ms)
        for n, (label, factory, res) in enumerate(validation_networks(args.networks)):
            torch.manual_seed(0)
            mod = relax_from_torch(factory().eval(), torch.randn(1, 3, res, res))
            lib = Path(tmp) / f"net{n}.so"
            inputs = build_network(mod, device.target(args.recipe), lib, None, recipe, tuner, args.trials)
            remote = agent.remote_path(lib.name)
            agent.transport.put(lib, remote)
            built[label] = (remote, inputs, predict_kernels(model, network_kernels(mod)).total_ms)
            print(f"built {label}", flush=True)
        if tuner is not None:
            tuner.close()
        times: dict[str, list[float]] = {label: [] for label in built}
        for r in range(args.rounds):
            if r:
                time.sleep(args.pause)
            order = list(built)
            rng.shuffle(order)
            for label in order:
                remote, inputs, _ = built[label]
                reply = agent.request(
                    "bench_network", {"lib": remote, "inputs": inputs, "repeat": 7, "min_repeat_ms": 100.0, "per_kernel": False}, timeout=1800
                )
                times[label].append(statistics.median(reply["seconds"]) * 1000)
            print(f"round {r + 1}/{args.rounds}: " + ", ".join(f"{k} {v[-1]:.2f}" for k, v in times.items()), flush=True)
    rows: list[dict[str, Any]] = []
    for label, (_, _, predicted) in built.items():
        ms = times[label]
        median = statistics.median(ms)
        row: dict[str, Any] = {
            "network": label, "predicted_ms": predicted, "median_ms": median, "min_ms": min(ms), "max_ms": max(ms),
            "spread_pct": 100 * (max(ms) / min(ms) - 1), "error_pct": 100 * (predicted / median - 1),
            "error_min_pct": 100 * (predicted / max(ms) - 1), "error_max_pct": 100 * (predicted / min(ms) - 1),
        }  # fmt: skip
        row.update({f"round{i + 1}_ms": t for i, t in enumerate(ms)})
        rows.append(row)
        print({k: round(v, 2) if isinstance(v, float) else v for k, v in row.items() if not k.startswith("round")}, flush=True)
    per_round = [[100 * (row["predicted_ms"] / row[f"round{i + 1}_ms"] - 1) for row in rows] for i in range(args.rounds)]
    speed = [statistics.median(row[f"round{i + 1}_ms"] / row["median_ms"] for row in rows) for i in range(args.rounds)]
    errors = np.array([row["error_pct"] for row in rows])
    summary = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "recipe": args.recipe,
        "networks": len(rows),
        "rounds": args.rounds,
        "pause_s": args.pause,
        "within_10_of_median": int(np.sum(np.abs(errors) <= 10)),
        "rmspe_of_median_pct": float(np.sqrt(np.mean(errors**2))),
        "median_error_pct": float(np.median(errors)),
        "within_10_per_round": [int(np.sum(np.abs(np.array(e)) <= 10)) for e in per_round],
        "median_spread_pct": float(np.median([row["spread_pct"] for row in rows])),
        "max_spread_pct": float(max(row["spread_pct"] for row in rows)),
        "round_speed": speed,
    }
    print(summary, flush=True)
    write_outputs(args.stem, summary, rows)


if __name__ == "__main__":
    main()
