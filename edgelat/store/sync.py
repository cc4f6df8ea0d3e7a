"""Moving a device's data between two stores (``edgelat data push/pull``): profile offline, share later.

What is copied, and what says a row is already there (so copying again adds only what is new):

- the device (by name; copied under another with ``as_name``), refused if the other store's has another preset;
  a copy of a ``local`` device has no connection (it was the source host's machine);
- kernel configurations, by ``config_id`` (a hash of the op and its parameters);
- campaigns, by ``uid`` (given when a campaign is created, kept by every copy); a copy's status and
  ``updated_at`` follow the source's, its lease is never copied;
- kernel measurements, by (campaign, ``config_id``); sentinels, by (campaign, member, phase, ``config_id``);
- network measurements, by ``uid``; probes, by (device, ``taken_at``).

Rows keep who measured them, when and with which versions. One transaction on the destination: a copy
that fails leaves it as it was.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from edgelat.errors import UsageError
from edgelat.store import Store

__all__ = ["CopyReport", "copy_device"]

_BATCH = 500  # rows per IN list (SQLite caps a statement's parameters)


@dataclass
class CopyReport:
    """Rows added to the destination, per table (0 everywhere: it already had everything)."""

    device: str
    added: dict[str, int] = field(default_factory=dict)
    already: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.added.values())


def _in(store: Store, sql: str, values: list[Any], params: Mapping[str, Any] | None = None) -> list[Any]:
    """Rows of ``sql`` (with ``:values`` in it) for every batch of ``values``."""
    out: list[Any] = []
    for start in range(0, len(values), _BATCH):
        stmt = sa.text(sql).bindparams(sa.bindparam("values", expanding=True))
        out += store.rows(stmt, {**(params or {}), "values": values[start : start + _BATCH]})
    return out


def _strip(row: Any, *drop: str) -> dict[str, Any]:
    return {k: v for k, v in row.items() if k not in drop}


def copy_device(src: Store, dst: Store, device: str, as_name: str | None = None) -> CopyReport:
    """Copy everything ``src`` holds of ``device`` into ``dst`` (as ``as_name``) that ``dst`` does not hold yet."""
    name = as_name or device
    report = CopyReport(name)
    source = src.first("SELECT * FROM devices WHERE name = :name", {"name": device})
    if source is None:
        raise UsageError(f"{src.display} has no device named {device!r}")
    if source["transport"] == "group":
        raise UsageError(f"{device} is a device group: copy its members (their rows of the group's campaigns go with the group later)")

    def rename(value: str | None) -> str | None:
        return name if value == device else value

    campaigns = src.rows("SELECT * FROM campaigns WHERE device = :d ORDER BY id", {"d": device})
    measurements = src.rows("SELECT * FROM measurements WHERE device = :d ORDER BY id", {"d": device})
    config_ids = sorted({m["config_id"] for m in measurements} | {c for row in campaigns for c in json.loads(row["plan"])})
    configs = _in(src, "SELECT * FROM kernel_configs WHERE config_id IN :values", config_ids)
    sentinels = _in(src, "SELECT * FROM sentinels WHERE campaign_id IN :values", [c["id"] for c in campaigns])
    networks = src.rows("SELECT * FROM network_measurements WHERE device = :d ORDER BY id", {"d": device})
    probes = src.rows("SELECT * FROM probes WHERE device = :d ORDER BY id", {"d": device})

    with dst.transaction():
        there = dst.lock_row("devices", {"name": name})
        if there is None:
            copied = {**_strip(source, "created_at"), "name": name}
            if source["transport"] == "local":  # "this machine" of the source's host is no machine here: no connection
                copied["transport"] = "none"
            dst.execute(dst.table("devices").insert(), [copied])
            report.added["devices"] = 1
        elif there["preset"] != source["preset"]:
            raise UsageError(f"{dst.display} has a device {name!r} of preset {there['preset']}, not {source['preset']}: copy it --as another name")
        report.added["kernel_configs"] = dst.insert_new("kernel_configs", [dict(r) for r in configs], ["config_id"])

        ids: dict[int, int] = {}  # source campaign id -> destination's
        known = {r["uid"]: r["id"] for r in _in(dst, "SELECT id, uid FROM campaigns WHERE uid IN :values", [c["uid"] for c in campaigns])}
        report.added["campaigns"] = 0
        for c in campaigns:
            if c["uid"] in known:
                dst.execute("UPDATE campaigns SET status = :status, updated_at = :updated WHERE id = :id",
                            {"status": c["status"], "updated": c["updated_at"], "id": known[c["uid"]]})  # fmt: skip
                ids[c["id"]] = known[c["uid"]]
            else:
                row = dst.insert("campaigns", {**_strip(c, "id", "holder", "lease_until"), "device": name})
                ids[c["id"]] = int(row["id"])
                report.added["campaigns"] += 1
        report.added["measurements"] = dst.insert_new(
            "measurements",
            [{**_strip(m, "id"), "campaign_id": ids[m["campaign_id"]], "device": name, "member": rename(m["member"])} for m in measurements],
            ["campaign_id", "config_id"],
        )
        report.added["sentinels"] = dst.insert_new(
            "sentinels",
            [{**_strip(s, "id"), "campaign_id": ids[s["campaign_id"]], "member": rename(s["member"])} for s in sentinels],
            ["campaign_id", "member", "phase", "config_id"],
        )
        report.added["network_measurements"] = dst.insert_new(
            "network_measurements", [{**_strip(n, "id"), "device": name} for n in networks], ["uid"]
        )
        taken = {r["taken_at"] for r in dst.rows("SELECT taken_at FROM probes WHERE device = :d", {"d": name})}
        new_probes = [{**_strip(p, "id"), "device": name} for p in probes if p["taken_at"] not in taken]
        if new_probes:
            dst.execute(dst.table("probes").insert(), new_probes)
        report.added["probes"] = len(new_probes)
    counts = {"campaigns": campaigns, "measurements": measurements, "network_measurements": networks, "probes": probes}
    report.already = {table: len(rows) - report.added.get(table, 0) for table, rows in counts.items()}
    return report
