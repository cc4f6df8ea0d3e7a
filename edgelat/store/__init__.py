"""The store: every device, campaign, kernel configuration and measurement, in one SQL database.

Two engines behind one interface (SQLAlchemy Core):

- the embedded default: SQLite in WAL mode, the workspace's ``edgelat.db``;
- a team store: PostgreSQL (``--store postgresql://USER@HOST[:PORT]/DB`` or ``$EDGELAT_STORE``), which several
  people and hosts profile into and train from at once.

The schema is versioned with Alembic (``edgelat/store/migrations/versions``: one revision per change, never
edited once released); a store is upgraded in place when it is opened. A workspace made before Alembic (its
version in SQLite's ``user_version``) is stamped at the matching revision first.

Every statement is parameterised; statements are written once for both engines (Core constructs where the
dialects differ: upserts, ``IN`` lists, ``FOR UPDATE``). Outside :meth:`Store.transaction` each statement
commits on its own; inside, the statements of this thread land together or not at all.

Credentials come from the URL, ``PGPASSFILE`` (``~/.pgpass``) or libpq's environment (``PGPASSWORD``, ``PGUSER``...);
none is logged or written to the workspace (:attr:`Store.display` hides the password).
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine, RowMapping, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, InterfaceError, OperationalError

from edgelat.errors import StoreError, StoreLostError, StoreUnreachableError, UsageError

__all__ = ["ENGINES", "Store", "open_store", "store_url", "utc_now"]

# The dialects a store may use, by the scheme a user writes.
ENGINES = {"sqlite": "sqlite", "postgresql": "postgresql+psycopg", "postgres": "postgresql+psycopg"}

# SQLite's user_version of a workspace made before Alembic -> the revision that schema is.
_LEGACY_REVISIONS = {n: f"{n:04d}" for n in range(1, 9)}  # (SQLite user_version 1-8)
# Written into SQLite's user_version once Alembic keeps the version: an edgelat from before Alembic refuses the
# file ("newer than this edgelat knows") instead of migrating it again.
_ALEMBIC_USER_VERSION = 1000
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
_MIGRATION_LOCK = 0x6564676C  # PostgreSQL advisory lock held while a store is upgraded ("edgl")


def utc_now() -> str:
    """The time as the store writes it: ISO 8601, UTC, milliseconds (the same text on both engines)."""
    now = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(now)) + f".{int(now % 1 * 1000):03d}Z"


def store_url(store: str | None) -> str | None:
    """The team store asked for: ``store`` if given, else ``$EDGELAT_STORE`` (empty means none)."""
    return store or os.environ.get("EDGELAT_STORE") or None


class Store:
    """One store (an engine and its schema), shared by the threads of a process.

    Example:
        >>> store = open_store(sqlite_path="/tmp/ws/edgelat.db")  # doctest: +SKIP
        >>> store.rows("SELECT name FROM devices WHERE preset = :p", {"p": "rpi4"})  # doctest: +SKIP
    """

    def __init__(self, engine: Engine, *, shared: bool, url: str | None = None) -> None:
        self.engine = engine
        self.shared = shared  # a team store (not the workspace's own file)
        self.url = url  # as given, password included: for opening it again (another thread, the service); never shown
        self.dialect: str = engine.dialect.name
        self.display = engine.url.set(drivername=engine.url.get_backend_name()).render_as_string(hide_password=True)
        self._local = threading.local()
        self._tables: dict[str, sa.Table] = {}
        self._meta = sa.MetaData()

    # --- statements -------------------------------------------------------------------------------------

    @contextmanager
    def _connection(self, write: bool) -> Iterator[Connection]:
        current: Connection | None = getattr(self._local, "conn", None)
        if current is not None:  # inside this thread's transaction
            yield current
            return
        with self._lost(), self.engine.connect() as conn:
            conn = conn.execution_options(edgelat_write=write)
            with conn.begin():
                yield conn

    @contextmanager
    def _lost(self) -> Iterator[None]:
        """A server gone (stopped, restarted, unreachable) or a file locked past the timeout: :class:`StoreLostError`,
        one line, not the driver's traceback."""
        try:
            yield
        except (OperationalError, InterfaceError) as exc:
            raise StoreLostError(f"lost the store {self.display} ({_first_line(exc)})") from None

    def execute(self, statement: str | sa.Executable, params: Mapping[str, Any] | Sequence[Mapping[str, Any]] | None = None) -> int:
        """Run a write (a list of parameter sets runs it once per set); returns the rows it touched."""
        stmt = sa.text(statement) if isinstance(statement, str) else statement
        with self._connection(write=True) as conn:
            result = conn.execute(stmt, list(params) if isinstance(params, Sequence) else params)
            return int(result.rowcount)

    def rows(self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None, *, write: bool = False) -> list[RowMapping]:
        """The rows of a query (or of a write ``RETURNING`` them: ``write=True``), as mappings: ``row["name"]``."""
        stmt = sa.text(statement) if isinstance(statement, str) else statement
        with self._connection(write=write) as conn:
            return list(conn.execute(stmt, params).mappings().all())

    def first(self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None) -> RowMapping | None:
        rows = self.rows(statement, params)
        return rows[0] if rows else None

    def scalar(self, statement: str | sa.Executable, params: Mapping[str, Any] | None = None) -> Any:
        """The first column of the first row (None without rows)."""
        row = self.first(statement, params)
        return None if row is None else next(iter(row.values()))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """This thread's statements inside land together (COMMIT) or not at all (ROLLBACK on any exception).
        On SQLite the transaction takes the write lock when it begins (``BEGIN IMMEDIATE``), so a read inside
        it sees what no other writer can change before it commits; on PostgreSQL, lock the rows read with
        ``FOR UPDATE`` (:meth:`lock_row`)."""
        if getattr(self._local, "conn", None) is not None:
            yield  # nested: part of the outer transaction
            return
        with self._lost(), self.engine.connect() as conn:
            conn = conn.execution_options(edgelat_write=True)
            with conn.begin():
                self._local.conn = conn
                try:
                    yield
                finally:
                    self._local.conn = None

    # --- tables and dialect-specific statements ---------------------------------------------------------

    def table(self, name: str) -> sa.Table:
        """A table as the store has it now (reflected once; the migrations are the schema's one source)."""
        if name not in self._tables:
            self._tables[name] = sa.Table(name, self._meta, autoload_with=self.engine)
        return self._tables[name]

    def _insert(self, table: str) -> Any:
        """The dialect's INSERT (both have ``on_conflict_do_update``/``_do_nothing`` with one signature)."""
        from sqlalchemy.dialects import postgresql, sqlite

        return (postgresql.insert if self.dialect == "postgresql" else sqlite.insert)(self.table(table))

    def upsert(self, table: str, row: Mapping[str, Any], keys: Sequence[str]) -> None:
        """Insert ``row``, or replace the columns it gives of the row with the same ``keys``."""
        stmt = self._insert(table).values(dict(row))
        stmt = stmt.on_conflict_do_update(index_elements=list(keys), set_={c: stmt.excluded[c] for c in row if c not in keys})
        self.execute(stmt)

    def insert_new(self, table: str, rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> int:
        """Insert the ``rows`` whose ``keys`` are not in ``table`` yet (the others are left as they are)."""
        if not rows:
            return 0
        stmt = self._insert(table).on_conflict_do_nothing(index_elements=list(keys)).returning(self.table(table).c[keys[0]])
        with self._connection(write=True) as conn:  # (a driver's rowcount of many rows is not always known: count what came back)
            return len(conn.execute(stmt, [dict(r) for r in rows]).all())

    def insert(self, table: str, row: Mapping[str, Any]) -> RowMapping:
        """Insert one row; returns it as stored (with its id and defaults)."""
        t = self.table(table)
        return self.rows(t.insert().values(dict(row)).returning(*t.c), write=True)[0]

    def lock_row(self, table: str, where: Mapping[str, Any]) -> RowMapping | None:
        """Read one row inside :meth:`transaction`, locked against other writers until the transaction ends."""
        t = self.table(table)
        stmt = sa.select(t).where(*(t.c[k] == v for k, v in where.items())).with_for_update()
        return self.first(stmt)

    def close(self) -> None:
        self.engine.dispose()


# --- opening --------------------------------------------------------------------------------------------


def _sqlite_engine(url: sa.URL) -> Engine:
    engine = sa.create_engine(url, connect_args={"timeout": 30.0, "check_same_thread": False})

    @sa.event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # the driver's own transaction handling off: BEGIN is ours (below)
        cur = dbapi_conn.cursor()
        for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON"):
            cur.execute(f"PRAGMA {pragma}")
        cur.close()

    @sa.event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        # Writes take the lock up front: a deferred transaction that reads, then writes, fails at once (no
        # wait) when another connection wrote in between.
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("edgelat_write") else "BEGIN")

    return engine


