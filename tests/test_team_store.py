"""A team store: two campaigns on two devices from two processes at once, on each engine; credentials never
shown or kept; a store that cannot be used is one line and exit code 2; `data push/pull` copies only what the
other store lacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from edgelat.profiler import inventory
from edgelat.workspace import open_workspace
from tests.sshd import SSHServer

CLI = [sys.executable, "-m", "edgelat.cli"]


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})})


def _store_args(url: str | None) -> list[str]:
    return ["--store", url] if url else []


@pytest.mark.timings_ignored
@pytest.mark.slow
def test_two_campaigns_on_two_devices_from_two_processes_fill_one_store(
    tmp_path: Path, store_url: str | None, sshd_server: SSHServer
) -> None:
    """`edgelat profile local` and `edgelat profile loopback` (this machine over SSH) started together, each its own
    process, writing to one store: both campaigns done, every planned kernel stored once, each row saying who
    measured it and with which versions."""
    root = tmp_path / "ws"
    with open_workspace(root, store_url) as ws:
        inventory.add_device(ws, "loopback", host="127.0.0.1", port=sshd_server.port, user=sshd_server.user,
                             key_file=str(sshd_server.client_key), preset="local", python=sys.executable)  # fmt: skip
        inventory.trust_device(ws, "loopback")
    common = ["--samples", "10", "--repeat", "3", "--min-repeat-ms", "10", "--workspace", str(root), *_store_args(store_url)]
    runs = [
        subprocess.Popen([*CLI, "profile", device, "--ops", ops, *common], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for device, ops in (("local", "dense"), ("loopback", "activation"))
    ]
    outputs = [r.communicate(timeout=900) for r in runs]
    assert [r.returncode for r in runs] == [0, 0], [o[1][-2000:] for o in outputs]
    with open_workspace(root, store_url) as ws:
        campaigns = ws.store.rows("SELECT id, device, plan, status, holder FROM campaigns ORDER BY device")
        assert [(c["device"], c["status"], c["holder"]) for c in campaigns] == [("local", "done", None), ("loopback", "done", None)]
        for c in campaigns:
            rows = ws.store.rows("SELECT * FROM measurements WHERE campaign_id = :id", {"id": c["id"]})
            assert sorted(r["config_id"] for r in rows) == sorted(json.loads(c["plan"])) and len(rows) == 10
            assert all(r["status"] == "ok" and r["device"] == c["device"] for r in rows)
            assert all(r["measured_by"] and r["edgelat_version"] and r["tvm_version"] and r["agent_version"] and r["measured_at"] for r in rows)


def test_credentials_are_never_shown_or_kept(tmp_path: Path, postgres: Any) -> None:
    """The password works from the URL, from PGPASSFILE and from PGPASSWORD; it appears in no output (-vv
    included) and in no file of the workspace; a wrong one is one line and exit code 2."""
    url = postgres.create_database("credentials")
    bare = url.replace(f":{postgres.password}@", "@")
    root = tmp_path / "ws"
    ran = _cli("-vv", "device", "list", "--workspace", str(root), "--store", url)
    assert ran.returncode == 0, ran.stderr
    passfile = tmp_path / "pgpass"
    passfile.write_text(f"127.0.0.1:{postgres.port}:*:edgelat:{postgres.password}\n")
    passfile.chmod(0o600)
    by_file = _cli("device", "list", "--json", "--workspace", str(root), env={"PGPASSFILE": str(passfile), "EDGELAT_STORE": bare})
    assert by_file.returncode == 0, by_file.stderr
    assert [d["name"] for d in json.loads(by_file.stdout)] == ["local"]
    by_env = _cli("device", "list", "--workspace", str(root), "--store", bare, env={"PGPASSWORD": postgres.password})
    assert by_env.returncode == 0, by_env.stderr
    for run in (ran, by_file, by_env):
        assert postgres.password not in run.stdout + run.stderr
    for path in root.rglob("*"):
        if path.is_file():
            assert postgres.password.encode() not in path.read_bytes(), path
    wrong = _cli("device", "list", "--workspace", str(root), "--store", url.replace(postgres.password, "wrong-password"))
    assert wrong.returncode == 2 and "password authentication failed" in wrong.stderr and "wrong-password" not in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) <= 2 and "Traceback" not in wrong.stderr  # one line (rich may fold it)


@pytest.mark.parametrize(
    ("url", "says"),
    [
        ("postgresql://edgelat@127.0.0.1:1/db", "Connection refused"),
        ("postgresql://edgelat@no-such-host.invalid/db", "no-such-host.invalid"),
        ("mysql://u@h/db", "not a store edgelat knows"),
        ("postgresql://edgelat@127.0.0.1", "name the database"),
        ("::not a url::", "not a database URL"),
    ],
)
def test_a_store_that_cannot_be_used_is_one_line_and_exit_2(tmp_path: Path, url: str, says: str) -> None:
    ran = _cli("device", "list", "--workspace", str(tmp_path / "ws"), "--store", url, timeout=120)
    assert ran.returncode == 2 and says in ran.stderr, ran.stderr
    assert "Traceback" not in ran.stderr and len(ran.stderr.strip().splitlines()) <= 2


@pytest.mark.timings_ignored
def test_push_and_pull_copy_only_what_the_other_store_lacks(tmp_path: Path, postgres: Any) -> None:
    """Profile offline into a workspace's own store, push it to the team store under another name, push again
    (nothing added), profile more and push (only the new rows), pull into another workspace: the same rows,
    and a model trains there."""
    team = postgres.create_database("push_pull")
    mine, theirs = tmp_path / "mine", tmp_path / "theirs"
    profile = ["profile", "local", "--ops", "dense,activation", "--samples", "8", "--unweighted", "--repeat", "3", "--min-repeat-ms", "5"]
    assert _cli(*profile, "--workspace", str(mine)).returncode == 0
    pushed = _cli("data", "push", "local", "--as", "alice-box", "--workspace", str(mine), "--store", team)
    assert pushed.returncode == 0 and "rows added" in pushed.stdout, pushed.stderr
    with open_workspace(mine, team) as ws:
        assert ws.store.scalar("SELECT COUNT(*) FROM measurements WHERE device = 'alice-box'") == 16
        assert ws.store.scalar("SELECT COUNT(*) FROM campaigns WHERE device = 'alice-box'") == 1
    again = _cli("data", "push", "local", "--as", "alice-box", "--workspace", str(mine), "--store", team)
    assert again.returncode == 0 and "already had everything" in again.stdout, again.stdout
    assert _cli(*profile, "--seed", "1", "--workspace", str(mine)).returncode == 0
    more = _cli("data", "push", "local", "--as", "alice-box", "--workspace", str(mine), "--store", team)
    assert more.returncode == 0 and "rows added" in more.stdout
    pulled = _cli("data", "pull", "alice-box", "--workspace", str(theirs), "--store", team)
    assert pulled.returncode == 0, pulled.stderr
    columns = "config_id, op, recipe, status, median_ms, measured_by, measured_at, tvm_version, target"
    with open_workspace(mine) as a, open_workspace(theirs) as b:
        ours = sorted(tuple(r.values()) for r in a.store.rows(f"SELECT {columns} FROM measurements"))
        copied = sorted(tuple(r.values()) for r in b.store.rows(f"SELECT {columns} FROM measurements WHERE device = 'alice-box'"))
        assert ours == copied and len(ours) == 32
    trained = _cli("train", "alice-box", "--workspace", str(theirs))
    assert trained.returncode == 0, trained.stderr
    profiled = _cli("profile", "alice-box", "--workspace", str(theirs))  # not this machine: no connection
    assert profiled.returncode == 2 and "no connection" in profiled.stderr, profiled.stderr
    # Bad requests: one line, exit 2.
    for args, says in (
        (["data", "push", "nobody", "--workspace", str(mine), "--store", team], "no device named 'nobody'"),
        (["data", "push", "local", "--workspace", str(mine)], "name the team store"),
        (["data", "push", "local", "--as", "bad name", "--workspace", str(mine), "--store", team], "bad device name"),
    ):
        bad = _cli(*args)
        assert bad.returncode == 2 and says in bad.stderr, (args, bad.stderr)
    with open_workspace(mine, team) as ws:
        inventory.add_adapted_device(ws, "phone")
    clash = _cli("data", "push", "local", "--as", "phone", "--workspace", str(mine), "--store", team)
    assert clash.returncode == 2 and "preset adapted, not local" in clash.stderr, clash.stderr


@pytest.mark.timings_ignored
@pytest.mark.slow
def test_a_campaign_that_loses_the_store_stops_in_one_line_and_resumes_when_it_is_back(tmp_path: Path, postgres: Any) -> None:
    """The server stops mid-campaign (as a crash would): `profile` ends with one line saying the store was lost and
    how to go on (exit 1, no traceback); once the server is back, `--resume` finishes it, every kernel stored once."""
    import time

    from edgelat.store import open_store

    url = postgres.create_database("lost")
    root = tmp_path / "ws"
    base = [*CLI, "profile", "local", "--workspace", str(root), "--store", url]
    first = subprocess.Popen([*base, "--ops", "dense", "--samples", "24", "--repeat", "3", "--min-repeat-ms", "20"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline:
            store = open_store(url)
            stored = store.scalar("SELECT COUNT(*) FROM measurements")
            store.close()
            if stored >= 3:
                break
            time.sleep(0.3)
        postgres.halt()
        try:
            _, stderr = first.communicate(timeout=300)
        finally:
            postgres.resume()
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 1, stderr
    assert "Traceback" not in stderr
    last = stderr.strip().splitlines()[-1]
    assert "lost the store" in stderr and "--resume" in stderr and "stored" in stderr, stderr
    assert postgres.password not in stderr, last
    resumed = _cli(*base[3:], "--resume")
    assert resumed.returncode == 0, resumed.stderr
    with open_workspace(root, url) as ws:
        (campaign,) = ws.store.rows("SELECT id, plan, status FROM campaigns")
        rows = ws.store.rows("SELECT config_id FROM measurements WHERE campaign_id = :id", {"id": campaign["id"]})
    assert campaign["status"] == "done" and sorted(r["config_id"] for r in rows) == sorted(json.loads(campaign["plan"]))
