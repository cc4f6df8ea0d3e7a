"""The agent protocol, driven through the local transport."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from edgelat.errors import AgentCrashedError, AgentReplyError, ProtocolMismatchError
from edgelat.profiler.agent_client import AGENT_PATH, AgentSession
from edgelat.profiler.transports import LocalTransport


@pytest.fixture
def agent() -> AgentSession:
    session = AgentSession(LocalTransport(), python=sys.executable).start()
    yield session
    session.close()


def test_hello_reports_versions(agent: AgentSession) -> None:
    assert agent.hello["protocol"] == 1
    assert agent.hello["agent_version"]


def test_garbage_line_gets_error_and_agent_keeps_serving(agent: AgentSession) -> None:
    agent.send_raw("this is {not json")
    reply = agent.read_reply(timeout=10)
    assert reply["ok"] is False and reply["error"]["type"] == "bad_request"
    agent.send_raw(json.dumps(["a", "list"]))
    assert agent.read_reply(timeout=10)["error"]["type"] == "bad_request"
    assert agent.request("health")["mem_available_mb"] > 0


def test_unknown_command(agent: AgentSession) -> None:
    with pytest.raises(AgentReplyError, match="unknown_command") as info:
        agent.request("format-disk")
    assert "probe" in info.value.remote_message
    assert "loadavg" in agent.request("health")


def test_bad_args_type(agent: AgentSession) -> None:
    agent.send_raw(json.dumps({"cmd": "health", "id": 5, "args": [1, 2]}))
    reply = agent.read_reply(timeout=10)
    assert reply["id"] == 5 and reply["error"]["type"] == "bad_request"


def test_version_mismatch_is_a_clear_error() -> None:
    session = AgentSession(LocalTransport(), python=sys.executable, protocol=99)
    with pytest.raises(ProtocolMismatchError, match="host speaks 99, agent speaks 1"):
        session.start()
    session.close()


def test_requests_before_hello_are_refused() -> None:
    proc = subprocess.run(
        [sys.executable, "-I", str(AGENT_PATH)],
        input=b'{"id": 1, "cmd": "probe"}\n{"id": 2, "cmd": "bye"}\n',
        capture_output=True,
        timeout=60,
    )
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert replies[0]["error"]["type"] == "no_hello"
    assert replies[1]["result"] == {"bye": True}
    assert proc.returncode == 0


def test_agent_death_is_reported_with_stderr(agent: AgentSession) -> None:
    assert agent.process is not None
    agent.process.kill()
    with pytest.raises(AgentCrashedError, match="exited"):
        agent.request("health", timeout=10)


def test_remote_directory_removed_on_close() -> None:
    session = AgentSession(LocalTransport(), python=sys.executable).start()
    remote = Path(session.remote_dir or "")
    assert (remote / "agent.py").read_bytes() == AGENT_PATH.read_bytes()
    session.close()
    assert not remote.exists()


def test_agent_imports_only_the_standard_library() -> None:
    tree = ast.parse(AGENT_PATH.read_text())
    top_level = {n.names[0].name.split(".")[0] for n in tree.body if isinstance(n, ast.Import)}
    top_level |= {n.module.split(".")[0] for n in tree.body if isinstance(n, ast.ImportFrom) and n.module}
    assert top_level, "no imports found: the check is broken"
    assert top_level <= set(sys.stdlib_module_names), top_level - set(sys.stdlib_module_names)


def test_agent_runs_alone_from_a_copy(tmp_path: Path) -> None:
    """What ships is one file: it must work with nothing of edgelat importable."""
    copy = tmp_path / "agent.py"
    copy.write_bytes(AGENT_PATH.read_bytes())
    proc = subprocess.run(
        [sys.executable, "-I", str(copy)],
        input=b'{"id":1,"cmd":"hello","args":{"protocol":1}}\n{"id":2,"cmd":"health"}\n',
        capture_output=True,
        timeout=60,
        cwd=tmp_path,
    )
    replies = [json.loads(line) for line in proc.stdout.splitlines()]
    assert [r["ok"] for r in replies] == [True, True], proc.stderr


# /proc/cpuinfo as a Raspberry Pi 4 (64-bit OS) and a big.LITTLE phone print it (abridged).
PI4_CPUINFO = (
    "".join(
        f"processor\t: {i}\nBogoMIPS\t: 108.00\nFeatures\t: fp asimd evtstrm crc32 cpuid\nCPU implementer\t: 0x41\n"
        f"CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: 0xd08\nCPU revision\t: 3\n\n"
        for i in range(4)
    )
    + "Hardware\t: BCM2835\nRevision\t: c03114\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
)
PHONE_CPUINFO = (
    "".join(f"processor\t: {i}\nCPU implementer\t: 0x41\nCPU part\t: {'0xd05' if i < 6 else '0xd0b'}\n\n" for i in range(8))
    + "Hardware\t: Qualcomm Technologies, Inc SM7150\n"
)
X86_CPUINFO = "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Xeon(R) Gold 6248\nflags\t\t: fpu sse avx2\n"


@pytest.mark.parametrize(
    ("text", "machine", "expected"),
    [
        (PI4_CPUINFO, "aarch64", "Raspberry Pi 4 Model B Rev 1.4 (Cortex-A72)"),
        (PHONE_CPUINFO, "aarch64", "Qualcomm Technologies, Inc SM7150 (Cortex-A55 + Cortex-A76)"),
        ("processor\t: 0\nCPU implementer\t: 0x51\nCPU part\t: 0x805\n", "aarch64", "implementer 0x51 part 0x805"),
        # qemu-user shows the host's cpuinfo to emulated programs: not the device's CPU
        (X86_CPUINFO, "aarch64", "unknown (no ARM fields in /proc/cpuinfo: emulated?)"),
        (X86_CPUINFO, "x86_64", "Intel(R) Xeon(R) Gold 6248"),
    ],
)
def test_probe_names_the_cpu_from_its_cpuinfo(text: str, machine: str, expected: str) -> None:
    from edgelat.device_agents import agent as agent_module

    assert agent_module._cpu_model(text, machine) == expected


def test_a_host_killed_mid_campaign_leaves_a_directory_the_next_agent_removes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent of a host killed mid-campaign leaves its directory; the next agent removes it once the
    lease is over, but never one a live agent holds."""
    import os
    import signal
    import time

    agents = tmp_path / "tmp"
    agents.mkdir()
    monkeypatch.setenv("TMPDIR", str(agents))  # where `mktemp -t` puts agent directories, here and in the host
    host = subprocess.Popen(
        [sys.executable, "-m", "edgelat.cli", "profile", "local", "--ops", "add", "--samples", "200", "--workspace", str(tmp_path / "ws")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not list(agents.glob("edgelat-agent.*/agent.pid")) and host.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    time.sleep(3.0)  # timing kernels by now
    assert host.poll() is None, "the campaign ended before it could be killed"
    host.send_signal(signal.SIGKILL)
    host.wait(30)
    (left,) = agents.glob("edgelat-agent.*")
    pid = int((left / "agent.pid").read_text())
    while time.time() < deadline:  # its agent sees the host gone (stdin closed) and exits
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.2)
    live = AgentSession(LocalTransport(), python=sys.executable).start()
    try:
        # A long lease: nothing is old enough yet.
        assert live.hello["reaped"] == 0 and left.exists()
        fresh = AgentSession(LocalTransport(), python=sys.executable, env={"EDGELAT_AGENT_LEASE_S": "0"}).start()
        try:
            assert fresh.hello["reaped"] == 1
            assert not left.exists()
            assert Path(live.remote_dir or "").exists() and Path(fresh.remote_dir or "").exists()
        finally:
            fresh.close()
    finally:
        live.close()
    assert list(agents.glob("edgelat-agent.*")) == []


def test_two_libraries_of_one_name_run_as_themselves_in_one_session(agent: AgentSession, tmp_path: Path) -> None:
    """A network built twice (another recipe, another target) keeps its file name; on the device each runs as itself."""
    import numpy as np
    import torch

    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler.e2e import build_network

    x = np.random.default_rng(0).uniform(-1, 1, (1, 8)).astype("float32")
    for i, net in enumerate((torch.nn.ReLU(), torch.nn.Tanh())):
        lib = tmp_path / str(i) / "net.so"
        build_network(relax_from_torch(net, torch.from_numpy(x)), {"kind": "llvm"}, lib)
        (out,) = agent.run(lib, [x])
        assert np.allclose(out, net(torch.from_numpy(x)).numpy(), atol=1e-6), i


def test_an_agent_that_has_loaded_its_share_of_libraries_is_replaced(tmp_path: Path) -> None:
    """TVM never unloads a library, so a long campaign would run a process out of memory mappings: the host
    starts a fresh agent (same directory, shipped files kept) once one has loaded ``max_libraries``."""
    import numpy as np
    import torch

    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler.e2e import build_network

    x = np.random.default_rng(0).uniform(-1, 1, (1, 8)).astype("float32")
    lib = tmp_path / "net.so"
    build_network(relax_from_torch(torch.nn.ReLU(), torch.from_numpy(x)), {"kind": "llvm"}, lib)
    with AgentSession(LocalTransport(), python=sys.executable, max_libraries=2) as agent:
        pids = []
        for i in range(5):
            (out,) = agent.run(lib, [x])
            pids.append(agent.hello["pid"])
            assert np.allclose(out, np.maximum(x, 0)), i
            assert 1 <= agent.libraries <= 2, (i, agent.libraries)
    assert pids[0] == pids[1] != pids[2] == pids[3] != pids[4], pids


def test_the_private_caches_are_the_data_levels_below_the_last(tmp_path: Path) -> None:
    """What "llc" timing writes over before each call: L1d and L2 where an L3 follows; L1d alone where L2 is the last."""
    from edgelat.device_agents.agent import _private_cache_bytes

    def tree(name: str, levels: list[tuple[int, str, str]]) -> Path:
        root = tmp_path / name
        for i, (level, kind, size) in enumerate(levels):
            (root / f"index{i}").mkdir(parents=True)
            for field, value in (("level", str(level)), ("type", kind), ("size", size)):
                (root / f"index{i}" / field).write_text(value + "\n")
        return root

    host = tree("host", [(1, "Data", "48K"), (1, "Instruction", "64K"), (2, "Unified", "2048K"), (3, "Unified", "491520K")])
    pi = tree("pi", [(1, "Data", "32K"), (1, "Instruction", "48K"), (2, "Unified", "1024K")])
    assert _private_cache_bytes(str(host)) == (48 + 2048) * 1024
    assert _private_cache_bytes(str(pi)) == 32 * 1024
    assert _private_cache_bytes(str(tmp_path / "none")) == 0
