"""The SSH transport and the agent against a real OpenSSH server on 127.0.0.1."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from edgelat.errors import AgentReplyError, ChangedHostKeyError, RemoteCommandError, UnknownHostKeyError
from edgelat.profiler import inventory
from edgelat.profiler.agent_client import AgentSession
from edgelat.profiler.transports import SSHConfig, SSHTransport
from edgelat.workspace import Workspace
from tests.sshd import SSHServer

pytestmark = pytest.mark.ssh


def _config(server: SSHServer, **kw: object) -> SSHConfig:
    return SSHConfig(host="127.0.0.1", port=server.port, user=server.user, key_file=str(server.client_key), **kw)  # type: ignore[arg-type]


def test_probe_over_ssh(ws: Workspace, ssh_device: inventory.Device) -> None:
    data = inventory.probe_device(ws, ssh_device.name)
    assert data["arch"] and data["cpu_count"] >= 1 and data["mem_total_mb"] > 0
    assert data["python"] == ".".join(map(str, sys.version_info[:3]))
    assert data["tvm_version"], data.get("tvm_error")
    assert inventory.latest_probe(ws, ssh_device.name)["cpu_model"] == data["cpu_model"]


def test_agent_protocol_errors_over_ssh(ws: Workspace, ssh_device: inventory.Device) -> None:
    with inventory.connect(ws, ssh_device) as transport, AgentSession(transport, python=sys.executable) as agent:
        agent.send_raw("}{ garbage")
        assert agent.read_reply(timeout=30)["error"]["type"] == "bad_request"
        with pytest.raises(AgentReplyError, match="unknown_command"):
            agent.request("nope")
        assert agent.request("health")["uptime_s"] > 0
        remote_dir = agent.remote_dir
    with inventory.connect(ws, ssh_device) as transport:
        assert transport.run(["test", "-e", str(remote_dir)], check=False).exit_code == 1, "agent directory left behind"


def test_unknown_host_key_is_refused_with_instructions(tmp_path: Path, sshd_server: SSHServer) -> None:
    known = tmp_path / "known_hosts"
    with pytest.raises(UnknownHostKeyError, match="trust it with"):
        SSHTransport(_config(sshd_server), known)
    assert not known.exists(), "an unknown key was recorded without being asked to"
    SSHTransport(_config(sshd_server), known, trust_new_host=True).close()
    assert f"[127.0.0.1]:{sshd_server.port}" in known.read_text()
    SSHTransport(_config(sshd_server), known).close()  # now known: no flag needed


def test_changed_host_key_is_refused_even_when_trusting_new_hosts(tmp_path: Path, sshd_server: SSHServer) -> None:
    known = tmp_path / "known_hosts"
    SSHTransport(_config(sshd_server), known, trust_new_host=True).close()
    before = known.read_text()
    sshd_server.regenerate_host_key()
    with pytest.raises(ChangedHostKeyError, match="CHANGED"):
        SSHTransport(_config(sshd_server), known, trust_new_host=True)
    assert known.read_text() == before


def test_jump_host(tmp_path: Path, sshd_server: SSHServer) -> None:
    known = tmp_path / "known_hosts"
    cfg = _config(sshd_server, jump=f"{sshd_server.user}@127.0.0.1:{sshd_server.port}")
    with SSHTransport(cfg, known, trust_new_host=True) as t:
        assert t.run(["echo", "through the jump"]).stdout == "through the jump\n"


def test_hostile_words_do_not_reach_a_shell(tmp_path: Path, sshd_server: SSHServer) -> None:
    known = tmp_path / "known_hosts"
    canary = tmp_path / "pwned"
    with SSHTransport(_config(sshd_server), known, trust_new_host=True) as t:
        hostile = f"x; touch {canary}; $(touch {canary}) `touch {canary}` ' \" \\"
        assert t.run(["printf", "%s", hostile]).stdout == hostile
        odd = tmp_path / "odd name; $(id) `id` 'q'"
        t.run(["touch", str(odd)])
        assert odd.exists() and not canary.exists()
        with pytest.raises(RemoteCommandError) as info:
            t.run([f"python3; touch {canary}", "-c", "pass"])
        assert info.value.exit_code == 127
        assert not canary.exists()
        # A hostile interpreter path on a device fails as a missing program, nothing else.
        with pytest.raises(RemoteCommandError):
            AgentSession(t, python=f"sh -c 'touch {canary}'").start()
        assert not canary.exists()


def test_put_get_over_sftp(tmp_path: Path, sshd_server: SSHServer) -> None:
    src = tmp_path / "payload.bin"
    src.write_bytes(b"\x00\xff" * 100_000)
    with SSHTransport(_config(sshd_server), tmp_path / "kh", trust_new_host=True) as t:
        t.put(src, str(tmp_path / "remote.bin"))
        t.get(str(tmp_path / "remote.bin"), tmp_path / "back.bin")
    assert (tmp_path / "back.bin").read_bytes() == src.read_bytes()