def _postgresql_engine(url: sa.URL) -> Engine:
    engine = sa.create_engine(url, pool_pre_ping=True, connect_args={"connect_timeout": 10, "application_name": "edgelat"})
    # A forked child must not use (or close) its parent's connections (a weak reference: the hook outlives the engine).
    ref = weakref.ref(engine)

    def _forget_in_child() -> None:
        forked = ref()
        if forked is not None:
            forked.dispose(close=False)

    os.register_at_fork(after_in_child=_forget_in_child)
    return engine


def _parse(url_text: str) -> sa.URL:
    try:
        url = make_url(url_text)
    except ArgumentError:
        raise UsageError(f"--store: {url_text.split('@')[-1]!r} is not a database URL (postgresql://USER@HOST[:PORT]/DB)") from None
    scheme = url.drivername.split("+")[0]
    if scheme not in ENGINES:
        raise UsageError(f"--store: {scheme!r} is not a store edgelat knows (postgresql://USER@HOST[:PORT]/DB, or sqlite:///FILE)")
    if scheme != "sqlite" and not url.database:
        raise UsageError(f"--store {url.render_as_string(hide_password=True)}: name the database (postgresql://USER@HOST[:PORT]/DB)")
    return url.set(drivername=ENGINES[scheme])


def open_store(url_text: str | None = None, *, sqlite_path: Path | None = None) -> Store:
    """Open and upgrade the store at ``url_text`` (a team store), else the SQLite file ``sqlite_path``.

    A server that cannot be reached, refuses the credentials or has no such database is a
    :class:`~edgelat.errors.StoreUnreachableError` (one line, the password never in it)."""
    if url_text is not None:
        url = _parse(url_text)
        shared = True
    else:
        assert sqlite_path is not None
        url, shared = sa.URL.create("sqlite", database=str(sqlite_path)), False
    engine = _sqlite_engine(url) if url.get_backend_name() == "sqlite" else _postgresql_engine(url)
    store = Store(engine, shared=shared, url=url_text)
    try:
        _upgrade(store)
    except OperationalError as exc:
        store.close()
        if store.dialect == "sqlite":
            raise StoreError(f"cannot open the store {url.database}: {exc.orig}") from None
        raise StoreUnreachableError(f"cannot use the store {store.display}: {_first_line(exc)}") from None
    except DBAPIError as exc:
        store.close()
        raise StoreError(f"cannot open the store {store.display}: {_first_line(exc)}") from None
    return store


