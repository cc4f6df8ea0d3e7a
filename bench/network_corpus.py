"""The front door on networks written by others (tests/corpus): import, kernel coverage, and accuracy on `local`.

For every corpus network, exported with the TorchScript and with the dynamo ONNX exporter (odd networks with
symbolic batch and spatial dims, bound from their input shapes) and taken through torch.export:
- whether it imports;
- the share of its kernels a dedicated kind's model prices, and the share of its predicted time;
- the kernels the fallback prices, by what they are (for the README's list of what is still missing).
Then each network (TorchScript ONNX import) is built and timed on `local` (default recipe, 1 thread) and
compared with its prediction.

Usage: python bench/network_corpus.py [--workspace DIR] [--measure all|N] [--no-measure]
Writes bench/out/network_corpus.json, bench/out/network_corpus.csv and bench/out/network_corpus.png.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from bench._workspace import DEFAULT, ensure_trained  # noqa: E402
from edgelat.errors import EdgelatError  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_onnx, relax_from_torch  # noqa: E402
from edgelat.predictors.predict import load_model, predict_kernels  # noqa: E402
from edgelat.predictors.train import accuracy_metrics  # noqa: E402
from edgelat.profiler.e2e import measure_network  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402
from tests.corpus import EXPORTERS, corpus, example_inputs, export_onnx  # noqa: E402

OUT = Path(__file__).parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=str(DEFAULT))
    parser.add_argument("--measure", default="all", help="how many networks to measure on local: all, or the first N")
    parser.add_argument("--no-measure", action="store_true")
    args = parser.parse_args()
    torch.set_num_threads(1)
    OUT.mkdir(exist_ok=True)
    nets = corpus()
    rows: list[dict] = []
    fallback_kinds: Counter[str] = Counter()
    with open_workspace(args.workspace) as ws, tempfile.TemporaryDirectory() as tmp:
        ensure_trained(ws)
        model = load_model(ws, "local")
        for i, net in enumerate(nets):
            dynamic = i % 2 == 1
            routes = [(exporter, True) for exporter in EXPORTERS] + [("torch.export", False)]
            for route, onnx in routes:
                row = {"network": net.name, "family": net.family, "route": route, "dynamic": dynamic and onnx}
                start = time.time()
                try:
                    if onnx:
                        path = export_onnx(net, Path(tmp) / f"{net.name}.{route}.onnx", exporter=route, dynamic=dynamic)
                        mod = relax_from_onnx(path, list(net.input_shapes) if dynamic else None)
                    else:
                        example = example_inputs(net)
                        mod = relax_from_torch(net.build(), example if len(example) > 1 else example[0])
                    kernels = network_kernels(mod)
                    pred = predict_kernels(model, kernels)
                except (EdgelatError, RuntimeError, ValueError) as exc:
                    rows.append({**row, "imported": False, "error": str(exc)[:300]})
                    print(f"{net.name:28s} {route:12s} FAILED {str(exc)[:120]}")
                    continue
                for kernel, k in zip(kernels, pred.kernels, strict=True):
                    if k.fallback:  # by kind, or for kernels no kind claims by their ops
                        fallback_kinds[k.op or "+".join(dict.fromkeys(kernel.group.ops))] += 1
                row.update(imported=True, seconds=time.time() - start, kernels=len(kernels), dedicated=sum(not k.fallback for k in pred.kernels),
                           coverage=pred.coverage, predicted_ms=pred.total_ms)  # fmt: skip
                rows.append(row)
                if route == "torchscript":
                    row["_mod"] = mod
                print(f"{net.name:28s} {route:12s} {len(kernels):3d} kernels, {row['dedicated']:3d} dedicated, "
                      f"{100 * pred.coverage:5.1f}% of {pred.total_ms:8.3f} ms")  # fmt: skip
        measured = []
        if not args.no_measure:
            todo = [r for r in rows if r["route"] == "torchscript" and r.get("imported")]
            todo = todo if args.measure == "all" else todo[: int(args.measure)]
            for r in todo:
                try:
                    m = measure_network(ws, "local", r["_mod"], name=r["network"], per_kernel=False, reuse=True)
                except EdgelatError as exc:
                    r["measure_error"] = str(exc)[:300]
                    print(f"{r['network']:28s} measure FAILED {str(exc)[:120]}")
                    continue
                r["measured_ms"] = m.median_ms
                r["error_pct"] = 100 * (r["predicted_ms"] / m.median_ms - 1)
                measured.append(r)
                print(f"{r['network']:28s} predicted {r['predicted_ms']:8.3f} ms, measured {m.median_ms:8.3f} ms ({r['error_pct']:+.1f}%)")
    for r in rows:
        r.pop("_mod", None)
    ok = [r for r in rows if r.get("imported")]
    summary = {
        "networks": len(nets),
        "imports": {route: f"{sum(r.get('imported', False) for r in rows if r['route'] == route)}/{sum(r['route'] == route for r in rows)}"
                    for route in (*EXPORTERS, "torch.export")},  # fmt: skip
        "import_share": 100 * len(ok) / len(rows),
        "kernels": sum(r["kernels"] for r in ok),
        "kernels_dedicated_share": 100 * sum(r["dedicated"] for r in ok) / max(1, sum(r["kernels"] for r in ok)),
        "time_covered_share": 100 * sum(r["coverage"] * r["predicted_ms"] for r in ok) / max(1e-9, sum(r["predicted_ms"] for r in ok)),
        "time_covered_median_network": float(np.median([100 * r["coverage"] for r in ok])) if ok else None,
        "fallback_kernels": dict(fallback_kinds.most_common()),
    }
    if measured:
        y = np.array([r["measured_ms"] for r in measured])
        summary["measured"] = {"networks": len(measured), **accuracy_metrics(y, np.array([r["predicted_ms"] for r in measured]))}
        _plot(measured, OUT / "network_corpus.png")
    (OUT / "network_corpus.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=2, default=str))
    import pandas as pd

    pd.DataFrame(rows).to_csv(OUT / "network_corpus.csv", index=False)
    print(json.dumps(summary, indent=2))


def _plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 6))
    families = sorted({r["family"] for r in rows})
    for fam in families:
        pts = [r for r in rows if r["family"] == fam]
        ax.scatter([r["measured_ms"] for r in pts], [r["predicted_ms"] for r in pts], label=fam, s=18)
    lo = min(min(r["measured_ms"], r["predicted_ms"]) for r in rows) * 0.8
    hi = max(max(r["measured_ms"], r["predicted_ms"]) for r in rows) * 1.2
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="grey", alpha=0.2, label="±10%")
    ax.set(xscale="log", yscale="log", xlabel="measured ms (local, 1 thread)", ylabel="predicted ms", title="corpus networks written by others")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
