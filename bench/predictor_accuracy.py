"""Predictor accuracy and speed on the `local` device (1 thread, default recipe).

Profiles the device (unless the workspace already holds measurements), trains, then:
- held-out kernel accuracy per op kind (5-fold cross-validation), next to the FLOPs-linear, random-forest and
  1-NN lookup baselines;
- the validation zoo, predicted and measured end to end: ±10% accuracy and RMSPE for
  edgelat and for the FLOPs baseline;
- prediction speed: one ~100-kernel network, and networks per second in batch.

Usage: python bench/predictor_accuracy.py [--workspace DIR] [--samples 100] [--zoo all]
Writes bench/out/predictor_accuracy.json and bench/out/predicted_vs_measured.png.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import torch  # noqa: E402

from edgelat.datasets import zoo  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.predictors.predict import DeviceLatencyModel, load_model, predict_kernels  # noqa: E402
from edgelat.predictors.train import train_device  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig, profile  # noqa: E402
from edgelat.workflows.validate import validate_device  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=str(Path.home() / ".cache" / "edgelat-bench"))
    parser.add_argument("--samples", type=int, default=100, help="configs per op kind when profiling, times the kind's weight")
    parser.add_argument("--zoo", default="all")
    parser.add_argument("--speed-only", action="store_true", help="only the prediction speed (the workspace's trained models)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    report: dict = {}
    with open_workspace(args.workspace) as ws:
        have = ws.store.scalar("SELECT COUNT(*) FROM measurements WHERE device = 'local' AND status = 'ok'")
        if have == 0:
            start = time.time()
            result = profile(ws, "local", ProfileConfig(samples=args.samples, weighted=True))
            report["profile"] = {"kernels": result.measured, "failed": result.failed, "minutes": (time.time() - start) / 60}
        if args.speed_only:
            report = json.loads((OUT / "predictor_accuracy.json").read_text())
            model = load_model(ws, "local")
            _speed(model, report)
            (OUT / "predictor_accuracy.json").write_text(json.dumps(report, indent=2, default=str))
            _print_speed(report)
            return
        train = train_device(ws, "local")
        report["kernels"] = {r.op: {"n": r.n, **{k: v for k, v in r.metrics.items()}} for r in train.ops}
        start = time.time()
        val = validate_device(ws, "local", zoo=args.zoo, out_dir=OUT / "validation")
        report["validation_minutes"] = (time.time() - start) / 60
        report["zoo"] = {"networks": len(val.rows), "failures": val.failures, "edgelat": val.metrics, "flops_baseline": val.flops_metrics}
        report["zoo_rows"] = [r.__dict__ for r in val.rows]
        shutil.copy(val.plot, OUT / "predicted_vs_measured.png")

        model = load_model(ws, "local")
    _speed(model, report)
    (OUT / "predictor_accuracy.json").write_text(json.dumps(report, indent=2, default=str))

    print(
        "| op | n | xgboost RMSPE | xgboost ±10% | FLOPs-linear ±10% | random forest ±10% | 1-NN lookup ±10% |\n|---|---|---|---|---|---|---|"
    )
    for op, m in report["kernels"].items():
        print(f"| {op} | {m['n']} | {m['xgboost']['rmspe']:.1f}% | {m['xgboost']['within_10']:.0f}% | {m['flops_linear']['within_10']:.0f}% | "
              f"{m['random_forest']['within_10']:.0f}% | {m['lookup_1nn']['within_10']:.0f}% |")  # fmt: skip
    z = report["zoo"]
    print(f"\n| validation zoo ({z['networks']} networks, measured end to end) | ±10% | RMSPE |\n|---|---|---|")
    print(f"| edgelat | {z['edgelat']['within_10']:.1f}% | {z['edgelat']['rmspe']:.1f}% |")
    print(f"| FLOPs baseline | {z['flops_baseline']['within_10']:.1f}% | {z['flops_baseline']['rmspe']:.1f}% |")
    _print_speed(report)


def _speed(model: DeviceLatencyModel, report: dict) -> None:
    """Prediction speed: one ~100-kernel network cold and remembered, and 1,000 networks in batch."""
    kernels = network_kernels(relax_from_torch(zoo.create_model("efficientnet_b0"), torch.randn(1, 3, 224, 224)))  # 99 kernels
    times = []
    for _ in range(50):
        start = time.perf_counter()
        predict_kernels(model, kernels)
        times.append((time.perf_counter() - start) * 1000)
    report["predict_one_ms"] = {"kernels": len(kernels), "median_ms": statistics.median(times)}
    items = [(k.op or "", k.config or {}) for k in kernels]
    times = []
    for _ in range(50):
        model.forget()  # cold: nothing remembered from an earlier call
        start = time.perf_counter()
        model.predict(items)
        times.append((time.perf_counter() - start) * 1000)
    report["predict_one_cold_ms"] = statistics.median(times)
    # The worst case for a batch: 1000 networks whose kernels do not repeat (each network's
    # kernels get their own channel counts; dense has no channel key, so the classifier repeats).
    batch = [(op, _widened(op, cfg, i)) for i in range(1000) for op, cfg in items]
    cold, remembered = [], []
    for _ in range(5):
        model.forget()
        start = time.perf_counter()
        model.predict(batch)
        cold.append(1000 / (time.perf_counter() - start))
        # The common case: the same 1000 networks again, their kernels remembered.
        start = time.perf_counter()
        model.predict(batch)
        remembered.append(1000 / (time.perf_counter() - start))
    report["batch_networks_per_s"] = statistics.median(cold)
    report["batch_networks_per_s_runs"] = cold
    report["batch_networks_per_s_remembered"] = statistics.median(remembered)


def _print_speed(report: dict) -> None:
    print(f"prediction: {report['predict_one_ms']['median_ms']:.2f} ms for one {report['predict_one_ms']['kernels']}-kernel network "
          f"(remembered), {report['predict_one_cold_ms']:.2f} ms cold; {report['batch_networks_per_s']:.0f} networks/s in batch with "
          f"no kernel repeated, {report['batch_networks_per_s_remembered']:.0f}/s remembered")  # fmt: skip


def _widened(op: str, cfg: dict, i: int) -> dict:
    """``cfg`` with its first channel-like parameter grown by ``i``: a kernel no other network has."""
    out = dict(cfg)
    for key in ("cout", "c", "units", "n_out"):
        if isinstance(out.get(key), int):
            out[key] += i
            break
    return out


if __name__ == "__main__":
    main()
