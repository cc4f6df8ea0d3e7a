"""The store, on both engines (SQLite, a real PostgreSQL): transactions land whole or not at all, migrations
too, queries scale past SQLite's variable limit, old workspaces upgrade in place, a newer store is refused."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from edgelat import store as store_module
from edgelat.errors import StoreError
from edgelat.ops import config_id
from edgelat.profiler.campaign import stored_configs
from edgelat.store import head_revision, open_store
from edgelat.workspace import Workspace, measured_by, open_workspace

DATA = Path(__file__).parent / "data"


def _revision(ws: Workspace) -> str:
    return str(ws.store.scalar("SELECT version_num FROM alembic_version"))


def test_a_failed_transaction_is_rolled_back(any_ws: Workspace) -> None:
    ws = any_ws
    with pytest.raises(RuntimeError), ws.store.transaction():
        ws.store.execute("INSERT INTO kernel_configs (config_id, op, params) VALUES ('a', 'dense', '{}')")
        raise RuntimeError("crash between two writes")
    assert ws.store.scalar("SELECT COUNT(*) FROM kernel_configs") == 0
    with ws.store.transaction():  # and the store is usable afterwards
        ws.store.execute("INSERT INTO kernel_configs (config_id, op, params) VALUES ('b', 'dense', '{}')")
    assert ws.store.scalar("SELECT COUNT(*) FROM kernel_configs") == 1


def test_a_failed_migration_changes_nothing(tmp_path: Path, store_url: str | None, monkeypatch: pytest.MonkeyPatch) -> None:
    """A revision that fails half-way: the store stays at the revision it had, nothing of the half-done one
    is left, and (SQLite) no write lock is held."""
    with open_workspace(tmp_path / "ws", store_url) as ws:
        head = _revision(ws)
    migrations = shutil.copytree(store_module.MIGRATIONS_DIR, tmp_path / "migrations")
    (migrations / "versions" / "9999_broken.py").write_text(
        f'revision = "9999"\ndown_revision = "{head}"\n\nfrom alembic import op\n\n\ndef upgrade() -> None:\n'
        '    op.execute("CREATE TABLE half_done (x INTEGER)")\n    op.execute("INSERT INTO no_such_table VALUES (1)")\n'
    )
    monkeypatch.setattr(store_module, "MIGRATIONS_DIR", migrations)
    with pytest.raises(StoreError, match="no_such_table"):
        open_workspace(tmp_path / "ws", store_url)
    monkeypatch.undo()
    with open_workspace(tmp_path / "ws", store_url) as ws:
        assert _revision(ws) == head
        ws.store.execute("CREATE TABLE written_after (x INTEGER)")  # no lock left behind
        tables = ws.store.engine.dialect.get_table_names(ws.store.engine.connect())
        assert "half_done" not in tables and "written_after" in tables


def test_configs_are_read_back_past_the_variable_limit(any_ws: Workspace) -> None:
    plan = [("dense", {"batch": 1, "in_features": i, "out_features": 8}) for i in range(1, 40_001)]
    ids = [config_id(op, c) for op, c in plan]
    rows = [{"config_id": i, "op": op, "params": json.dumps(c)} for i, (op, c) in zip(ids, plan, strict=True)]
    assert any_ws.store.insert_new("kernel_configs", rows, ["config_id"]) == 40_000
    assert any_ws.store.insert_new("kernel_configs", rows[:10], ["config_id"]) == 0  # already there: left alone
    got = stored_configs(any_ws, ids[::2])
    assert len(got) == 20_000 and got[ids[10]] == plan[10]


def _sqlite_rows(path: Path, table: str) -> list[dict[str, Any]]:
    with sqlite3.connect(path) as db:
        db.row_factory = sqlite3.Row
        return [dict(r) for r in db.execute(f"SELECT * FROM {table} ORDER BY 1")]


def test_a_workspace_of_todays_schema_upgrades_in_place(tmp_path: Path) -> None:
    """tests/data/workspace-schema8.db was made by edgelat before Alembic (a real profile and measure of `local`,
    an SSH and an adapted device; schema version 8 in SQLite's user_version): it opens stamped and upgraded, every
    row as it was, the new columns filled; an edgelat from before refuses the upgraded file; opening again changes nothing."""
    path = tmp_path / "ws" / "edgelat.db"
    path.parent.mkdir()
    shutil.copy(DATA / "workspace-schema8.db", path)
    tables = ("devices", "probes", "campaigns", "kernel_configs", "measurements", "network_measurements", "sentinels")
    before = {t: _sqlite_rows(path, t) for t in tables}
    assert before["measurements"] and before["network_measurements"] and len(before["devices"]) == 3
    with open_workspace(tmp_path / "ws") as ws:
        assert _revision(ws) == head_revision()
        for table in tables:
            after = [dict(r) for r in ws.store.rows(f"SELECT * FROM {table} ORDER BY 1")]
            added = ("uid", "caches") if table == "campaigns" else ("uid",)
            assert [{k: v for k, v in r.items() if k not in added} for r in after] == before[table], table
        # (campaigns from before timed their kernels their recipe's way)
        assert [r["caches"] for r in ws.store.rows("SELECT caches FROM campaigns")] == [None] * len(before["campaigns"])
        uids = [r["uid"] for r in ws.store.rows("SELECT uid FROM campaigns UNION ALL SELECT uid FROM network_measurements")]
        assert len(set(uids)) == len(uids) == 2 and all(uids)
    with sqlite3.connect(path) as db:  # edgelat before Alembic refused a user_version above the migrations it knew (8)
        assert db.execute("PRAGMA user_version").fetchone()[0] > 8
    with open_workspace(tmp_path / "ws") as ws:
        assert [dict(r) for r in ws.store.rows("SELECT * FROM campaigns")][0]["uid"] == uids[0]


def test_ssh_columns_move_into_the_transport_settings_and_old_rows_keep_no_provenance(tmp_path: Path) -> None:
    """tests/data/workspace-schema3.db (SSH settings as columns; measurements before provenance) upgrades through
    every revision: each device's transport and its settings as JSON, nothing cascaded away, and rows measured
    before say nothing of who measured them (NULL, not whoever upgrades)."""
    from edgelat.profiler.inventory import get_device, list_devices

    (tmp_path / "ws").mkdir()
    shutil.copy(DATA / "workspace-schema3.db", tmp_path / "ws" / "edgelat.db")
    with open_workspace(tmp_path / "ws") as ws:
        pi = get_device(ws, "pi")
        assert (pi.transport, pi.settings) == ("ssh", {"host": "10.0.0.7", "port": 2222, "user": "pi", "key_file": "/home/me/.ssh/id_ed25519"})
        assert pi.address() == "pi@10.0.0.7:2222"
        assert {d.name: d.transport for d in list_devices(ws)} == {"local": "local", "phone": "none", "pi": "ssh"}
        columns = {c["name"] for c in ws.store.engine.dialect.get_columns(ws.store.engine.connect(), "devices")}
        assert not columns & {"host", "port", "user", "key_file", "jump"}
        assert ws.store.scalar("SELECT COUNT(*) FROM probes WHERE device = 'pi'") == 1
        row = ws.store.first("SELECT measured_by, edgelat_version, caches, member FROM measurements")
        assert row is not None and dict(row) == {"measured_by": None, "edgelat_version": None, "caches": "warm", "member": "pi"}
    by = measured_by()
    assert by.count("@") == 1 and all(by.split("@"))


def test_a_store_newer_than_this_edgelat_is_refused(tmp_path: Path, store_url: str | None) -> None:
    with open_workspace(tmp_path / "ws", store_url) as ws:
        ws.store.execute("UPDATE alembic_version SET version_num = 'ffff'")
    with pytest.raises(StoreError, match="newer than this edgelat knows: upgrade edgelat"):
        open_workspace(tmp_path / "ws", store_url)


def test_timestamps_read_the_same_on_both_engines(any_ws: Workspace) -> None:
    """Defaults written by the database and times written by edgelat are one format (ISO 8601, UTC, ms)."""
    import re

    from edgelat.store import utc_now

    row = any_ws.store.insert("devices", {"name": "x", "preset": "rpi4", "transport": "none"})
    for text in (row["created_at"], utc_now()):
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", text), text


def test_a_team_store_keeps_the_workspace_files_per_store_and_host(tmp_path: Path, postgres: Any) -> None:
    import socket

    url = postgres.create_database("files_per_host")
    with open_workspace(tmp_path / "ws") as own, open_workspace(tmp_path / "ws", url) as team:
        assert own.models_dir == own.root / "models"
        assert team.files.parent.name == "files_per_host" and team.files.name == socket.gethostname()
        assert team.root in team.files.parents
        for folder in ("cache_dir", "models_dir"):
            assert getattr(team, folder) != getattr(own, folder)
        assert team.tuning_dir("pi") != own.tuning_dir("pi") and team.known_hosts == own.known_hosts


def test_open_store_names_what_is_wrong_in_one_line(postgres: Any) -> None:
    from edgelat.errors import StoreUnreachableError, UsageError

    good = postgres.url("postgres")
    with pytest.raises(StoreUnreachableError, match="password authentication failed") as wrong:
        open_store(good.replace(postgres.password, "not-the-password"))
    assert "not-the-password" not in str(wrong.value) and postgres.password not in str(wrong.value)
    with pytest.raises(StoreUnreachableError, match='database "nowhere" does not exist'):
        open_store(postgres.url("nowhere"))
    with pytest.raises(UsageError, match="not a store edgelat knows"):
        open_store("mysql://u@h/db")
    with pytest.raises(UsageError, match="name the database"):
        open_store(f"postgresql://edgelat@127.0.0.1:{postgres.port}")


def test_processes_opening_a_new_store_at_once_upgrade_it_once(tmp_path: Path, store_url: str | None) -> None:
    """Four processes opening an empty store at the same moment: one upgrades it (PostgreSQL: an advisory lock;
    SQLite: the write lock), the others wait and find it done."""
    import subprocess
    import sys

    go = tmp_path / "go"  # every process imports, says so, then waits for this file and opens the store at once
    code = (
        "import sys, time; from pathlib import Path; from edgelat.store import open_store; print('ready', flush=True)\n"
        "while not Path(sys.argv[3]).exists(): time.sleep(0.005)\n"
        "open_store(sys.argv[1] or None, sqlite_path=Path(sys.argv[2])).close()"
    )
    argv = [sys.executable, "-c", code, store_url or "", str(tmp_path / "edgelat.db"), str(go)]
    runs = [subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(4)]
    for r in runs:
        assert r.stdout is not None and r.stdout.readline().strip() == "ready"
    go.touch()
    errors = [r.communicate(timeout=120)[1] for r in runs]
    assert [r.returncode for r in runs] == [0] * 4, errors
    store = open_store(store_url, sqlite_path=tmp_path / "edgelat.db")
    assert [r["version_num"] for r in store.rows("SELECT version_num FROM alembic_version")] == [head_revision()]
    store.close()
