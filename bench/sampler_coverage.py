"""Which sampler's profile predicts real networks' tuned convolutions better: models trained on the conv2d
kernels of two campaigns (the same count from each), tested on the conv2d kernels of real networks profiled
exactly (a third campaign, the same recipe and timing), kernel by kernel and summed as each network has them.

Usage (one workspace, `local`, tuned conv2d only; ARM campaigns from two samplers, REF from the networks' kernels):
    python bench/sampler_coverage.py --workspace WS --arms old=1,new=2 --reference 3 \
        [--networks resnet18@96,resnet18@160,squeezenet1_1@128,mobilenetv2_100@160] [--stem sampler_coverage]
The reference campaign is made with ``--make-reference [--rep-trials N]`` (it profiles the networks' conv2d kernels, tuned).
Writes bench/out/STEM.{json,csv}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.ops import config_id  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.predictors.estimators import KernelLatencyRegressor  # noqa: E402
from edgelat.predictors.train import accuracy_metrics, feature_frame  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OP = "conv2d"
HEAVY_BYTES = 1 << 20  # weights of at least 1 MiB: past a core's L1 and most of its L2


def conv_kernels(networks: str) -> dict[str, list[dict[str, Any]]]:
    """Each network's conv2d kernel configs, one entry per kernel (repeats kept: they add up in the network)."""
    out = {}
    for name, factory, resolution in validation_networks(networks):
        torch.manual_seed(0)
        kernels = network_kernels(relax_from_torch(factory(), torch.randn(1, 3, resolution, resolution)))
        out[name] = [dict(k.config) for k in kernels if k.op == OP]
    return out


def campaign_rows(ws: Any, campaign: int) -> list[dict[str, Any]]:
    """The campaign's successful conv2d measurements timed the tuned recipe's way, in the order they were made."""
    caches = get_recipe("tuned").caches
    rows = ws.store.rows(
        """SELECT m.config_id, k.params, m.median_ms FROM measurements m JOIN kernel_configs k USING (config_id)
           WHERE m.campaign_id = :c AND m.op = :op AND m.status = 'ok' AND m.median_ms > 0 AND m.caches = :caches
           ORDER BY m.id""",
        {"c": campaign, "op": OP, "caches": caches},
    )
    return [dict(r) for r in rows]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--arms", default="", help="name=campaign_id,... (the models compared)")
    parser.add_argument("--reference", type=int, help="the campaign that profiled the networks' conv2d kernels")
    parser.add_argument("--networks", default="resnet18@96,resnet18@160,squeezenet1_1@128,mobilenetv2_100@160")
    parser.add_argument("--make-reference", action="store_true", help="profile the networks' conv2d kernels (tuned) and stop")
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--rep-trials", type=int, default=256, help="as the arms' campaigns had (the reference is profiled alike)")
    parser.add_argument("--resamples", type=int, default=0, help="also refit each arm on this many random 80%% subsets: the spread")
    parser.add_argument("--stem", default="sampler_coverage")
    args = parser.parse_args()
    nets = conv_kernels(args.networks)
    with open_workspace(args.workspace) as ws:
        if args.make_reference:
            from edgelat.profiler.campaign import ProfileConfig, profile

            distinct = {config_id(OP, c): c for cfgs in nets.values() for c in cfgs}
            print(f"profiling {len(distinct)} distinct conv2d kernels of {', '.join(nets)}", flush=True)
            result = profile(
                ws,
                "local",
                ProfileConfig(
                    configs=tuple((OP, c) for c in distinct.values()), recipe="tuned", rep_trials=args.rep_trials, minutes=args.minutes
                ),
            )
            print(f"reference campaign {result.campaign_id}: {result.status}", flush=True)
            return
        arms = {name: int(cid) for name, cid in (a.split("=") for a in args.arms.split(","))}
        training = {name: campaign_rows(ws, cid) for name, cid in arms.items()}
        n = min(len(rows) for rows in training.values())
        reference = {r["config_id"]: r["median_ms"] for r in campaign_rows(ws, args.reference)}
    models = {}
    for name, rows in training.items():
        rows = rows[:n]  # the same count from each arm: the first n measured (plans are shuffled across sizes)
        X = feature_frame(OP, [json.loads(r["params"]) for r in rows])
        models[name] = KernelLatencyRegressor().fit(X, np.array([r["median_ms"] for r in rows]))
        weights = X["param_bytes"].to_numpy()
        print(f"{name}: {n} kernels, {int((weights >= HEAVY_BYTES).sum())} with weights of 1 MiB or more", flush=True)
    rows_out: list[dict[str, Any]] = []
    summary: dict[str, Any] = {"trained_on": n, "arms": arms, "networks": {}}
    for net, cfgs in nets.items():
        known = [c for c in cfgs if config_id(OP, c) in reference]
        if not known:
            continue
        X = feature_frame(OP, known)
        measured = np.array([reference[config_id(OP, c)] for c in known])
        preds = {name: model.predict(X) for name, model in models.items()}
        summary["networks"][net] = {
            "kernels": len(cfgs), "referenced": len(known), "measured_ms": float(measured.sum()),
            **{f"{name}_error": float(p.sum() / measured.sum() - 1) for name, p in preds.items()},
        }  # fmt: skip
        print(net, json.dumps(summary["networks"][net]), flush=True)
        for i, cfg in enumerate(known):
            rows_out.append({"network": net, "config_id": config_id(OP, cfg), "weight_bytes": float(X["param_bytes"].iloc[i]),
                             "out_hw": float(X["ohw"].iloc[i]), "measured_ms": float(measured[i]),
                             **{f"{name}_ms": float(p[i]) for name, p in preds.items()}})  # fmt: skip
    # Kernel by kernel, each distinct kernel once, overall and by weight size.
    distinct = list({r["config_id"]: r for r in rows_out}.values())
    for label, subset in (("all", distinct), ("heavy", [r for r in distinct if r["weight_bytes"] >= HEAVY_BYTES]),
                          ("light", [r for r in distinct if r["weight_bytes"] < HEAVY_BYTES])):  # fmt: skip
        if subset:
            y = np.array([r["measured_ms"] for r in subset])
            summary[f"kernels_{label}"] = {"n": len(subset), **{
                name: {**accuracy_metrics(y, np.array([r[f"{name}_ms"] for r in subset])),
                       "median_error": float(np.median(np.array([r[f"{name}_ms"] for r in subset]) / y - 1))} for name in models}}  # fmt: skip
            print(label, json.dumps(summary[f"kernels_{label}"]), flush=True)
    if args.resamples:
        summary["resampled"] = resample(training, n, nets, reference, args.resamples)
        print("resampled", json.dumps(summary["resampled"]), flush=True)
    write_outputs(args.stem, summary, rows_out)


