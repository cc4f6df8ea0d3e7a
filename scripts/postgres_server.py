#!/usr/bin/env python3
"""A private PostgreSQL server on a loopback port: a team store without a database administrator.

    python3 scripts/postgres_server.py start /tmp/edgelat-pg      # prints the store's URL; Ctrl-C stops it
    edgelat profile local --store "$(cat /tmp/edgelat-pg/url)"

Debian's ``postgresql`` package (``apt-get install postgresql``) provides ``initdb`` and ``pg_ctl``; this runs
them as an unprivileged user (the ``postgres`` account when run as root: PostgreSQL refuses to run as root)
in a directory of its own, on a free port of 127.0.0.1, password authentication (scram-sha-256) for the
superuser ``edgelat``. The tests start one per session (tests/conftest.py) and a database per test.
Standard library only: the tests load it by path, and a user runs it with the system's python3.
"""

from __future__ import annotations

import argparse
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

USER = "edgelat"


class PostgresUnavailable(RuntimeError):
    """This machine cannot run the server; the message says what is missing."""


def bin_dir() -> Path:
    """The newest installed PostgreSQL's programs (Debian keeps them out of PATH)."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parent.parent.name))
    if found:
        return found[-1].parent
    if shutil.which("initdb"):
        return Path(shutil.which("initdb") or "").parent
    raise PostgresUnavailable("no PostgreSQL server programs (apt-get install postgresql)")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    """A running server: its directory, port and superuser password."""

    root: Path
    port: int
    password: str
    runas: str | None  # the account the server runs as (None: this process's)
    options: str  # the server's settings, as pg_ctl passes them

    def url(self, database: str = "postgres", *, password: bool = True) -> str:
        auth = f"{USER}:{self.password}" if password else USER
        return f"postgresql://{auth}@127.0.0.1:{self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        env = {**os.environ, "PGPASSWORD": self.password}
        cmd = [str(bin_dir() / "psql"), "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-h", "127.0.0.1", "-p", str(self.port), "-U", USER, "-d", database, "-c", sql]
        return subprocess.run(cmd, env=env, check=True, capture_output=True, text=True).stdout

    def create_database(self, name: str) -> str:
        """A new empty database; returns its URL (password included)."""
        self.psql(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def halt(self) -> None:
        """Stop the server at once, as a crash would (no shutdown checkpoint), keeping its data."""
        _run_as(self.runas, [str(bin_dir() / "pg_ctl"), "-D", str(self.root / "data"), "-m", "immediate", "-w", "stop"])

    def resume(self) -> None:
        """Start a halted server again on the same port (it recovers from its write-ahead log)."""
        _pg_ctl_start(self.runas, self.root, self.options)

    def stop(self) -> None:
        _run_as(self.runas, [str(bin_dir() / "pg_ctl"), "-D", str(self.root / "data"), "-m", "fast", "-w", "stop"], check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def _run_as(user: str | None, cmd: list[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    full = ["runuser", "-u", user, "--", *cmd] if user else cmd
    return subprocess.run(full, check=check, capture_output=True, text=True)


def _pg_ctl_start(runas: str | None, root: Path, options: str) -> None:
    proc = _run_as(runas, [str(bin_dir() / "pg_ctl"), "-D", str(root / "data"), "-l", str(root / "server.log"), "-o", options, "-w", "-t", "60", "start"], check=False)
    if proc.returncode:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else proc.stderr
        raise PostgresUnavailable(f"pg_ctl start failed: {log.strip().splitlines()[-1] if log.strip() else proc.returncode}")


def start(root: Path, port: int | None = None, *, durable: bool = False) -> PostgresServer:
    """initdb a cluster in ``root`` and start it; returns when it accepts connections. Not ``durable``
    (tests): commits are not flushed to disk (``fsync=off``), so a power cut could lose them."""
    bins = bin_dir()
    runas = None
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PostgresUnavailable("running as root and there is no postgres account to run the server as") from None
        runas = "postgres"
    root.mkdir(parents=True, exist_ok=True)
    password = secrets.token_urlsafe(16)
    pwfile = root / "pwfile"
    pwfile.write_text(password + "\n")
    if runas:
        info = pwd.getpwnam(runas)
        for p in (root, pwfile):
            os.chown(p, info.pw_uid, info.pw_gid)
    data = root / "data"
    proc = _run_as(runas, [str(bins / "initdb"), "-D", str(data), "-U", USER, "--auth=scram-sha-256", f"--pwfile={pwfile}", "-E", "UTF8", "--no-sync"], check=False)
    if proc.returncode:
        raise PostgresUnavailable(f"initdb failed: {proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else proc.returncode}")
    pwfile.unlink()
    port = port or free_port()
    opts = f"-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories={root} -c max_connections=200" + ("" if durable else " -c fsync=off")
    _pg_ctl_start(runas, root, opts)
    server = PostgresServer(root, port, password, runas, opts)
    (root / "url").write_text(server.url("edgelat") + "\n")
    os.chmod(root / "url", 0o600)
    return server


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("start", help="start a server in DIR (created) and serve until interrupted")
    s.add_argument("dir", type=Path)
    s.add_argument("--port", type=int)
    args = parser.parse_args()
    try:
        server = start(args.dir, args.port, durable=True)
    except PostgresUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    server.create_database("edgelat")
    print(f"store: {server.url('edgelat')}  (also in {args.dir / 'url'}); Ctrl-C stops the server and removes {args.dir}", flush=True)
    stop = False

    def _stop(*_: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    while not stop:
        time.sleep(0.5)
    server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
