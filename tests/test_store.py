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


def test_ssh_columns_move_into_the_transport_settings(tmp_path: Path) -> None:
    """A workspace of schema 3 (SSH settings as columns) opens with each device's transport and its settings as JSON."""
    from edgelat.profiler.inventory import get_device, list_devices

    path = tmp_path / "ws" / "edgelat.db"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    for number in range(3):
        old.executescript("BEGIN;" + workspace.MIGRATIONS[number] + f"PRAGMA user_version={number + 1}; COMMIT;")
    old.executemany(
        "INSERT INTO devices (name, preset, host, port, user, key_file, jump, python) VALUES (?,?,?,?,?,?,?,?)",
        [("local", "local", None, 22, None, None, None, "python3"), ("pi", "rpi4", "10.0.0.7", 2222, "pi", "/k", "gw", "python3"),
         ("phone", "adapted", None, 22, None, None, None, "python3")],  # fmt: skip
    )
    old.execute("INSERT INTO probes (device, data) VALUES ('pi', '{}')")
    old.commit()
    old.close()
    with open_workspace(tmp_path / "ws") as ws:
        pi = get_device(ws, "pi")
        assert (pi.transport, pi.settings) == ("ssh", {"host": "10.0.0.7", "port": 2222, "user": "pi", "key_file": "/k", "jump": "gw"})
        assert pi.address() == "pi@10.0.0.7:2222 via gw"
        assert {d.name: d.transport for d in list_devices(ws)} == {"local": "local", "phone": "none", "pi": "ssh"}
        columns = {r[1] for r in ws.db.execute("PRAGMA table_info(devices)")}
        assert not columns & {"host", "port", "user", "key_file", "jump"}
        assert ws.db.execute("SELECT COUNT(*) FROM probes WHERE device = 'pi'").fetchone()[0] == 1  # nothing cascaded away


def test_rows_of_an_older_workspace_keep_no_provenance_and_new_rows_say_who_measured_them(tmp_path: Path) -> None:
    """Schema 6 -> 7: the measurement tables gain who measured a row (user@host) and with which edgelat; rows measured
    before say nothing (NULL), they are not attributed to whoever upgrades."""
    import edgelat

    path = tmp_path / "ws" / "edgelat.db"
    path.parent.mkdir()
    old = sqlite3.connect(path)
    for number in range(6):
        old.executescript("BEGIN;" + workspace.MIGRATIONS[number] + f"PRAGMA user_version={number + 1}; COMMIT;")
    old.execute("INSERT INTO devices (name, preset) VALUES ('local', 'local')")
    old.execute("INSERT INTO campaigns (device, recipe, ops, plan, target, threads, tvm_version, seed) VALUES ('local', 'default', '[]', '[]', '{}', 1, 'x', 0)")
    old.execute("INSERT INTO kernel_configs (config_id, op, params) VALUES ('c', 'dense', '{}')")
    old.execute("INSERT INTO measurements (campaign_id, device, config_id, op, recipe, status, median_ms) VALUES (1, 'local', 'c', 'dense', 'default', 'ok', 1.0)")
    old.commit()
    old.close()
    with open_workspace(tmp_path / "ws") as ws:
        row = ws.db.execute("SELECT measured_by, edgelat_version FROM measurements").fetchone()
        assert tuple(row) == (None, None)
        columns = {r[1] for r in ws.db.execute("PRAGMA table_info(network_measurements)")}
        assert {"measured_by", "edgelat_version"} <= columns
    by = workspace.measured_by()
    assert by.count("@") == 1 and all(by.split("@")) and edgelat.__version__

