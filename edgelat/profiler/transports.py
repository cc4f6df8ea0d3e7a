"""Transports: how the host reaches a device. One interface, two implementations, and the kinds
(:data:`TRANSPORTS`) that say which one a device uses and what settings it keeps.

:class:`LocalTransport` runs on this machine with ``subprocess``; :class:`SSHTransport`
runs over paramiko. Both can run a command (an argv list, never a shell string), copy a
file either way, and open a long-lived process with line-based stdin/stdout, which is
what the agent protocol runs over.

SSH host keys are checked against the workspace's ``known_hosts``: an unknown host is
refused with a message saying how to trust it, a changed key is always refused.
"""

from __future__ import annotations

import collections
import hashlib
import os
import queue
import shlex
import shutil
import subprocess
import threading
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import paramiko

from edgelat.errors import (
    ChangedHostKeyError,
    RemoteCommandError,
    TransportError,
    UnknownHostKeyError,
    UsageError,
)
from edgelat.registry import Registry

__all__ = [
    "TRANSPORTS",
    "CommandResult",
    "LocalKind",
    "LocalTransport",
    "NoConnection",
    "SSHKind",
    "TransportKind",
    "Process",
    "SSHConfig",
    "SSHTransport",
    "Transport",
    "fingerprint",
]


@dataclass(frozen=True)
class CommandResult:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str


def _command_line(argv: Sequence[str], env: Mapping[str, str] | None) -> str:
    """One shell-safe command line: every word quoted, environment set through ``env``."""
    words = [str(a) for a in argv]
    if env:
        for key in env:
            if not key.isidentifier():
                raise ValueError(f"bad environment variable name {key!r}")
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
    return shlex.join(words)


