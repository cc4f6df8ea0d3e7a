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
