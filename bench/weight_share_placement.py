"""Does only a kernel's weights' share of its bytes go cold in a network? Two placements of each validated network
between its kernels' two ways, compared leave-one-out on one `validate` run's measurements.

`far`: every kernel moves ``share`` of the way from its near price to its far price (what `predict` does). `wfar`:
each kernel moves ``share * w``, with ``w`` its weights' fraction of the bytes it touches (``param_bytes / bytes`` of
its kind's features): the far way flushes a kernel's weights *and* its input, but in a network the input was just
written by the kernel before. For each network the curve (as :class:`CacheContext` fits it) is fitted to the others.
No timing: the workspace's tuned models and a validation table only.

Usage: python bench/weight_share_placement.py --workspace WS --validation VALIDATION_CSV [--stem weight_share_placement]
Writes bench/out/STEM.{json,csv}.
"""

from __future__ import annotations

import argparse
import csv
import os
import sys
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.ops import get_op  # noqa: E402
from edgelat.ops.footprint import network_footprint  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.predictors.context import CacheContext, ContextRow  # noqa: E402
from edgelat.predictors.model import _far_priced, _priced  # noqa: E402
from edgelat.predictors.predict import load_model  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--workspace", type=Path, required=True)
    ap.add_argument("--validation", type=Path, required=True, help="validate's validation.csv (its measured_ms)")
    ap.add_argument("--stem", default="weight_share_placement")
    args = ap.parse_args()
    measured = {r["network"]: float(r["measured_ms"]) for r in csv.DictReader(args.validation.open())}
    rows: list[dict[str, float | str]] = []
    with open_workspace(args.workspace) as ws:
        model = load_model(ws, "local", "tuned")
        assert model.far is not None, "the workspace's tuned models have no far way"
        for label, factory, res in validation_networks(",".join(measured)):
            torch.manual_seed(0)
            mod = relax_from_torch(factory(), torch.randn(1, 3, res, res))
            kernels = network_kernels(mod)
            near = _priced(model, kernels, False)[0]
            far = _far_priced(model.far, kernels, near)
            w = np.zeros(len(kernels))
            for i, k in enumerate(kernels):
                if k.op and k.config is not None:
                    f = get_op(k.op).features(k.config)
                    w[i] = float(f.get("param_bytes", 0.0)) / (float(f.get("bytes", 0.0)) or 1.0)
            rows.append({"network": label, "measured_ms": measured[label], "touched_mb": network_footprint(mod).touched_mb,
                         "near_ms": float(near.sum()), "far_ms": float(far.sum()), "wfar_ms": float((near + w * (far - near)).sum())})  # fmt: skip
    for way in ("far", "wfar"):
        context = [ContextRow(str(r["network"]), float(r["touched_mb"]), float(r["near_ms"]), float(r[f"{way}_ms"]), float(r["measured_ms"])) for r in rows]
        for i, (r, c) in enumerate(zip(rows, context, strict=True)):
            curve = CacheContext.fit([x for j, x in enumerate(context) if j != i])
            r[f"{way}_error_pct"] = 100 * (curve.price(c) / c.measured_ms - 1)
    summary: dict[str, object] = {"validation": str(args.validation)}
    for way in ("far", "wfar"):
        e = np.array([float(r[f"{way}_error_pct"]) for r in rows]) / 100
        summary[way] = {"within_10": int(np.sum(np.abs(e) <= 0.1)), "networks": len(e), "rmspe": float(100 * np.sqrt(np.mean(e**2)))}
        print(f"{way}: {summary[way]['within_10']}/{len(e)} within ±10%, RMSPE {summary[way]['rmspe']:.1f}%")
    write_outputs(args.stem, summary, rows)


if __name__ == "__main__":
    main()
