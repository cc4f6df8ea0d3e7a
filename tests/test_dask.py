"""Builds on a real Dask cluster: a `dask scheduler` and two `dask worker` processes on 127.0.0.1.

The kernels are timed on `local`, but only that every one is measured once matters here, so these
share the machine (`timings_ignored`); each xdist worker that runs some starts its own cluster.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.errors import BuildError, UsageError
from edgelat.profiler.executors import dask_executor, scheduler_address
from edgelat.workspace import open_workspace
from tests.sshd import free_port

pytestmark = [pytest.mark.slow, pytest.mark.timings_ignored]

BUILT = "edgelat: compile_kernel done"


@dataclass
class Cluster:
    address: str
    logs: Path
    scheduler: subprocess.Popen[bytes]
    workers: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def start_worker(self, name: str) -> None:
        cmd = [sys.executable, "-m", "distributed.cli.dask_worker", self.address, "--name", name, "--nthreads", "1", "--nworkers", "1",
               "--no-dashboard", "--host", "127.0.0.1"]  # fmt: skip
        self.workers[name] = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(self.logs / f"{name}.log", "ab"))

    def builds(self, said: str = BUILT) -> dict[str, int]:
        """Builds each worker's log says it ran."""
        return {name: (self.logs / f"{name}.log").read_text().count(said) for name in self.workers}

    def wait_for_workers(self, n: int) -> None:
        from distributed import Client

        with Client(self.address, timeout=30, set_as_default=False) as client:
            client.wait_for_workers(n, timeout=120)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    logs = tmp_path_factory.mktemp("dask")
    port = free_port()
    cmd = [sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"]
    scheduler = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(logs / "scheduler.log", "ab"))
    found = Cluster(f"tcp://127.0.0.1:{port}", logs, scheduler)
    try:
        for name in ("w1", "w2"):
            found.start_worker(name)
        found.wait_for_workers(2)
        yield found
    finally:
        for proc in [*found.workers.values(), scheduler]:
            proc.terminate()
        for proc in [*found.workers.values(), scheduler]:
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()


def _rows(root: Path) -> list[tuple[str, str]]:
    with open_workspace(root) as ws:
        return [(r["config_id"], r["status"]) for r in ws.store.rows("SELECT config_id, status FROM measurements")]


PROFILE = ["profile", "local", "--ops", "conv2d", "--samples", "20", "--unweighted", "--repeat", "2", "--min-repeat-ms", "1"]


def test_a_campaign_builds_every_kernel_on_the_workers(cluster: Cluster, tmp_path: Path) -> None:
    before = cluster.builds()
    result = CliRunner().invoke(app, [*PROFILE, "--scheduler", cluster.address, "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    rows = _rows(tmp_path / "ws")
    assert len(rows) == 20 and len({cid for cid, _ in rows}) == 20 and all(status == "ok" for _, status in rows)
    after = cluster.builds()
    # Each of the 20 builds ran once, on a worker (none in this process: the cache was empty).
    assert sum(after.values()) - sum(before.values()) == 20, (before, after)


def test_a_worker_killed_mid_campaign_loses_nothing(cluster: Cluster, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its builds are redone on the other worker; every kernel is measured once."""
    monkeypatch.setenv("EDGELAT_DASK_SCHEDULER", cluster.address)
    root = tmp_path / "ws"
    started = sum(cluster.builds().values())
    campaign = subprocess.Popen([sys.executable, "-m", "edgelat.cli", *PROFILE, "-w", str(root)], stdout=subprocess.DEVNULL,
                                stderr=open(tmp_path / "campaign.log", "ab"))  # fmt: skip
    deadline = time.time() + 300
    while time.time() < deadline and campaign.poll() is None and sum(cluster.builds().values()) < started + 2:
        time.sleep(0.1)
    cluster.workers["w2"].send_signal(signal.SIGKILL)
    try:
        assert campaign.wait(600) == 0, (tmp_path / "campaign.log").read_text()[-2000:]
    finally:
        cluster.workers["w2"].wait(30)
        cluster.start_worker("w2")  # for what follows
    rows = _rows(root)
    assert len(rows) == 20 and len({cid for cid, _ in rows}) == 20 and all(status == "ok" for _, status in rows)


def test_measure_builds_the_network_on_a_worker(cluster: Cluster, tmp_path: Path) -> None:
    import torch

    onnx = tmp_path / "net.onnx"
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU(), torch.nn.Conv2d(8, 8, 3)).eval()
    torch.onnx.export(net, (torch.randn(1, 3, 32, 32),), str(onnx), dynamo=False)
    said = "edgelat: compile_network done"
    before = sum(cluster.builds(said).values())
    result = CliRunner().invoke(app, ["measure", "local", str(onnx), "--scheduler", cluster.address, "--json", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["median_ms"] > 0 and sum(cluster.builds(said).values()) == before + 1


def test_workers_that_cannot_build_are_refused_when_connecting(cluster: Cluster) -> None:
    with pytest.raises(BuildError, match=r"Dask workers at .* cannot build here: .*no cross compiler 'no-such-g\+\+'"):
        dask_executor(cluster.address, "no-such-g++")


def test_a_bad_or_unreachable_scheduler_is_one_line(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="tcp://HOST:8786"):
        scheduler_address("127.0.0.1:8786")
    result = CliRunner().invoke(app, [*PROFILE, "--scheduler", f"tcp://127.0.0.1:{free_port()}", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 1 and "cannot reach the Dask scheduler" in result.stderr, result.output