def _first_line(exc: DBAPIError) -> str:
    """The server's or the driver's reason, in one line ("password authentication failed for user ...")."""
    lines = str(exc.orig).strip().splitlines()
    text = lines[0] if lines else type(exc.orig).__name__
    return text.rpartition("FATAL:")[2].strip() if "FATAL:" in text else text.rpartition("failed: ")[2].strip()


def _alembic_config(conn: Connection) -> Any:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.attributes["connection"] = conn
    return cfg


def head_revision() -> str:
    from alembic.script import ScriptDirectory

    script = ScriptDirectory(str(MIGRATIONS_DIR))
    head = script.get_current_head()
    assert head is not None
    return head


# Alembic's ``op`` and ``context`` are module globals: one migration run per process at a time.
_UPGRADING = threading.Lock()


def _upgrade(store: Store) -> None:
    """Bring the store to the latest revision (one transaction; one process at a time: SQLite's write lock,
    PostgreSQL's advisory lock)."""
    from alembic import command
    from alembic.runtime.migration import MigrationContext
    from alembic.script import ScriptDirectory

    head = head_revision()
    with _UPGRADING, store.engine.connect() as conn:
        conn = conn.execution_options(edgelat_write=True)
        with conn.begin():
            if store.dialect == "postgresql":
                conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")
            current = MigrationContext.configure(conn).get_current_revision()
            if current == head:
                return
            cfg = _alembic_config(conn)
            if current is None and store.dialect == "sqlite":
                legacy = int(conn.exec_driver_sql("PRAGMA user_version").scalar() or 0)
                if legacy > max(_LEGACY_REVISIONS):
                    raise StoreError(f"{store.display} has schema version {legacy} and no Alembic revision: it was not made by edgelat")
                if legacy:
                    command.stamp(cfg, _LEGACY_REVISIONS[legacy])
                    current = _LEGACY_REVISIONS[legacy]
            if current is not None:
                try:
                    ScriptDirectory.from_config(cfg).get_revision(current)
                except Exception:  # alembic raises several kinds for an unknown id
                    raise StoreError(f"{store.display} is at schema revision {current}, newer than this edgelat knows: upgrade edgelat") from None
            command.upgrade(cfg, "head")
            logging.getLogger(__name__).info("upgraded the store %s from schema revision %s to %s", store.display, current or "(empty)", head)
            if store.dialect == "sqlite":
                conn.exec_driver_sql(f"PRAGMA user_version={_ALEMBIC_USER_VERSION}")
