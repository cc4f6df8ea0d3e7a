"""The bench workspace: `local` profiled and trained once, then shared by the benchmarks."""

from __future__ import annotations

from pathlib import Path

from edgelat.predictors.train import model_dir, train_device
from edgelat.profiler.campaign import ProfileConfig, profile
from edgelat.workspace import Workspace

DEFAULT = Path.home() / ".cache" / "edgelat-bench"


def ensure_trained(ws: Workspace, samples: int = 100) -> None:
    """Profile `local` (``samples`` configs per op kind, ~12 minutes) if the workspace has no measurements; train if untrained."""
    have = ws.db.execute("SELECT COUNT(*) FROM measurements WHERE device = 'local' AND status = 'ok'").fetchone()[0]
    if have == 0:
        print(f"profiling local into {ws.root} ({samples} configs per op kind) ...")
        profile(ws, "local", ProfileConfig(samples=samples))
    if not (model_dir(ws, "local", "default") / "meta.json").exists():
        train_device(ws, "local")
