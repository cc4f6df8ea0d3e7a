"""Where a tuned network's time goes that its prediction misses: every kernel timed in place (the VM's
profiler, one run) beside its prediction, and whether the workspace's tuned profile measured that kernel
itself (its kind and config) or the model extrapolated to it. With ``--alone``, each kernel's config is also
profiled as a campaign profiles it (emitted from its config, scheduled from the database, timed the recipe's way),
so a miss splits into the model's share (predicted vs alone) and the context's (alone vs in place); that campaign
is deleted afterwards, so the workspace's training data is unchanged.

Usage: python bench/tuned_in_place.py --workspace WS [--networks ghostnet_100@96,mnasnet_050@128] [--trials 16] [--alone]
       [--stem tuned_in_place]
Writes bench/out/STEM.{json,csv}.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _workspace import delete_campaign, write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.ops import config_id  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.predictors.model import predict_kernels  # noqa: E402
from edgelat.predictors.predict import load_model  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig, profile  # noqa: E402
from edgelat.profiler.e2e import measure_network  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--networks", default="ghostnet_100@96,mnasnet_050@128")
    parser.add_argument("--device", default="local")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--alone", action="store_true", help="also profile every kernel's config alone (alone_ms)")
    parser.add_argument("--stem", default="tuned_in_place", help="Output file name in bench/out (without suffix).")
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with open_workspace(args.workspace) as ws:
        model = load_model(ws, args.device, "tuned")
        profiled = {r["config_id"] for r in ws.store.rows(
            "SELECT DISTINCT config_id FROM measurements WHERE device = :device AND recipe = 'tuned' AND status = 'ok'", {"device": args.device})}  # fmt: skip
        for name, factory, resolution in validation_networks(args.networks):
            torch.manual_seed(0)  # the weights `validate` builds: its stored measurements and these are of one network
            mod = relax_from_torch(factory(), torch.randn(1, 3, resolution, resolution))
            kernels = network_kernels(mod)
            predicted = predict_kernels(model, kernels)
            measured = measure_network(ws, args.device, mod, name=name, recipe="tuned", trials=args.trials, per_kernel=True)
            in_place: dict[str, list[float]] = defaultdict(list)
            for kernel_name, ms in measured.kernels:
                in_place[kernel_name].append(float(ms))
            for k, p in zip(kernels, predicted.kernels, strict=True):
                times = in_place.get(p.name, [])
                rows.append({
                    "network": name, "kernel": p.name, "op": p.op or "(fallback)",
                    "config_id": config_id(k.op, k.config) if k.op else None, "config": json.dumps(k.config) if k.op else None,
                    "profiled": bool(k.op and config_id(k.op, k.config) in profiled),
                    "predicted_ms": p.predicted_ms, "in_place_ms": times.pop(0) if times else None,
                })  # fmt: skip
            mine = [r for r in rows if r["network"] == name and r["in_place_ms"] is not None]
            summary[name] = {
                "measured_ms": measured.median_ms,
                "in_place_sum_ms": sum(ms for _, ms in measured.kernels),
                "predicted_ms": predicted.total_ms,
                "by_profiled": {str(flag): {"kernels": len(sub), "predicted_ms": sum(r["predicted_ms"] for r in sub),
                                             "in_place_ms": sum(r["in_place_ms"] for r in sub)}
                                for flag in (True, False) for sub in [[r for r in mine if r["profiled"] == flag]]},
                "by_op": {op: {"kernels": len(sub), "predicted_ms": sum(r["predicted_ms"] for r in sub), "in_place_ms": sum(r["in_place_ms"] for r in sub)}
                          for op in sorted({r["op"] for r in mine}) for sub in [[r for r in mine if r["op"] == op]]},
            }  # fmt: skip
            print(json.dumps({name: summary[name]}, indent=1), flush=True)
        if args.alone:
            alone = profile_alone(ws, args.device, rows, args.trials)
            for r in rows:
                r["alone_ms"] = alone.get(r["config_id"])
            for name in summary:
                mine = [r for r in rows if r["network"] == name and r["in_place_ms"] is not None and r["alone_ms"] is not None]
                summary[name]["alone"] = {"kernels": len(mine), **{f"{way}_ms": sum(r[f"{way}_ms"] for r in mine) for way in ("predicted", "alone", "in_place")}}
                print(name, summary[name]["alone"], flush=True)
    write_outputs(args.stem, summary, rows)


def profile_alone(ws: Any, device: str, rows: list[dict[str, Any]], trials: int) -> dict[str, float]:
    """Each distinct kernel config of ``rows`` profiled as a tuned campaign profiles it; the campaign is deleted after."""
    plan = {r["config_id"]: (r["op"], json.loads(r["config"])) for r in rows if r["config_id"]}
    result = profile(ws, device, ProfileConfig(configs=tuple(plan.values()), recipe="tuned", trials=trials))
    try:
        return {r["config_id"]: r["median_ms"] for r in ws.store.rows(
            "SELECT config_id, median_ms FROM measurements WHERE campaign_id = :c AND status = 'ok'", {"c": result.campaign_id})}  # fmt: skip
    finally:
        delete_campaign(ws, result.campaign_id)


if __name__ == "__main__":
    main()
