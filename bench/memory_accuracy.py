"""Peak memory and library size: measured on `local`, predicted leaving each network out, in one run.

Every network of the quick zoo plus two at 448x448 (where activations and kernel workspace weigh next to the
weights) is built and measured on `local` (reused when the workspace already holds its measurement with
memory), then predicted by a memory model fitted on the *other* networks (edgelat.predictors.memory). Prints
and saves bench/out/memory_accuracy.json and .csv: per network the weights, planned activations, largest
kernel workspace, library size and peak memory measured and predicted, and the network's own part of the
peak (above the runtime's) measured and predicted.

Usage: python bench/memory_accuracy.py [--workspace DIR] [--zoo quick,mobilenetv2_050@448,resnet18@448]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench._workspace import DEFAULT, write_outputs  # noqa: E402
from edgelat.ops.footprint import network_footprint  # noqa: E402
from edgelat.ops.network import relax_from_torch  # noqa: E402
from edgelat.predictors.memory import MeasuredMemory, MemoryModel  # noqa: E402
from edgelat.profiler.e2e import measure_network  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", type=Path, default=DEFAULT)
    parser.add_argument("--zoo", default="quick,mobilenetv2_050@448,resnet18@448")
    args = parser.parse_args()
    measured: list[MeasuredMemory] = []
    with open_workspace(args.workspace) as ws:
        for label, factory, res in validation_networks(args.zoo):
            torch.manual_seed(0)
            mod = relax_from_torch(factory(), torch.randn(1, 3, res, res))
            footprint = network_footprint(mod)
            m = measure_network(ws, "local", mod, name=label, per_kernel=False, reuse=True)
            assert m.peak_memory_mb is not None and m.runtime_memory_mb is not None and m.size_bytes is not None
            measured.append(MeasuredMemory(label, label, footprint, m.peak_memory_mb, m.runtime_memory_mb, m.size_bytes))
            print(f"{label}: peak {m.peak_memory_mb:.1f} MB, library {m.size_bytes / 2**20:.2f} MB", flush=True)
    rows = []
    for m in measured:
        model = MemoryModel([o for o in measured if o is not m])
        p = model.predict(m.footprint)
        assert p.memory_mb is not None and model.runtime_mb is not None
        own, own_pred = m.peak_mb - m.runtime_mb, p.memory_mb - model.runtime_mb
        rows.append({
            "network": m.name, "weights_mb": round(m.footprint.params_mb, 3), "activations_mb": round(m.footprint.activation_mb, 3),
            "workspace_mb": round(m.footprint.workspace_mb, 3), "size_mb": round(m.size_bytes / 2**20, 3), "size_pred_mb": round(p.size_mb, 3),
            "peak_mb": round(m.peak_mb, 1), "peak_pred_mb": round(p.memory_mb, 1), "own_mb": round(own, 2), "own_pred_mb": round(own_pred, 2),
            "own_error_pct": round(100 * (own_pred / own - 1), 2), "peak_error_pct": round(100 * (p.memory_mb / m.peak_mb - 1), 2),
            "size_error_pct": round(100 * (p.size_mb * 2**20 / m.size_bytes - 1), 2),
        })  # fmt: skip
        print(rows[-1], flush=True)

    def share(key: str) -> float:
        return 100 * float(np.mean([abs(r[key]) <= 10 for r in rows]))

    def rmspe(key: str) -> float:
        return float(np.sqrt(np.mean([r[key] ** 2 for r in rows])))

    summary = {
        "when": time.strftime("%Y-%m-%d"), "networks": len(rows), "runtime_mb": statistics.median(m.runtime_mb for m in measured),
        "own_within_10_pct": share("own_error_pct"), "own_rmspe": rmspe("own_error_pct"),
        "peak_within_10_pct": share("peak_error_pct"), "peak_rmspe": rmspe("peak_error_pct"),
        "size_within_10_pct": share("size_error_pct"), "size_rmspe": rmspe("size_error_pct"),
        "theta_all": [float(t) for t in MemoryModel(measured).theta],
    }  # fmt: skip
    print(summary)
    write_outputs("memory_accuracy", summary, rows)


if __name__ == "__main__":
    main()
