"""`edgelat predict --space nb201 --archs-file`: 1,000 architectures through the real CLI, three ways.

first: a workspace that never saw the space (its blocks' kernels and their prices removed): every distinct
    block is imported, fused and matched, then priced; once per workspace and import pipeline.
new_model: the block kernels kept, the device's block prices removed: what follows `train`, `adapt` or a new
    device (only the models run).
warm: the same command again (every block price cached). Target (issue 15): under 10 s.

Usage: python bench/predict_archs.py [--workspace DIR] [--archs 1000]
Writes bench/out/predict_archs.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from bench._workspace import DEFAULT, ensure_trained  # noqa: E402
from edgelat.nas import get_space  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", default=str(DEFAULT))
    parser.add_argument("--archs", type=int, default=1000)
    args = parser.parse_args()
    with open_workspace(args.workspace) as ws:
        if not (ws.model_dir("local", "default") / "meta.json").exists():  # any trained workspace will do
            ensure_trained(ws)
    space = get_space("nb201")
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(args.archs)]
    blocks = {k for a in archs for k in space.blocks(a)}
    prices = Path(args.workspace) / "oracle" / "local"
    kernels = Path(args.workspace) / "blocks"
    result: dict[str, object] = {"archs": len(archs), "distinct_blocks": len(blocks)}
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "archs.txt"
        path.write_text("\n".join(archs) + "\n")
        command = [sys.executable, "-m", "edgelat.cli", "predict", "local", "--space", "nb201", "--archs-file", str(path), "--json", "-w", args.workspace]
        for run in ("first", "new_model", "warm"):
            if run == "first":
                shutil.rmtree(kernels, ignore_errors=True)
            if run in ("first", "new_model"):
                shutil.rmtree(prices, ignore_errors=True)
            start = time.perf_counter()
            done = subprocess.run(command, capture_output=True, text=True, check=True)
            seconds = time.perf_counter() - start
            preds = json.loads(done.stdout)
            assert len(preds) == len(archs) and all(p["total_ms"] > 0 for p in preds)
            result[f"{run}_seconds"] = seconds
            print(f"{run}: {len(archs)} architectures ({len(blocks)} distinct blocks) in {seconds:.1f} s")
    OUT.mkdir(exist_ok=True)
    (OUT / "predict_archs.json").write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