def resample(training: dict[str, list[dict[str, Any]]], n: int, nets: dict[str, list[dict[str, Any]]],
             reference: dict[str, float], times: int) -> dict[str, Any]:
    """How much of a difference between arms is the luck of which kernels one campaign drew: each arm refit on random
    80% subsets of its n kernels; the 10th, 50th and 90th percentiles of each figure over the refits."""
    rng = np.random.default_rng(0)
    known = {net: [c for c in cfgs if config_id(OP, c) in reference] for net, cfgs in nets.items()}
    distinct = list({config_id(OP, c): c for cfgs in known.values() for c in cfgs}.items())
    X_all = feature_frame(OP, [c for _, c in distinct])
    y_all = np.array([reference[cid] for cid, _ in distinct])
    heavy = X_all["param_bytes"].to_numpy() >= HEAVY_BYTES
    out: dict[str, Any] = {}
    for name, rows in training.items():
        rows = rows[:n]
        X = feature_frame(OP, [json.loads(r["params"]) for r in rows])
        y = np.array([r["median_ms"] for r in rows])
        figures: dict[str, list[float]] = {}
        for _ in range(times):
            pick = rng.choice(n, size=int(0.8 * n), replace=False)
            model = KernelLatencyRegressor().fit(X.iloc[pick].reset_index(drop=True), y[pick])
            pred = dict(zip([cid for cid, _ in distinct], model.predict(X_all), strict=True))
            p_all = np.array([pred[cid] for cid, _ in distinct])
            figures.setdefault("rmspe_all", []).append(accuracy_metrics(y_all, p_all)["rmspe"])
            figures.setdefault("rmspe_heavy", []).append(accuracy_metrics(y_all[heavy], p_all[heavy])["rmspe"])
            figures.setdefault("rmspe_light", []).append(accuracy_metrics(y_all[~heavy], p_all[~heavy])["rmspe"])
            for net, cfgs in known.items():
                measured = sum(reference[config_id(OP, c)] for c in cfgs)
                figures.setdefault(f"{net}_error", []).append(sum(pred[config_id(OP, c)] for c in cfgs) / measured - 1)
        out[name] = {k: [round(float(q), 3) for q in np.percentile(v, [10, 50, 90])] for k, v in figures.items()}
    return out


if __name__ == "__main__":
    main()
