"""What a workspace holds, as plain JSON-able data: devices and their trained models, campaigns, the last
validation. The service's routes return it and its page renders it; nothing here imports TVM or torch."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from edgelat.workspace import Workspace

__all__ = ["campaigns", "devices", "latest_validation", "model_stamp", "trained_models"]


def _probe_summary(probe: dict[str, Any] | None) -> dict[str, Any] | None:
    if probe is None:
        return None
    return {key: probe.get(key) for key in ("taken_at", "arch", "cpu_model", "cpu_count", "mem_total_mb", "os_release", "python",
                                             "tvm_version", "agent_version")}  # fmt: skip


def trained_models(ws: Workspace, device: str) -> list[dict[str, Any]]:
    """Each recipe ``device`` has trained models for: when, on how many kernels, and every kind's held-out
    accuracy of the XGBoost model (RMSPE %, % within 10%), from the model's ``meta.json``; an adapted device's
    adapter as one entry."""
    found: list[dict[str, Any]] = []
    root = ws.device_dir("models", device)
    for meta_file in sorted(root.glob("*/meta.json")):
        try:
            meta = json.loads(meta_file.read_text())
        except (OSError, ValueError):
            continue
        ops = {**meta.get("ops", {}), **({"fallback": meta["fallback"]} if meta.get("fallback") else {})}
        found.append({
            "recipe": meta.get("recipe", meta_file.parent.name),
            "trained_at": meta.get("trained_at"),
            "target": meta.get("target"),
            "ops": {op: {"n": info.get("n"), **(info.get("held_out", {}).get("xgboost") or {})} for op, info in sorted(ops.items())},
        })  # fmt: skip
    adapter = ws.adapter_file(device)
    if adapter.exists():
        try:
            data = json.loads(adapter.read_text())
        except (OSError, ValueError):
            data = {}
        found.append({"recipe": data.get("recipe"), "adapted_from": data.get("source"), "trained_at": data.get("created"), "ops": {}})
    return found


def model_stamp(ws: Workspace, device: str, recipe: str) -> tuple[int, ...]:
    """Changes whenever ``train`` (or ``adapt``) replaces ``device``'s ``recipe`` models: the modification times of
    the files they are loaded from."""
    files = [ws.model_dir(device, recipe) / "meta.json", ws.adapter_file(device)]
    return tuple(f.stat().st_mtime_ns if f.exists() else 0 for f in files)


def devices(ws: Workspace) -> list[dict[str, Any]]:
    """Every device: its inventory entry, its latest probe in brief and its trained models."""
    from edgelat.profiler import inventory

    return [
        {**inventory.device_dict(d), "probe": _probe_summary(inventory.latest_probe(ws, d.name)), "models": trained_models(ws, d.name)}
        for d in inventory.list_devices(ws)
    ]


def campaigns(ws: Workspace, limit: int = 50) -> list[dict[str, Any]]:
    """The newest profiling campaigns: kernels planned, measured and failed, and their state."""
    rows = ws.store.rows(
        """
        SELECT c.id, c.device, c.recipe, c.ops, c.plan, c.status, c.created_at, c.updated_at,
               SUM(CASE WHEN m.status = 'ok' THEN 1 ELSE 0 END) AS measured,
               SUM(CASE WHEN m.status IS NOT NULL AND m.status != 'ok' THEN 1 ELSE 0 END) AS failed
        FROM campaigns c LEFT JOIN measurements m ON m.campaign_id = c.id
        GROUP BY c.id ORDER BY c.id DESC LIMIT :limit
        """,
        {"limit": limit},
    )
    out = []
    for r in rows:
        planned = len(json.loads(r["plan"]))
        out.append({
            "id": r["id"], "device": r["device"], "recipe": r["recipe"], "ops": json.loads(r["ops"]), "status": r["status"],
            "planned": planned, "measured": int(r["measured"] or 0), "failed": int(r["failed"] or 0),
            "created_at": r["created_at"], "updated_at": r["updated_at"],
        })  # fmt: skip
    return out


def latest_validation(ws: Workspace, device: str) -> dict[str, Any] | None:
    """``device``'s newest validation run (``edgelat validate``): its folder, table and predicted-vs-measured plot."""
    root = ws.device_dir("validation", device)
    runs = sorted((p.parent for p in root.glob("*/predicted_vs_measured.png")), key=lambda p: p.stat().st_mtime, reverse=True)
    if not runs:
        return None
    run: Path = runs[0]
    try:
        report = json.loads((run / "report.json").read_text())
    except (OSError, ValueError):
        report = {}
    return {"run": run.name, "plot": str(run / "predicted_vs_measured.png"), "networks": len(report.get("rows", [])),
            "metrics": report.get("metrics"), "memory_metrics": report.get("memory_metrics")}  # fmt: skip
