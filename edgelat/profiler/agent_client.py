"""The host side of the agent protocol: ship the agent, start it, talk to it, clean up."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from edgelat.device_agents import agent as agent_module
from edgelat.errors import (
    AgentCrashedError,
    AgentError,
    AgentReplyError,
    AgentTimeoutError,
    ProtocolMismatchError,
    TransportError,
)
from edgelat.profiler.transports import Process, Transport

__all__ = ["AGENT_PATH", "PROTOCOL_VERSION", "AgentSession"]

AGENT_PATH = Path(agent_module.__file__)
PROTOCOL_VERSION = agent_module.PROTOCOL_VERSION

log = logging.getLogger(__name__)

# Requests that load a library into the agent, and how many it may load before the host starts a fresh one: TVM
# never unloads a library, and the mappings of ~13,000 exhaust a process's vm.max_map_count (65,530 by default).
_LOADING = frozenset({"bench", "bench_network", "run"})
MAX_LIBRARIES = 2000

_SHA256 = "import hashlib,sys; print(hashlib.sha256(open(sys.argv[1],'rb').read()).hexdigest())"


class AgentSession:
    """One running agent on a device, shipped to a private temporary directory.

    Example:
        >>> with AgentSession(LocalTransport(), python="python3") as agent:  # doctest: +SKIP
        ...     print(agent.request("probe")["cpu_count"])
    """

    def __init__(
        self,
        transport: Transport,
        *,
        python: str = "python3",
        env: Mapping[str, str] | None = None,
        protocol: int = PROTOCOL_VERSION,
        start_timeout: float = 60.0,
        max_libraries: int = MAX_LIBRARIES,
    ) -> None:
        self.transport = transport
        self.python = python
        self.env = dict(env or {})
        self.protocol = protocol
        self.start_timeout = start_timeout
        self.max_libraries = max_libraries
        self.libraries = 0  # loaded by the running agent, as its last reply said
        self.remote_dir: str | None = None
        self.process: Process | None = None
        self.hello: dict[str, Any] = {}
        self._ids = itertools.count(1)

    # -- life cycle -------------------------------------------------------------------
    def start(self) -> AgentSession:
        """Ship the agent (checksum verified), start it and shake hands."""
        if self.remote_dir is None:
            self.remote_dir = self.transport.run(["mktemp", "-d", "-t", "edgelat-agent.XXXXXXXX"], timeout=30).stdout.strip()
            if not self.remote_dir:
                raise TransportError(f"mktemp printed nothing on {self.transport.name}")
            remote_agent = self.remote_path("agent.py")
            self.transport.put(AGENT_PATH, remote_agent)
            expected = hashlib.sha256(AGENT_PATH.read_bytes()).hexdigest()
            got = self.transport.run([self.python, "-I", "-c", _SHA256, remote_agent], timeout=60).stdout.strip()
            if got != expected:
                raise AgentError(f"the agent shipped to {self.transport.name} is corrupt: sha256 {got!r}, expected {expected}")
        self._spawn()
        return self

    def _spawn(self) -> None:
        self.process = self.transport.open_process([self.python, "-I", "-u", self.remote_path("agent.py")], env=self.env)
        self.hello = self.request("hello", {"protocol": self.protocol}, timeout=self.start_timeout)
        if self.hello.get("reaped"):
            log.info(
                "removed %d stale agent directories on %s (left by hosts that stopped mid-run)", self.hello["reaped"], self.transport.name
            )

    def remote_path(self, name: str) -> str:
        assert self.remote_dir is not None, "start() first"
        return f"{self.remote_dir.rstrip('/')}/{name}"

    def remote_library(self, lib: Path, prefix: str = "") -> str:
        """Where to ship ``lib``: a path named after its content, so two libraries never share one on the device
        (the dynamic loader hands back the library first loaded from a path, and overwriting a loaded one crashes)."""
        digest = hashlib.sha256(lib.read_bytes()).hexdigest()[:16]
        return self.remote_path(f"{prefix}{lib.stem}-{digest}{lib.suffix}")

    def restart(self) -> None:
        """Kill the agent process (if alive) and start a new one in the same directory."""
        if self.process is not None:
            try:
                self.process.kill()
            except (OSError, TransportError):
                pass
        self._spawn()

    def close(self) -> None:
        """Say bye, stop the process and remove the temporary directory. Never raises."""
        if self.process is not None:
            try:
                if self.process.poll() is None:
                    self.request("bye", timeout=10)
                    self.process.wait(5)
            except (AgentError, TransportError):
                pass
            try:
                self.process.kill()
            except (OSError, TransportError):
                pass
            self.process = None
        if self.remote_dir is not None:
            try:
                self.transport.run(["rm", "-rf", "--", self.remote_dir], timeout=60, check=False)
            except TransportError:
                pass
            self.remote_dir = None

    def __enter__(self) -> AgentSession:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- requests ---------------------------------------------------------------------
    def time_library(
        self,
        path: Path,
        args: list[list[Any]],
        *,
        name: str = "main",
        repeat: int = 3,
        min_repeat_ms: float = 10.0,
        caches: str = "warm",
    ) -> list[float]:
        """Ship a one-off library, time its function ``name`` and delete it; seconds per repeat.

        What MetaSchedule's candidates go through, timed with the cache state ``caches`` (as the agent's
        ``bench`` takes it; a tuning recipe's ``candidate_caches``). The remote file is named after the local
        file's directory, which MetaSchedule makes unique per candidate.
        """
        remote = self.remote_path(f"{path.parent.name}-{path.name}")
        self.transport.put(path, remote)
        try:
            reply = self.request(
                "bench",
                {"lib": remote, "kernels": [{"name": name, "args": args}], "repeat": repeat, "min_repeat_ms": min_repeat_ms, "caches": caches},
                timeout=120,
            )
        finally:
            if self.process is not None and self.process.poll() is None:
                self.request("remove", {"paths": [remote]}, timeout=30)
        return [float(s) for s in reply["kernels"][0]["seconds"]]

    def run(
        self, lib: Path, inputs: Sequence[Any], *, kernel: str | None = None, outputs: Sequence[Sequence[Any]] = (), timeout: float = 600.0
    ) -> list[Any]:
        """Run a compiled library once on the device with ``inputs`` (numpy arrays); what it computed.

        ``kernel``: a function of a kernel library, writing ``outputs`` ([shape, dtype] each) after its
        inputs; without it, a whole network's VM ``main``. Everything shipped is removed afterwards.
        """
        import numpy as np

        shipped = [self.remote_library(lib, "run-")]
        with tempfile.TemporaryDirectory(prefix="edgelat-run-") as tmp:
            self.transport.put(lib, shipped[0])
            for i, array in enumerate(inputs):
                local = Path(tmp) / f"in-{i}.npy"
                np.save(local, np.ascontiguousarray(array))
                shipped.append(self.remote_path(local.name))
                self.transport.put(local, shipped[-1])
            try:
                args = {"lib": shipped[0], "inputs": shipped[1:], "kernel": kernel, "outputs": [list(o) for o in outputs]}
                remote_outs = [str(p) for p in self.request("run", args, timeout=timeout)["outputs"]]
                shipped += remote_outs
                results = []
                for i, remote in enumerate(remote_outs):
                    local = Path(tmp) / f"out-{i}.npy"
                    self.transport.get(remote, local)
                    results.append(np.load(local))
            finally:
                if self.process is not None and self.process.poll() is None:
                    self.request("remove", {"paths": shipped}, timeout=30)
        return results

    def send_raw(self, line: str) -> None:
        """Write one raw line (tests use this to send garbage)."""
        assert self.process is not None, "start() first"
        try:
            self.process.write_line(line)
        except TransportError as exc:
            code = self.process.wait(2.0)
            if code is not None:
                raise AgentCrashedError(f"the agent on {self.transport.name} exited (code {code})", self.process.stderr_tail()) from exc
            raise

    def read_reply(self, timeout: float | None) -> dict[str, Any]:
        assert self.process is not None, "start() first"
        try:
            line = self.process.read_line(timeout)
        except TimeoutError as exc:
            raise AgentTimeoutError(f"the agent on {self.transport.name} did not answer in {timeout} s") from exc
        if line is None:
            code = self.process.wait(2.0)
            raise AgentCrashedError(f"the agent on {self.transport.name} exited (code {code})", self.process.stderr_tail())
        try:
            reply = json.loads(line)
        except ValueError as exc:
            raise AgentError(f"the agent on {self.transport.name} sent a line that is not JSON: {line[:200]!r}") from exc
        if not isinstance(reply, dict):
            raise AgentError(f"the agent on {self.transport.name} sent {reply!r}, not an object")
        return reply

    def request(self, cmd: str, args: Mapping[str, Any] | None = None, *, timeout: float | None = 120.0) -> dict[str, Any]:
        """Send one request and return its result; an error reply raises AgentReplyError.

        Before a request that loads a library, an agent that has loaded ``max_libraries`` is replaced by a fresh
        one (in the same directory, so shipped files stay)."""
        if cmd in _LOADING and self.libraries >= self.max_libraries:
            log.info("%s: the agent has loaded %d libraries; starting a fresh one", self.transport.name, self.libraries)
            self.restart()
        req_id = next(self._ids)
        self.send_raw(json.dumps({"v": self.protocol, "id": req_id, "cmd": cmd, "args": dict(args or {})}))
        reply = self.read_reply(timeout)
        if reply.get("id") != req_id:
            raise AgentError(f"the agent answered request {reply.get('id')!r} when {req_id} was asked")
        self.libraries = int(reply.get("libraries") or 0)
        if not reply.get("ok"):
            error = reply.get("error") or {}
            if error.get("type") == "protocol_mismatch":
                raise ProtocolMismatchError(
                    f"protocol mismatch on {self.transport.name}: host speaks {self.protocol}, "
                    f"agent speaks {error.get('agent_protocol')}; update edgelat on the host"
                )
            raise AgentReplyError(cmd, error)
        result = reply.get("result")
        return result if isinstance(result, dict) else {"value": result}
