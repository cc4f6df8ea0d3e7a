"""The exception tree of edgelat.

Every error edgelat raises on purpose derives from :class:`EdgelatError`::

    EdgelatError
    ├── UsageError                 bad input from the user (CLI exit code 2)
    │   ├── UnknownPresetError
    │   ├── UnknownDeviceError
    │   ├── DuplicateDeviceError
    │   ├── UnknownOpError
    │   ├── ModelImportError       a network file or module that cannot be imported (names the node)
    │   ├── DamagedFileError       a file the workspace keeps that cannot be read; says what to do
    │   │   └── ModelFileError     a saved latency model (missing, damaged, another format): retrain
    │   └── StoreUnreachableError  a team store that cannot be reached, refuses the credentials or lacks the database
    ├── HostKeyError               SSH host key problems (never silently accepted)
    │   ├── UnknownHostKeyError    host not in known_hosts; says how to trust it
    │   └── ChangedHostKeyError    key differs from the recorded one; always refused
    ├── TransportError             could not connect, copy or run
    │   └── RemoteCommandError     a remote command failed: command, exit code, stderr tail
    ├── AgentError                 the device agent misbehaved
    │   ├── AgentReplyError        the agent answered a request with an error (its type and message)
    │   ├── ProtocolMismatchError  host and agent speak different protocol versions
    │   ├── AgentCrashedError      the agent process died (stderr tail attached)
    │   └── AgentTimeoutError      no reply in time
    ├── BuildError                 TVM could not compile or export a kernel
    │   └── BuildTimeoutError      a build in a worker ran past its time limit
    ├── CampaignInterrupted        a campaign stopped early (all measured so far is stored; --resume)
    └── StoreError                 the workspace store is unusable
        └── StoreLostError         the store went away while in use (a server stopped, a file locked too long)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = [
    "AgentCrashedError",
    "AgentError",
    "AgentReplyError",
    "AgentTimeoutError",
    "BuildError",
    "BuildTimeoutError",
    "CampaignInterrupted",
    "ChangedHostKeyError",
    "DamagedFileError",
    "DuplicateDeviceError",
    "EdgelatError",
    "HostKeyError",
    "ModelFileError",
    "ModelImportError",
    "ProtocolMismatchError",
    "RemoteCommandError",
    "RequestRefusedError",
    "StoreError",
    "StoreLostError",
    "StoreUnreachableError",
    "TransportError",
    "UnknownDeviceError",
    "UnknownHostKeyError",
    "UnknownOpError",
    "UnknownPresetError",
    "UsageError",
]


class EdgelatError(Exception):
    """Base class of every error edgelat raises on purpose."""


class UsageError(EdgelatError):
    """The user asked for something that cannot be done as asked."""


class UnknownPresetError(UsageError):
    pass


class AlreadyMeetsTargetError(UsageError):
    """Pruning was asked for a network that already meets its latency target (``latency_ms``: measured
    when a device measured it, else predicted)."""

    def __init__(self, message: str, latency_ms: float) -> None:
        super().__init__(message)
        self.latency_ms = latency_ms


class RequestRefusedError(UsageError):
    """``edgelat serve`` refused a request: ``status`` is its HTTP status (401, 413, ...), the message its reason."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


class UnknownDeviceError(UsageError):
    pass


class DuplicateDeviceError(UsageError):
    pass


class UnknownOpError(UsageError):
    pass


class ModelImportError(UsageError):
    """A network (ONNX file or torch module) that cannot be read or imported; the message names the node."""


class DamagedFileError(UsageError):
    """A file the workspace keeps (model, metadata, tuning database) that cannot be read; the message says what to do."""


class ModelFileError(DamagedFileError):
    """A saved latency model that cannot be used; callers add which device's models and that retraining fixes it."""


class HostKeyError(EdgelatError):
    pass


class UnknownHostKeyError(HostKeyError):
    pass


class ChangedHostKeyError(HostKeyError):
    pass


class TransportError(EdgelatError):
    pass


class RemoteCommandError(TransportError):
    """A command on the device exited non-zero."""

    def __init__(self, argv: Sequence[str], exit_code: int, stderr: str, where: str = "") -> None:
        self.argv = list(argv)
        self.exit_code = exit_code
        self.stderr = stderr
        tail = "\n".join(stderr.strip().splitlines()[-10:])
        place = f" on {where}" if where else ""
        super().__init__(
            f"command {' '.join(self.argv)!r} failed{place} with exit code {exit_code}" + (f"; stderr ends with:\n{tail}" if tail else "")
        )


class AgentError(EdgelatError):
    pass


class ProtocolMismatchError(AgentError):
    pass


class AgentCrashedError(AgentError):
    def __init__(self, message: str, stderr_tail: str = "") -> None:
        self.stderr_tail = stderr_tail
        super().__init__(message + (f"; agent stderr ends with:\n{stderr_tail}" if stderr_tail else ""))


class AgentTimeoutError(AgentError):
    pass


class BuildError(EdgelatError):
    pass


class BuildTimeoutError(BuildError):
    """A build in a worker ran past its time limit (the worker is replaced)."""


class OutputMismatchError(EdgelatError):
    """A device computes other outputs than this host's build of the same network."""


class StoreError(EdgelatError):
    pass


class StoreLostError(StoreError):
    """The store went away while in use: what was committed before stays; try again once it is back."""


class StoreUnreachableError(UsageError):
    """A team store (``--store``) that cannot be used as given: no server there, wrong credentials, no such database."""


class AgentReplyError(AgentError):
    """The agent answered a request with an error."""

    def __init__(self, cmd: str, error: Mapping[str, Any]) -> None:
        self.kind = str(error.get("type", "error"))
        self.remote_message = str(error.get("message", ""))
        self.traceback = error.get("traceback")
        super().__init__(f"agent refused {cmd!r}: {self.kind}: {self.remote_message}")


class CampaignInterrupted(EdgelatError):
    """The campaign stopped early; everything measured so far is stored."""

    def __init__(self, campaign_id: int, reason: str) -> None:
        self.campaign_id = campaign_id
        super().__init__(f"campaign {campaign_id} stopped: {reason}. Everything measured so far is stored; continue with --resume")
