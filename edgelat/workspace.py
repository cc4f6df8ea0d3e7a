"""The workspace: one directory that holds all of edgelat's state.

Resolution order: an explicit path (``--workspace DIR``), else ``$EDGELAT_HOME``, else
``$XDG_DATA_HOME/edgelat`` (``~/.local/share/edgelat``). Inside it:

- ``edgelat.db``: the store, SQLite in WAL mode (devices, probes, campaigns, kernel
  configurations, measurements, models). Every write is committed as it happens.
- ``known_hosts``: SSH host keys this workspace trusts.
- ``cache/``: content-addressed build cache; ``models/``: trained predictors.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from edgelat.errors import StoreError, UsageError

__all__ = ["Workspace", "default_workspace_dir", "measured_by", "open_workspace"]

# Each entry migrates the schema one version up; never edit an entry, append a new one.
MIGRATIONS: list[str] = [
    # 1: inventory
    """
    CREATE TABLE devices (
        name TEXT PRIMARY KEY,
        preset TEXT NOT NULL,
        host TEXT,
        port INTEGER NOT NULL DEFAULT 22,
        user TEXT,
        key_file TEXT,
        jump TEXT,
        python TEXT NOT NULL DEFAULT 'python3',
        threads INTEGER,
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE TABLE probes (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
        taken_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        agent_version TEXT,
        data TEXT NOT NULL
    );
    """,
    # 2: kernel profiling
    """
    CREATE TABLE campaigns (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
        recipe TEXT NOT NULL,
        ops TEXT NOT NULL,
        plan TEXT NOT NULL,
        target TEXT NOT NULL,
        threads INTEGER NOT NULL,
        tvm_version TEXT NOT NULL,
        seed INTEGER NOT NULL,
        status TEXT NOT NULL DEFAULT 'running',
        created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        updated_at TEXT
    );
    CREATE TABLE kernel_configs (
        config_id TEXT PRIMARY KEY,
        op TEXT NOT NULL,
        params TEXT NOT NULL,
        source TEXT
    );
    CREATE TABLE measurements (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        device TEXT NOT NULL,
        config_id TEXT NOT NULL REFERENCES kernel_configs(config_id),
        op TEXT NOT NULL,
        recipe TEXT NOT NULL,
        status TEXT NOT NULL,
        error TEXT,
        median_ms REAL, mean_ms REAL, std_ms REAL, min_ms REAL, max_ms REAL,
        repeats INTEGER, number INTEGER, cv REAL,
        unstable INTEGER NOT NULL DEFAULT 0,
        attempts INTEGER NOT NULL DEFAULT 1,
        threads INTEGER,
        target TEXT, tvm_version TEXT, agent_version TEXT,
        build_s REAL, tune_s REAL,
        state_before TEXT, state_after TEXT,
        measured_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        UNIQUE (campaign_id, config_id)
    );
    CREATE INDEX measurements_device_op ON measurements(device, op, recipe);
    """,
    # 3: whole networks measured end to end
    """
    CREATE TABLE network_measurements (
        id INTEGER PRIMARY KEY,
        device TEXT NOT NULL REFERENCES devices(name) ON DELETE CASCADE,
        recipe TEXT NOT NULL,
        name TEXT NOT NULL,
        network_hash TEXT NOT NULL,
        threads INTEGER NOT NULL,
        median_ms REAL NOT NULL,
        data TEXT NOT NULL,
        measured_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))
    );
    CREATE INDEX network_measurements_device ON network_measurements(device, recipe, network_hash);
    """,
    # 4: a device names its transport kind and keeps that transport's settings as JSON (SSH's were columns)
    """
    ALTER TABLE devices ADD COLUMN transport TEXT NOT NULL DEFAULT 'local';
    ALTER TABLE devices ADD COLUMN settings TEXT NOT NULL DEFAULT '{}';
    UPDATE devices SET transport = CASE WHEN preset = 'adapted' THEN 'none' WHEN host IS NULL THEN 'local' ELSE 'ssh' END;
    UPDATE devices SET settings = json_patch('{}', json_object('host', host, 'port', port, 'user', user, 'key_file', key_file, 'jump', jump))
        WHERE transport = 'ssh';
    ALTER TABLE devices DROP COLUMN host;
    ALTER TABLE devices DROP COLUMN port;
    ALTER TABLE devices DROP COLUMN user;
    ALTER TABLE devices DROP COLUMN key_file;
    ALTER TABLE devices DROP COLUMN jump;
    """,
    # 5: how a kernel was timed ("warm" or "flushed" caches: edgelat.profiler.recipes.Recipe.caches)
    """
    ALTER TABLE measurements ADD COLUMN caches TEXT NOT NULL DEFAULT 'warm';
    """,
    # 6: fleets (edgelat.profiler.fleet): the member of a device group that measured a row, why its rows are
    # flagged (sentinels off the group's), and the sentinel kernels every member times before and after
    """
    ALTER TABLE measurements ADD COLUMN member TEXT;
    ALTER TABLE measurements ADD COLUMN flagged TEXT;
    UPDATE measurements SET member = device;
    CREATE TABLE sentinels (
        id INTEGER PRIMARY KEY,
        campaign_id INTEGER NOT NULL REFERENCES campaigns(id) ON DELETE CASCADE,
        member TEXT NOT NULL,
        phase TEXT NOT NULL,
        config_id TEXT NOT NULL,
        median_ms REAL,
        measured_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ', 'now')),
        UNIQUE (campaign_id, member, phase, config_id)
    );
    """,
    # 7: who measured each row (user@host) and with which edgelat, beside the TVM and agent versions and the time
    # rows already keep: measurements that travel between workspaces and people keep where they came from
    """
    ALTER TABLE measurements ADD COLUMN measured_by TEXT;
    ALTER TABLE measurements ADD COLUMN edgelat_version TEXT;
    ALTER TABLE network_measurements ADD COLUMN measured_by TEXT;
    ALTER TABLE network_measurements ADD COLUMN edgelat_version TEXT;
    """,
    # 8: the process running a campaign and until when its lease holds (edgelat.profiler.lease)
    """
    ALTER TABLE campaigns ADD COLUMN holder TEXT;
    ALTER TABLE campaigns ADD COLUMN lease_until REAL;
    """,
]


def measured_by() -> str:
    """``user@host`` of this process, as measurement rows record it (the uid where the user has no name)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def default_workspace_dir() -> Path:
    env = os.environ.get("EDGELAT_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edgelat"


@dataclass
class Workspace:
    """A workspace directory and its store connection."""

    root: Path
    db: sqlite3.Connection

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def cache_dir(self) -> Path:
        return self.root / "cache"

    @property
    def models_dir(self) -> Path:
        return self.root / "models"

    def block_kernels_file(self, space: str, version: str) -> Path:
        """The kernels of a search space's blocks (no device's, no model's: what any device's model prices)."""
        return self.root / "blocks" / f"{space}-{version}.json"

    # Everything a workspace keeps of one device lives in a folder named after it under each of these,
    # so `device remove` can remove all of it (a new device of the same name starts clean).
    DEVICE_FOLDERS = ("models", "oracle", "tuning", "searches", "pruned", "validation", "exports")

    def device_dir(self, folder: str, device: str) -> Path:
        """``device``'s folder under ``folder`` (one of :attr:`DEVICE_FOLDERS`)."""
        assert folder in self.DEVICE_FOLDERS, folder
        return self.root / folder / device

    def model_dir(self, device: str, recipe: str) -> Path:
        """The kernel models of ``device`` trained on its ``recipe`` measurements."""
        return self.device_dir("models", device) / recipe

    def adapter_file(self, device: str) -> Path:
        """The adapter of a device known only from end-to-end measurements (``edgelat adapt``)."""
        return self.device_dir("models", device) / "adapted.json"

    def tuning_dir(self, device: str) -> Path:
        """MetaSchedule's tuning databases for ``device``."""
        return self.device_dir("tuning", device)

    def oracle_dir(self, device: str, recipe: str) -> Path:
        """Block prices of search spaces, cached per trained model."""
        return self.device_dir("oracle", device) / recipe

    def run_dir(self, folder: str, device: str, name: str) -> Path:
        """Where a search, pruning or validation run of ``device`` writes its outputs by default."""
        return self.device_dir(folder, device) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"

    def close(self) -> None:
        self.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def connect(path: Path) -> sqlite3.Connection:
    """Open the store with the settings every connection must have, migrated to the latest schema."""
    try:
        db = sqlite3.connect(path, timeout=30.0, isolation_level=None)  # autocommit; explicit BEGIN where needed
        db.row_factory = sqlite3.Row
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
        version = db.execute("PRAGMA user_version").fetchone()[0]
        if version > len(MIGRATIONS):
            raise StoreError(f"{path} has schema version {version}, newer than this edgelat knows ({len(MIGRATIONS)}); upgrade edgelat")
        for number in range(version, len(MIGRATIONS)):
            try:
                db.executescript("BEGIN;" + MIGRATIONS[number] + f"PRAGMA user_version={number + 1}; COMMIT;")
            except sqlite3.DatabaseError:
                if db.in_transaction:  # a failed statement leaves the script's transaction open
                    db.execute("ROLLBACK")
                raise
    except sqlite3.DatabaseError as exc:
        raise StoreError(f"cannot open the store {path}: {exc}") from exc
    return db


@contextmanager
def transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """Statements that land together or not at all: COMMIT on success, ROLLBACK on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def open_workspace(path: str | os.PathLike[str] | None = None) -> Workspace:
    """Open (creating if needed) the workspace at ``path`` or the default location.

    Example:
        >>> ws = open_workspace("/tmp/edgelat-ws")  # doctest: +SKIP
        >>> ws.db.execute("SELECT name FROM devices").fetchall()  # doctest: +SKIP
    """
    root = Path(path).expanduser() if path is not None else default_workspace_dir()
    source = "--workspace" if path is not None else "$EDGELAT_HOME" if os.environ.get("EDGELAT_HOME") else "the default workspace"
    blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UsageError(f"{source} {root} cannot be a workspace: {blocker} is a file, not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the workspace {root} ({source}): {exc.strerror}") from None
    return Workspace(root=root.resolve(), db=connect(root / "edgelat.db"))
