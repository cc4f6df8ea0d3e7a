from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edgelat.profiler import inventory
from edgelat.profiler.agent_client import AgentSession
from edgelat.workspace import Workspace, open_workspace
from tests.sshd import SSHServer, find_sshd, start_sshd

# The agent's requests that time something on the device. make test runs every test two at a time except
# those marked `timed` (they time kernels and check what they measured), so a test not marked `timed`
# whose body sends one fails, unless it is marked `timings_ignored` (it times, but checks nothing about
# the times). A shared fixture that profiles in its set-up is allowed: its timings are noisy, and a test
# that trusts them is `timed`. Set EDGELAT_TIMINGS_REPORT to a file to have each test's counts (set-up,
# body) appended there.
TIMING_REQUESTS = frozenset({"bench", "bench_network"})
_timings = [0]
_in_setup = pytest.StashKey[int]()
_request = AgentSession.request


def _counting_request(self: AgentSession, cmd: str, *args: Any, **kwargs: Any) -> dict[str, Any]:
    if cmd in TIMING_REQUESTS:
        _timings[0] += 1
    return _request(self, cmd, *args, **kwargs)


AgentSession.request = _counting_request  # type: ignore[method-assign]


@pytest.hookimpl(wrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    _timings[0] = 0
    result = yield
    if report := os.environ.get("EDGELAT_TIMINGS_REPORT"):
        setup = item.stash.get(_in_setup, 0)
        with open(report, "a") as f:
            f.write(f"{setup}\t{_timings[0] - setup}\t{item.nodeid}\n")
    return result


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    report = yield
    if call.when == "setup":
        item.stash[_in_setup] = _timings[0]
    elif call.when == "call" and report.passed and not any(item.get_closest_marker(m) for m in ("timed", "timings_ignored", "aarch64")):
        if timed := _timings[0] - item.stash.get(_in_setup, 0):
            report.outcome = "failed"
            report.longrepr = f"sent {timed} timing request(s) to a device agent: mark it timed (it runs alone) or timings_ignored"
    return report


@pytest.fixture(autouse=True)
def isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Keep the user's ~/.ssh (config, keys, known_hosts), ssh-agent and workspace out of tests."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv("SSH_AUTH_SOCK", raising=False)
    monkeypatch.setenv("EDGELAT_HOME", str(home / "edgelat"))
    monkeypatch.delenv("EDGELAT_STORE", raising=False)
    for name in ("PGPASSWORD", "PGPASSFILE", "PGUSER", "PGHOST", "PGDATABASE", "PGSERVICE"):
        monkeypatch.delenv(name, raising=False)
    return home


@pytest.fixture
def ws(tmp_path: Path) -> Iterator[Workspace]:
    with open_workspace(tmp_path / "ws") as w:
        yield w


@pytest.fixture(scope="session")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace whose local device has dense and activation kernels measured and models trained
    (the fallback model too, on those kernels)."""
    from edgelat.predictors.train import train_device
    from edgelat.profiler.campaign import ProfileConfig, profile

    root = tmp_path_factory.mktemp("trained")
    with open_workspace(root) as ws:
        profile(ws, "local", ProfileConfig(ops=("dense", "activation"), samples=14, repeat=3, min_repeat_ms=5.0, weighted=False))
        report = train_device(ws, "local")
    assert {r.op for r in report.ops} == {"dense", "activation", "fallback"}
    return root


# The kernel kinds the timed search and pruning tests need: NB201 cells and MobileNetV2.
SEARCH_AND_PRUNE_OPS = ("conv2d", "dwconv2d", "avg_pool2d", "activation", "add", "mul", "dense", "global_avg_pool")


@pytest.fixture(scope="session")
def _profiled_for_search(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgelat.predictors.train import train_device
    from edgelat.profiler.campaign import ProfileConfig, profile

    root = tmp_path_factory.mktemp("profiled") / "ws"
    with open_workspace(root) as ws:
        profile(ws, "local", ProfileConfig(ops=SEARCH_AND_PRUNE_OPS, samples=20, repeat=3, min_repeat_ms=5.0, weighted=False))
        train_device(ws, "local")
    return root


@pytest.fixture
def profiled_for_search(_profiled_for_search: Path, tmp_path: Path) -> Path:
    """A workspace of its own whose local device is profiled and trained on the kinds search and pruning
    tests run (profiled once per session, copied per test so no test sees another's measurements)."""
    import shutil

    return Path(shutil.copytree(_profiled_for_search, tmp_path / "profiled-ws"))


def _postgres_script() -> Any:
    import importlib.util

    spec = importlib.util.spec_from_file_location("postgres_server", Path(__file__).parent.parent / "scripts" / "postgres_server.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # (its dataclasses look their module up)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="session")
def postgres() -> Iterator[Any]:
    """A real PostgreSQL server of this test session (Debian's initdb and pg_ctl, a loopback port, a password)."""
    import tempfile

    script = _postgres_script()
    try:  # (under /tmp: the server's account must reach its directory, and pytest's are private to root)
        server = script.start(Path(tempfile.mkdtemp(prefix="edgelat-pg-", dir="/tmp")))
    except script.PostgresUnavailable as exc:
        pytest.fail(f"cannot start PostgreSQL: {exc} (.ci/run installs it)")
    yield server
    server.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """The store of a test, once per engine: None (the workspace's own SQLite file) and a new database of
    the session's PostgreSQL server."""
    if request.param == "sqlite":
        return None
    import uuid

    server = request.getfixturevalue("postgres")
    return str(server.create_database(f"t_{uuid.uuid4().hex[:12]}"))


@pytest.fixture
def any_ws(tmp_path: Path, store_url: str | None) -> Iterator[Workspace]:
    """A workspace on each engine's store."""
    with open_workspace(tmp_path / "ws", store_url) as w:
        yield w


@pytest.fixture(scope="session")
def sshd_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SSHServer]:
    if find_sshd() is None:
        pytest.fail("OpenSSH's sshd is not installed (apt-get install openssh-server; .ci/run does this)")
    server = start_sshd(tmp_path_factory.mktemp("sshd"))
    yield server
    server.stop()


@pytest.fixture
def ssh_device(ws: Workspace, sshd_server: SSHServer) -> inventory.Device:
    """This machine, added as an SSH device through the loopback sshd, host key trusted."""
    if sshd_server.process is None or sshd_server.process.poll() is not None:
        sshd_server.start()
    device = inventory.add_device(
        ws,
        "loopback",
        host="127.0.0.1",
        port=sshd_server.port,
        user=sshd_server.user,
        key_file=str(sshd_server.client_key),
        preset="local",
        python=sys.executable,
    )
    inventory.trust_device(ws, "loopback")
    return device
