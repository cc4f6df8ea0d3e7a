"""Prediction's stand-in constants against TVM's real FoldConstant, on every corpus network (tests/corpus).

For each network, imported from PyTorch (torch.export) and from its TorchScript ONNX export: the kernels
found with the real fold and with stand-ins (edgelat.ops.rewrites.StandInConstants), whether they are the
same (kind, config, fused name and ops of every kernel), and how long each took.

Usage: python bench/standin_constants.py [--jobs 2]
Writes bench/out/standin_constants.json and bench/out/standin_constants.csv.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)


def _kernels(mod: Any, values: bool) -> tuple[list[Any], float]:
    from edgelat.ops.lowering import fuse, fused_groups
    from edgelat.ops.network import is_view, match_kernel

    start = time.perf_counter()
    fused, attrs = fuse(mod, values=values)
    found = [match_kernel(g) for g in fused_groups(fused, attrs) if not is_view(g)]
    return [(k.op, k.config, k.group.name, k.group.ops) for k in found], time.perf_counter() - start


def _check(name: str) -> list[dict[str, Any]]:
    from edgelat.ops.network import relax_from_onnx, relax_from_torch
    from tests.corpus import example_inputs, export_onnx, get

    net = get(name)
    example = example_inputs(net)
    mods = {"torch": relax_from_torch(net.build(), example if len(example) > 1 else example[0])}
    with tempfile.TemporaryDirectory() as tmp:
        mods["onnx"] = relax_from_onnx(export_onnx(net, Path(tmp) / "m.onnx", exporter="torchscript", dynamic=False), None)
    rows = []
    for path, mod in mods.items():
        real, real_s = _kernels(mod, True)
        standin, standin_s = _kernels(mod, False)
        rows.append({"network": name, "path": path, "kernels": len(real), "same": real == standin,
                     "real_fold_s": round(real_s, 3), "standin_s": round(standin_s, 3)})  # fmt: skip
    return rows


def main() -> None:
    from tests.corpus import corpus

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=2, help="networks checked at a time")
    args = parser.parse_args()
    names = [net.name for net in corpus()]
    with ProcessPoolExecutor(args.jobs) as pool:
        rows = [row for rows in pool.map(_check, names) for row in rows]
    summary = {}
    for path in ("torch", "onnx"):
        mine = [r for r in rows if r["path"] == path]
        summary[path] = {"networks": len(mine), "same": sum(r["same"] for r in mine),
                         "real_fold_s": round(sum(r["real_fold_s"] for r in mine), 1), "standin_s": round(sum(r["standin_s"] for r in mine), 1)}  # fmt: skip
    write_outputs("standin_constants", summary, rows, indent=2)
    for path, s in summary.items():
        print(f"{path}: {s['same']}/{s['networks']} networks with the same kernels; finding them took {s['real_fold_s']} s with the real fold, {s['standin_s']} s with stand-ins")
    if any(not r["same"] for r in rows):
        print("different:", ", ".join(f"{r['network']} ({r['path']})" for r in rows if not r["same"]))
        sys.exit(1)


if __name__ == "__main__":
    main()
