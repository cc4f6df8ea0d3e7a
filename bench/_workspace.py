"""What the benchmarks share: the bench workspace (`local` profiled and trained once) and how results are written."""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from edgelat.ops import FEATURE_SCHEMA_VERSION
from edgelat.predictors.train import train_device
from edgelat.profiler.campaign import ProfileConfig, profile
from edgelat.profiler.inventory import get_device
from edgelat.workspace import Workspace

DEFAULT = Path.home() / ".cache" / "edgelat-bench"
OUT = Path(__file__).parent / "out"


def write_outputs(stem: str, summary: Any, rows: list[dict[str, Any]], indent: int = 1) -> None:
    """bench/out/STEM.json (the summary and every row) and bench/out/STEM.csv (the rows, one line each)."""
    OUT.mkdir(exist_ok=True)
    (OUT / f"{stem}.json").write_text(json.dumps({"summary": summary, "rows": rows}, indent=indent))
    with open(OUT / f"{stem}.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def ensure_trained(ws: Workspace, samples: int = 100) -> None:
    """Profile `local` (``samples`` configs per op kind, ~15 minutes) for every kind it has no measurements of;
    train if untrained, if the models predate those measurements, or if they were trained on other features."""
    from edgelat.ops import list_ops

    target = get_device(ws, "local").target("default")  # measurements built for another target are not trained on
    rows = ws.store.rows("SELECT DISTINCT op, target FROM measurements WHERE device = 'local' AND recipe = 'default' AND status = 'ok'")
    measured = {r["op"] for r in rows if r["target"] and json.loads(r["target"]) == target}
    missing = tuple(op for op in list_ops() if op not in measured)
    if missing:
        print(f"profiling local into {ws.root} ({samples} configs per op kind: {', '.join(missing)}) ...")
        profile(ws, "local", ProfileConfig(ops=missing, samples=samples, weighted=True))
    meta = ws.model_dir("local", "default") / "meta.json"
    stale = meta.exists() and json.loads(meta.read_text()).get("feature_schema") != FEATURE_SCHEMA_VERSION
    if missing or stale or not meta.exists():
        train_device(ws, "local")


def delete_campaign(ws: Workspace, campaign_id: int) -> None:
    """Remove a campaign a bench ran only to compare with, and its measurements, so training data stays as it was."""
    ws.store.execute("DELETE FROM measurements WHERE campaign_id = :c", {"c": campaign_id})
    ws.store.execute("DELETE FROM campaigns WHERE id = :c", {"c": campaign_id})
