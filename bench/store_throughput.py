"""Rows per second the store writes and reads, on each engine, side by side in one run.

    python bench/store_throughput.py [--rows 2000] [--writers 2]

Engines: the workspace's own SQLite file (WAL, synchronous=NORMAL, as edgelat opens it), and PostgreSQL 15 (a
private server on a loopback port started here by scripts/postgres_server.py, default durability: fsync on). For each:

- ``campaign``: measurement rows written the way a campaign writes them (edgelat.profiler.campaign._store:
  one upsert per kernel, each its own transaction, committed as it arrives);
- ``writers``: the same from ``--writers`` processes at once, each its own campaign on its own device (rows/s
  summed over the processes, wall time from the first start to the last end);
- ``copy``: ``data push`` of one device's rows into an empty store (one transaction);
- ``read``: the training query of one device (edgelat.predictors.train._training_data).

Writes bench/out/store_throughput.{json,csv}. Each figure is the median of ``--repeats`` runs.
"""

from __future__ import annotations

import argparse
import multiprocessing
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).parent.parent / "scripts"))

import postgres_server  # noqa: E402
from _workspace import write_outputs  # noqa: E402

from edgelat.ops import config_id  # noqa: E402
from edgelat.profiler.campaign import _store  # noqa: E402
from edgelat.profiler.inventory import add_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.store import open_store  # noqa: E402
from edgelat.store.sync import copy_device  # noqa: E402
from edgelat.workspace import Workspace, open_workspace  # noqa: E402

TARGET = {"kind": "llvm", "mcpu": "generic"}


def _campaign(ws: Workspace, device: str, rows: int) -> tuple[int, list[str]]:
    configs = [{"m": 1, "k": 8 + i, "n": 16, "epilogue": []} for i in range(rows)]
    ids = [config_id("dense", c) for c in configs]
    import json

    ws.store.insert_new("kernel_configs", [{"config_id": i, "op": "dense", "params": json.dumps(c)} for i, c in zip(ids, configs, strict=True)], ["config_id"])
    row = ws.store.insert("campaigns", {"uid": uuid.uuid4().hex, "device": device, "recipe": "default", "ops": '["dense"]',
                                        "plan": json.dumps(ids), "target": json.dumps(TARGET), "threads": 1, "tvm_version": "x", "seed": 0})  # fmt: skip
    return int(row["id"]), ids


def _write(root: str, url: str | None, device: str, rows: int) -> float:
    """Write ``rows`` measurement rows as a campaign does; returns the seconds the writes took."""
    recipe = get_recipe("default")
    built = SimpleNamespace(build_s=0.5, tune_s=None)
    values = {"status": "ok", "median_ms": 1.0, "mean_ms": 1.0, "std_ms": 0.01, "min_ms": 0.9, "max_ms": 1.1, "repeats": 7, "number": 10, "cv": 0.01, "unstable": 0, "attempts": 1}
    with open_workspace(root, url) as ws:
        campaign_id, ids = _campaign(ws, device, rows)
        start = time.perf_counter()
        for cid in ids:
            _store(ws, campaign_id, device, cid, "dense", recipe, 1, TARGET, "0.2.0", built, values)  # type: ignore[arg-type]
        return time.perf_counter() - start


def _writer(args: tuple[str, str | None, str, int]) -> tuple[float, float, float]:
    start = time.time()
    seconds = _write(*args)
    return start, time.time(), seconds


def run(engine: str, url_for: Any, rows: int, writers: int) -> dict[str, float]:
    with tempfile.TemporaryDirectory(prefix=f"edgelat-store-{engine}-") as tmp:
        return _run(Path(tmp), url_for, rows, writers)


def _run(tmp: Path, url_for: Any, rows: int, writers: int) -> dict[str, float]:
    url = url_for("a")
    with open_workspace(tmp / "a", url) as ws:
        add_device(ws, "dev0", host="h0", preset="rpi4")
        for w in range(writers):
            add_device(ws, f"w{w}", host=f"h{w}", preset="rpi4")
    campaign_s = _write(str(tmp / "a"), url, "dev0", rows)
    ctx = multiprocessing.get_context("spawn")
    with ctx.Pool(writers) as pool:
        spans = pool.map(_writer, [(str(tmp / "a"), url, f"w{w}", rows) for w in range(writers)])
    wall = max(s[1] for s in spans) - min(s[0] for s in spans)
    with open_workspace(tmp / "a", url) as ws:
        from edgelat.predictors.train import _training_data

        start = time.perf_counter()
        frame, _, _ = _training_data(ws, "dev0", "default", TARGET)
        read_s = time.perf_counter() - start
        assert len(frame) == rows
        dst = open_store(url_for("b"), sqlite_path=tmp / "b.db")
        start = time.perf_counter()
        report = copy_device(ws.store, dst, "dev0")
        copy_s = time.perf_counter() - start
        assert report.added["measurements"] == rows
        dst.close()
    return {"campaign": rows / campaign_s, "writers": writers * rows / wall, "copy": rows / copy_s, "read": rows / read_s}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--writers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    server = postgres_server.start(Path(tempfile.mkdtemp(prefix="edgelat-pg-", dir="/tmp")), durable=True)  # (fsync on, as a team's server)
    try:
        engines = {
            "sqlite": lambda name: None,
            "postgresql": lambda name: server.create_database(f"b_{uuid.uuid4().hex[:10]}_{name}"),
        }
        results: dict[str, list[dict[str, float]]] = {e: [] for e in engines}
        for _ in range(args.repeats):  # engines alternate, so drift on this machine falls on both
            for engine, url_for in engines.items():
                results[engine].append(run(engine, url_for, args.rows, args.writers))
    finally:
        server.stop()
    rows = []
    for engine, runs in results.items():
        row: dict[str, Any] = {"engine": engine}
        for key in ("campaign", "writers", "copy", "read"):
            row[f"{key}_rows_per_s"] = round(statistics.median(r[key] for r in runs))
        rows.append(row)
        print(row)
    write_outputs("store_throughput", {"rows": args.rows, "writers": args.writers, "repeats": args.repeats}, rows)


if __name__ == "__main__":
    main()
