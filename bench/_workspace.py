"""The bench workspace: `local` profiled and trained once, then shared by the benchmarks."""

from __future__ import annotations

import json
from pathlib import Path

from edgelat.predictors.train import train_device
from edgelat.profiler.campaign import ProfileConfig, profile
from edgelat.profiler.inventory import get_device
from edgelat.workspace import Workspace

DEFAULT = Path.home() / ".cache" / "edgelat-bench"


def ensure_trained(ws: Workspace, samples: int = 100) -> None:
    """Profile `local` (``samples`` configs per op kind, ~15 minutes) for every kind it has no measurements of;
    train if untrained or if the models predate those measurements."""
    from edgelat.ops import list_ops

    target = get_device(ws, "local").target("default")  # measurements built for another target are not trained on
    rows = ws.db.execute("SELECT DISTINCT op, target FROM measurements WHERE device = 'local' AND recipe = 'default' AND status = 'ok'")
    measured = {op for op, t in rows if t and json.loads(t) == target}
    missing = tuple(op for op in list_ops() if op not in measured)
    if missing:
        print(f"profiling local into {ws.root} ({samples} configs per op kind: {', '.join(missing)}) ...")
        profile(ws, "local", ProfileConfig(ops=missing, samples=samples, weighted=True))
    if missing or not (ws.model_dir("local", "default") / "meta.json").exists():
        train_device(ws, "local")
