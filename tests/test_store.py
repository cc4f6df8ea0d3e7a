"""The store: transactions land whole or not at all, and queries scale past SQLite's variable limit."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from edgelat import workspace
from edgelat.errors import StoreError
from edgelat.ops import config_id
from edgelat.profiler.campaign import stored_configs
from edgelat.workspace import connect, open_workspace, transaction


def test_a_failed_transaction_is_rolled_back(tmp_path: Path) -> None:
    with open_workspace(tmp_path / "ws") as ws:
        with pytest.raises(RuntimeError), transaction(ws.db):
            ws.db.execute("INSERT INTO kernel_configs (config_id, op, params) VALUES ('a', 'dense', '{}')")
            raise RuntimeError("crash between two writes")
        assert not ws.db.in_transaction
        assert ws.db.execute("SELECT COUNT(*) FROM kernel_configs").fetchone()[0] == 0
        with transaction(ws.db):  # and the connection is usable afterwards
            ws.db.execute("INSERT INTO kernel_configs (config_id, op, params) VALUES ('b', 'dense', '{}')")
        assert ws.db.execute("SELECT COUNT(*) FROM kernel_configs").fetchone()[0] == 1


def test_a_failed_migration_changes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "edgelat.db"
    connect(path).close()
    version = len(workspace.MIGRATIONS)
    broken = "CREATE TABLE half_done (x INTEGER); INSERT INTO no_such_table VALUES (1);"
    monkeypatch.setattr(workspace, "MIGRATIONS", [*workspace.MIGRATIONS, broken])
    with pytest.raises(StoreError, match="no_such_table") as failed:
        connect(path)
    assert failed.value.__traceback__ is not None  # the failed connection is still alive here...
    db = sqlite3.connect(path, timeout=0.5)
    db.execute("CREATE TABLE written_after (x INTEGER)")  # ...and holds no write lock
    assert db.execute("PRAGMA user_version").fetchone()[0] == version
    assert db.execute("SELECT COUNT(*) FROM sqlite_master WHERE name = 'half_done'").fetchone()[0] == 0


def test_configs_are_read_back_past_the_variable_limit(tmp_path: Path) -> None:
    plan = [("dense", {"batch": 1, "in_features": i, "out_features": 8}) for i in range(1, 40_001)]
    ids = [config_id(op, c) for op, c in plan]
    with open_workspace(tmp_path / "ws") as ws:
        with transaction(ws.db):
            ws.db.executemany("INSERT INTO kernel_configs (config_id, op, params) VALUES (?, ?, ?)", [(i, op, json.dumps(c)) for i, (op, c) in zip(ids, plan, strict=True)])
        got = stored_configs(ws, ids[::2])
    assert len(got) == 20_000 and got[ids[10]] == plan[10]
