"""The store's measurements as a DataFrame, and exports of it."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from edgelat.errors import UsageError
from edgelat.workspace import Workspace

__all__ = ["export_measurements", "measurements_frame"]

_BASE = [
    "device",
    "op",
    "config_id",
    "recipe",
    "caches",
    "status",
    "median_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "cv",
    "repeats",
    "number",
    "unstable",
    "attempts",
    "threads",
    "campaign_id",
    "tvm_version",
    "agent_version",
    "build_s",
    "measured_at",
    "error",
]


def measurements_frame(ws: Workspace, device: str, recipe: str | None = None) -> pd.DataFrame:
    """One row per kernel measurement of ``device``, with the config's parameters as columns."""
    query = f"SELECT {', '.join('m.' + c for c in _BASE)}, k.params FROM measurements m JOIN kernel_configs k USING (config_id) WHERE m.device = :device"
    if recipe is not None:
        query += " AND m.recipe = :recipe"
    rows = ws.store.rows(query + " ORDER BY m.id", {"device": device, "recipe": recipe})
    frame = pd.DataFrame([dict(r) for r in rows], columns=[*_BASE, "params"])
    params = pd.DataFrame([json.loads(p) for p in frame.pop("params")], index=frame.index)
    return pd.concat([frame, params.add_prefix("p_")], axis=1)


def check_output(path: Path, suffixes: tuple[str, ...]) -> None:
    """Refuse an output path that cannot be written as asked: a directory, below a file, or a suffix of another format."""
    if path.is_dir():
        raise UsageError(f"--output {path} is a directory; give a file name")
    blocker = next((p for p in path.parents if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UsageError(f"--output {path} cannot be written: {blocker} is a file, not a directory")
    if path.suffix and path.suffix.lower() not in suffixes:
        raise UsageError(f"--output {path} has suffix {path.suffix}, but the file is written as {suffixes[0][1:]}; name it *{suffixes[0]}")


def export_measurements(ws: Workspace, device: str, fmt: str, output: Path | None = None) -> Path:
    """Write ``device``'s measurements as parquet or CSV; returns the path written.

    Without ``output`` the file goes to the workspace's ``exports/`` folder.
    """
    if fmt not in ("parquet", "csv"):
        raise UsageError(f"unknown format {fmt!r}: use parquet or csv")
    if output is not None:
        check_output(output, (f".{fmt}",) if fmt == "parquet" else (".csv", ".txt"))
    frame = measurements_frame(ws, device)
    if frame.empty:
        raise UsageError(f"{device} has no measurements: run `edgelat profile {device}` first")
    output = output or ws.device_dir("exports", device) / f"kernels.{fmt}"
    output.parent.mkdir(parents=True, exist_ok=True)
    if fmt == "parquet":
        frame.to_parquet(output, index=False)
    else:
        frame.to_csv(output, index=False)
    return output