class Process:
    """A long-lived process on a device with line-based stdin/stdout.

    A reader thread moves stdout lines into a queue (so reads can time out the same way
    on every transport) and another keeps the last lines of stderr for error messages.
    """

    def __init__(self, stdin: IO[bytes], stdout: IO[bytes], stderr: IO[bytes], describe: str) -> None:
        self._stdin = stdin
        self._lines: queue.Queue[bytes | None] = queue.Queue()
        self._stderr: collections.deque[str] = collections.deque(maxlen=200)
        self.describe = describe
        self._threads = [
            threading.Thread(target=self._pump_stdout, args=(stdout,), daemon=True),
            threading.Thread(target=self._pump_stderr, args=(stderr,), daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _pump_stdout(self, stream: IO[bytes]) -> None:
        try:
            for line in iter(stream.readline, b""):
                self._lines.put(line)
        except (OSError, ValueError, EOFError):
            pass
        finally:
            self._lines.put(None)

    def _pump_stderr(self, stream: IO[bytes]) -> None:
        try:
            for line in iter(stream.readline, b""):
                self._stderr.append(line.decode(errors="replace").rstrip("\n"))
        except (OSError, ValueError, EOFError):
            pass

    def write_line(self, line: str) -> None:
        try:
            self._stdin.write(line.encode() + b"\n")
            self._stdin.flush()
        except (OSError, ValueError, EOFError) as exc:
            raise TransportError(f"cannot write to {self.describe}: {exc}") from exc

    def read_line(self, timeout: float | None) -> str | None:
        """The next stdout line; None at end of output. Raises TimeoutError."""
        try:
            item = self._lines.get(timeout=timeout)
        except queue.Empty:
            raise TimeoutError(f"no output from {self.describe} in {timeout} s") from None
        if item is None:
            self._lines.put(None)  # stay at end of output for later reads
            return None
        return item.decode(errors="replace")

    def stderr_tail(self, lines: int = 20) -> str:
        self._threads[1].join(timeout=0.5)
        return "\n".join(list(self._stderr)[-lines:])

    @abstractmethod
    def poll(self) -> int | None: ...

    @abstractmethod
    def kill(self) -> None: ...

    @abstractmethod
    def wait(self, timeout: float) -> int | None: ...


class _LocalProcess(Process):
    def __init__(self, popen: subprocess.Popen[bytes], describe: str) -> None:
        self._popen = popen
        assert popen.stdin and popen.stdout and popen.stderr
        super().__init__(popen.stdin, popen.stdout, popen.stderr, describe)

    def poll(self) -> int | None:
        return self._popen.poll()

    def kill(self) -> None:
        if self._popen.poll() is None:
            self._popen.kill()
        self._popen.wait(timeout=10)

    def wait(self, timeout: float) -> int | None:
        try:
            return self._popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None


class _SSHProcess(Process):
    def __init__(self, channel: paramiko.Channel, describe: str) -> None:
        self._channel = channel
        super().__init__(channel.makefile_stdin("wb"), channel.makefile("rb"), channel.makefile_stderr("rb"), describe)

    def poll(self) -> int | None:
        return self._channel.recv_exit_status() if self._channel.exit_status_ready() else None

    def kill(self) -> None:
        # Closing the channel hangs up the remote process (SIGHUP through sshd).
        self._channel.close()

    def wait(self, timeout: float) -> int | None:
        if self._channel.status_event.wait(timeout):
            return self._channel.recv_exit_status()
        return None


class Transport(ABC):
    """Run commands, copy files and open processes on one device."""

    name: str

    @abstractmethod
    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = 600.0, check: bool = True
    ) -> CommandResult:
        """Run ``argv`` to completion. With ``check``, a non-zero exit raises RemoteCommandError."""

    @abstractmethod
    def put(self, local: Path, remote: str) -> None: ...

    @abstractmethod
    def get(self, remote: str, local: Path) -> None: ...

    @abstractmethod
    def open_process(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process: ...

    def close(self) -> None:
        """Release the connection; safe to call twice."""

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _result(self, argv: Sequence[str], code: int, out: bytes, err: bytes, check: bool) -> CommandResult:
        result = CommandResult(list(argv), code, out.decode(errors="replace"), err.decode(errors="replace"))
        if check and code != 0:
            raise RemoteCommandError(argv, code, result.stderr, where=self.name)
        return result


class LocalTransport(Transport):
    """This machine, through ``subprocess`` (no shell is involved)."""

    def __init__(self) -> None:
        self.name = "local"

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = 600.0, check: bool = True
    ) -> CommandResult:
        try:
            proc = subprocess.run([str(a) for a in argv], capture_output=True, timeout=timeout, env=_merged_env(env))
        except FileNotFoundError as exc:
            raise RemoteCommandError(argv, 127, str(exc), where=self.name) from exc
        except subprocess.TimeoutExpired as exc:
            raise TransportError(f"command {shlex.join(map(str, argv))!r} timed out after {timeout} s on local") from exc
        return self._result(argv, proc.returncode, proc.stdout, proc.stderr, check)

    def put(self, local: Path, remote: str) -> None:
        shutil.copyfile(local, remote)

    def get(self, remote: str, local: Path) -> None:
        shutil.copyfile(remote, local)

    def open_process(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        try:
            popen = subprocess.Popen(
                [str(a) for a in argv],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=_merged_env(env),
                start_new_session=True,  # Ctrl-C reaches the host, which then stops the agent cleanly
            )
        except OSError as exc:
            raise TransportError(f"cannot start {argv[0]!r} on local: {exc}") from exc
        return _LocalProcess(popen, f"{argv[0]} on local")


def _merged_env(env: Mapping[str, str] | None) -> dict[str, str] | None:
    return None if not env else {**os.environ, **env}


@dataclass(frozen=True)
class SSHConfig:
    """How to reach a device over SSH."""

    host: str
    port: int = 22
    # Login name; None means the local user name.
    user: str | None = None
    # Private key file; None means ssh-agent and the user's default keys.
    key_file: str | None = None
    # Jump host as ``[user@]host[:port]``, reached with the same keys and known_hosts.
    jump: str | None = None
    connect_timeout: float = 15.0
    # Seconds between keepalive packets, so idle NATs and firewalls keep the session.
    keepalive: int = 30


def fingerprint(key: paramiko.PKey) -> str:
    import base64

    digest = hashlib.sha256(key.asbytes()).digest()
    return f"{key.get_name()} SHA256:{base64.b64encode(digest).decode().rstrip('=')}"


def _known_host_name(host: str, port: int) -> str:
    return host if port == 22 else f"[{host}]:{port}"


class _HostKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse unknown hosts with instructions, or record them when the user said to trust them."""

    def __init__(self, known_hosts: Path, trust_new: bool, hint: str) -> None:
        self.known_hosts = known_hosts
        self.trust_new = trust_new
        self.hint = hint

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        if not self.trust_new:
            raise UnknownHostKeyError(
                f"the host key of {hostname} is not known ({fingerprint(key)}); if this is the right machine, trust it with {self.hint}"
            )
        keys = paramiko.HostKeys()
        if self.known_hosts.exists():
            keys.load(str(self.known_hosts))
        keys.add(hostname, key.get_name(), key)
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        # Written beside it and renamed over it: a crash never leaves a half-written known_hosts.
        partial = self.known_hosts.with_name(f".{self.known_hosts.name}.{os.getpid()}.tmp")
        keys.save(str(partial))
        os.replace(partial, self.known_hosts)


class SSHTransport(Transport):
    """A device reached over SSH with paramiko; host keys verified against ``known_hosts``."""

    def __init__(
        self,
        config: SSHConfig,
        known_hosts: Path,
        *,
        trust_new_host: bool = False,
        name: str | None = None,
        trust_hint: str = "--trust-new-host",
    ) -> None:
        self.config = config
        self.name = name or config.host
        self.known_hosts = known_hosts
        self._clients: list[paramiko.SSHClient] = []
        self._sftp: paramiko.SFTPClient | None = None
        sock = None
        if config.jump:
            jump = self._parse_jump(config.jump)
            jump_client = self._connect(jump, None, trust_new_host, trust_hint)
            jump_transport = jump_client.get_transport()
            assert jump_transport is not None
            try:
                sock = jump_transport.open_channel(
                    "direct-tcpip", (config.host, config.port), ("127.0.0.1", 0), timeout=config.connect_timeout
                )
            except (paramiko.SSHException, OSError) as exc:
                self.close()
                raise TransportError(f"jump host {config.jump} cannot reach {config.host}:{config.port}: {exc}") from exc
        self._client = self._connect(config, sock, trust_new_host, trust_hint)

    def _parse_jump(self, spec: str) -> SSHConfig:
        user, _, hostport = spec.rpartition("@")
        host, _, port = hostport.partition(":")
        if hostport.startswith("["):  # [ipv6]:port
            host, _, port = hostport[1:].partition("]:")
        return SSHConfig(
            host=host,
            port=int(port) if port else 22,
            user=user or self.config.user,
            key_file=self.config.key_file,
            connect_timeout=self.config.connect_timeout,
            keepalive=self.config.keepalive,
        )

    def _connect(self, cfg: SSHConfig, sock: Any, trust_new: bool, hint: str) -> paramiko.SSHClient:
        client = paramiko.SSHClient()
        self._clients.append(client)
        if self.known_hosts.exists():
            client.load_host_keys(str(self.known_hosts))
        client.set_missing_host_key_policy(_HostKeyPolicy(self.known_hosts, trust_new, hint))
        try:
            client.connect(
                cfg.host,
                port=cfg.port,
                username=cfg.user,
                key_filename=cfg.key_file,
                allow_agent=True,
                look_for_keys=cfg.key_file is None,
                timeout=cfg.connect_timeout,
                banner_timeout=cfg.connect_timeout,
                auth_timeout=cfg.connect_timeout,
                sock=sock,
            )
        except paramiko.BadHostKeyException as exc:
            self.close()
            raise ChangedHostKeyError(
                f"REFUSED: the host key of {cfg.host}:{cfg.port} has CHANGED since it was trusted "
                f"(now {fingerprint(exc.key)}, recorded {fingerprint(exc.expected_key)}). "
                f"Someone may be intercepting the connection, or the device was reinstalled. "
                f"If you are sure, remove its line from {self.known_hosts} and trust it again."
            ) from None
        except (UnknownHostKeyError, ChangedHostKeyError):
            self.close()
            raise
        except (paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise TransportError(
                f"cannot connect to {cfg.user + '@' if cfg.user else ''}{cfg.host}:{cfg.port}: {type(exc).__name__}: {exc}"
            ) from exc
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(cfg.keepalive)
        return client

    def _exec(self, argv: Sequence[str], env: Mapping[str, str] | None, timeout: float | None) -> paramiko.Channel:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise TransportError(f"the SSH connection to {self.name} is closed")
        try:
            channel = transport.open_session(timeout=self.config.connect_timeout)
            channel.settimeout(timeout)
            channel.exec_command(_command_line(argv, env))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"cannot run {argv[0]!r} on {self.name}: {exc}") from exc
        return channel

    def run(
        self, argv: Sequence[str], *, env: Mapping[str, str] | None = None, timeout: float | None = 600.0, check: bool = True
    ) -> CommandResult:
        channel = self._exec(argv, env, timeout)
        try:
            out, err = _drain(channel)
            code = channel.recv_exit_status()
        except TimeoutError as exc:
            channel.close()
            raise TransportError(f"command {shlex.join(map(str, argv))!r} timed out after {timeout} s on {self.name}") from exc
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"connection to {self.name} lost while running {argv[0]!r}: {exc}") from exc
        finally:
            channel.close()
        return self._result(argv, code, out, err, check)

    def _sftp_client(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            try:
                self._sftp = self._client.open_sftp()
            except (paramiko.SSHException, OSError, EOFError) as exc:
                raise TransportError(f"cannot open SFTP to {self.name}: {exc}") from exc
        return self._sftp

    def put(self, local: Path, remote: str) -> None:
        try:
            self._sftp_client().put(str(local), remote)
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"cannot copy {local} to {self.name}:{remote}: {exc}") from exc

    def get(self, remote: str, local: Path) -> None:
        try:
            self._sftp_client().get(remote, str(local))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise TransportError(f"cannot copy {self.name}:{remote} to {local}: {exc}") from exc

    def open_process(self, argv: Sequence[str], *, env: Mapping[str, str] | None = None) -> Process:
        channel = self._exec(argv, env, None)
        return _SSHProcess(channel, f"{argv[0]} on {self.name}")

    def close(self) -> None:
        if self._sftp is not None:
            self._sftp.close()
            self._sftp = None
        for client in reversed(self._clients):
            client.close()
        self._clients.clear()


def _drain(channel: paramiko.Channel) -> tuple[bytes, bytes]:
    """Read stdout and stderr to the end; stderr in a thread so neither window fills up."""
    err = bytearray()
    stderr = channel.makefile_stderr("rb")

    def pump() -> None:
        try:
            err.extend(stderr.read())
        except (TimeoutError, OSError, paramiko.SSHException):
            pass

    thread = threading.Thread(target=pump, daemon=True)
    thread.start()
    out = channel.makefile("rb").read()  # raises socket.timeout past the channel's timeout
    thread.join(timeout=5.0)
    return bytes(out), bytes(err)


class TransportKind:
    """How devices of one kind are reached: the settings a device of this kind stores (JSON in the
    inventory), how to open its transport, and how to show it. A new transport (adb for Android, say) is
    one Transport subclass and one TransportKind registered in :data:`TRANSPORTS`."""

    name: str = ""
    # Whether anything can be opened at all (an adapted device has no connection).
    connects: bool = True

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        """The settings validated and normalised (a UsageError says what is wrong)."""
        return dict(settings)

    def open(self, settings: Mapping[str, Any], known_hosts: Path, *, trust_new_host: bool, name: str, trust_hint: str) -> Transport:
        raise NotImplementedError

    def address(self, settings: Mapping[str, Any]) -> str:
        raise NotImplementedError

    def shares_host_cpu(self, settings: Mapping[str, Any]) -> bool:
        """Whether work on this host (builds) competes with timing on the device."""
        return False

    def ip(self, settings: Mapping[str, Any]) -> str | None:
        """The device's IP address as this host reaches it, if it has one (to tell a build worker on it)."""
        return None


class LocalKind(TransportKind):
    name = "local"

    def open(self, settings: Mapping[str, Any], known_hosts: Path, *, trust_new_host: bool, name: str, trust_hint: str) -> Transport:
        return LocalTransport()

    def address(self, settings: Mapping[str, Any]) -> str:
        return "(this machine)"

    def shares_host_cpu(self, settings: Mapping[str, Any]) -> bool:
        return True


class SSHKind(TransportKind):
    name = "ssh"
    FIELDS = ("host", "port", "user", "key_file", "jump")

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        host, port = settings.get("host"), settings.get("port")
        port = 22 if port is None else int(port)
        if not isinstance(host, str) or not host or host.startswith("-") or any(c.isspace() for c in host):
            raise UsageError(f"bad host {host!r}")
        if not 1 <= port <= 65535:
            raise UsageError(f"bad port {port}: must be 1-65535")
        unknown = sorted(set(settings) - set(self.FIELDS))
        if unknown:
            raise UsageError(f"unknown SSH setting(s) {', '.join(unknown)}; known: {', '.join(self.FIELDS)}")
        return {"host": host, "port": port, **{k: settings[k] for k in ("user", "key_file", "jump") if settings.get(k) is not None}}

    def config(self, settings: Mapping[str, Any]) -> SSHConfig:
        return SSHConfig(**{k: v for k, v in settings.items() if k in self.FIELDS and v is not None})

    def open(self, settings: Mapping[str, Any], known_hosts: Path, *, trust_new_host: bool, name: str, trust_hint: str) -> Transport:
        return SSHTransport(self.config(settings), known_hosts, trust_new_host=trust_new_host, name=name, trust_hint=trust_hint)

    def address(self, settings: Mapping[str, Any]) -> str:
        c = self.config(settings)
        return f"{c.user + '@' if c.user else ''}{c.host}:{c.port}" + (f" via {c.jump}" if c.jump else "")

    def ip(self, settings: Mapping[str, Any]) -> str | None:
        import socket

        c = self.config(settings)
        if c.jump:
            return None  # resolved on the far side of the jump host
        try:
            return socket.gethostbyname(c.host)
        except OSError:
            return None

    def shares_host_cpu(self, settings: Mapping[str, Any]) -> bool:
        """Over SSH to a loopback address (not through a jump host, whose tunnel ends elsewhere)."""
        import ipaddress

        c = self.config(settings)
        if c.jump:
            return False
        if c.host == "localhost":
            return True
        try:
            return ipaddress.ip_address(c.host).is_loopback
        except ValueError:
            return False


class NoConnection(TransportKind):
    """Devices known only through predictions (adapted from another device's models)."""

    name = "none"
    connects = False

    def open(self, settings: Mapping[str, Any], known_hosts: Path, *, trust_new_host: bool, name: str, trust_hint: str) -> Transport:
        raise UsageError(f"{name} has no connection")

    def address(self, settings: Mapping[str, Any]) -> str:
        return "(no connection)"


class GroupKind(TransportKind):
    """A group of identical devices (``edgelat device group add``), reached through its members: a campaign on
    the group is shared among them (:mod:`edgelat.profiler.fleet`); anything else runs on one member."""

    name = "group"
    connects = False

    def check(self, settings: Mapping[str, Any]) -> dict[str, Any]:
        members = settings.get("members")
        if not isinstance(members, list) or not all(isinstance(m, str) for m in members):
            raise UsageError(f"a group's members must be a list of device names, got {members!r}")
        return {"members": list(members)}

    def open(self, settings: Mapping[str, Any], known_hosts: Path, *, trust_new_host: bool, name: str, trust_hint: str) -> Transport:
        members = ", ".join(settings.get("members", [])) or "none yet"
        raise UsageError(
            f"{name} is a group of identical devices (members: {members}): `profile {name}` shares a campaign among them and "
            f"`train`/`predict {name}` use its models; measure, probe or set up one member by its own name"
        )

    def address(self, settings: Mapping[str, Any]) -> str:
        return "group of " + (", ".join(settings.get("members", [])) or "no members")


TRANSPORTS: Registry[TransportKind] = Registry("transport")
for _kind in (LocalKind(), SSHKind(), NoConnection(), GroupKind()):
    TRANSPORTS.register(_kind.name, _kind)
