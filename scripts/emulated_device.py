#!/usr/bin/env python3
"""An emulated aarch64 Debian device on this machine, reachable over SSH: a Raspberry Pi without a board.

    sudo python3 scripts/emulated_device.py start     # builds the root file system once, then serves it
    edgelat device add emu --preset rpi4 --host 127.0.0.1 --port <port> --user root --key <key> --trust-new-host

It builds (once, cached under ``~/.cache/edgelat/aarch64/<release>``) a Debian arm64 root file system with
python3, venv support and OpenSSH's server, using ``debootstrap``; ``qemu-user-static`` registered with
binfmt_misc runs its aarch64 programs transparently. ``start`` lays a writable layer over the cached file
system (so a device's installs never touch the cache), generates host and client keys, and runs the
file system's own ``sshd`` (an aarch64 binary, emulated) chrooted in it on a free loopback port. Everything
a session runs there is aarch64 code: ``uname -m`` says aarch64, Python is Debian's arm64 build, TVM is
PyPI's aarch64 wheel. Timings under emulation mean nothing; whether the right code runs does.

Needs root (chroot, mounts), and ``apt-get install qemu-user-static binfmt-support debootstrap``.
Standard library only: the tests import it, and a user runs it with the system's python3.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

RELEASE = "bookworm"
PACKAGES = ("python3", "python3-venv", "openssh-server")
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "edgelat" / "aarch64"
BINFMT = Path("/proc/sys/fs/binfmt_misc")
# Paths inside the root file system.
_SSHD_CONFIG = "/etc/ssh/edgelat_sshd_config"
_HOST_KEY = "/etc/ssh/edgelat_host_ed25519"


class EmulationUnavailable(RuntimeError):
    """This machine cannot run the emulated device; the message says what is missing."""


def missing() -> str | None:
    """What this machine lacks to run the emulated device (None when nothing)."""
    if os.geteuid() != 0:
        return "needs root (chroot and mounts)"
    tools = [t for t in ("debootstrap", "qemu-aarch64-static", "ssh-keygen") if shutil.which(t) is None]
    if tools:
        return f"missing {', '.join(tools)} (apt-get install qemu-user-static binfmt-support debootstrap openssh-client)"
    return None


def enable_binfmt() -> None:
    """Make the kernel run aarch64 ELF files through qemu (mounting binfmt_misc first if needed)."""
    if not (BINFMT / "register").exists():
        subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], check=True, capture_output=True)
    entry = BINFMT / "qemu-aarch64"
    if not entry.exists() or "enabled" not in entry.read_text():
        subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], check=True, capture_output=True)
    if "F" not in _flags(entry.read_text()):
        # Without F the interpreter is looked up inside the chroot, where it is not.
        raise EmulationUnavailable("qemu-aarch64's binfmt entry lacks the F (fix binary) flag; reinstall qemu-user-static")


def _flags(entry: str) -> str:
    match = re.search(r"^flags:\s*(\S*)", entry, re.M)
    return match.group(1) if match else ""


def _mirror() -> str:
    """The Debian mirror this machine's apt sources name (deb822 or one-line style)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    for path in sources:
        text = path.read_text(errors="replace") if path.is_file() else ""
        for match in re.finditer(
            r"^(?:URIs:\s*|deb\s+(?:\[[^\]]*\]\s+)?)(\S+/debian)/?\s*$|^deb\s+(?:\[[^\]]*\]\s+)?(\S+/debian)/?\s", text, re.M
        ):
            return match.group(1) or match.group(2)
    return "http://deb.debian.org/debian"


def rootfs(release: str = RELEASE, cache: Path = CACHE, log: Path | None = None) -> Path:
    """The cached arm64 root file system of ``release``, built with debootstrap the first time."""
    done = cache / release / "rootfs"
    if (done / ".edgelat-complete").exists():
        return done
    reason = missing()
    if reason:
        raise EmulationUnavailable(reason)
    enable_binfmt()
    (cache / release).mkdir(parents=True, exist_ok=True)
    with open(cache / release / "build.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # a build already running (another process): wait, then use its tree
        if (done / ".edgelat-complete").exists():
            return done
        return _build(release, cache, log, done)


def wait_for_build(release: str = RELEASE, cache: Path = CACHE) -> None:
    """Return once no process is building the root file system of ``release`` (at once if none is)."""
    lock = cache / release / "build.lock"
    if lock.exists():
        with open(lock) as f:
            fcntl.flock(f, fcntl.LOCK_EX)


def _build(release: str, cache: Path, log: Path | None, done: Path) -> Path:
    partial = cache / release / "rootfs.partial"
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    # First stage with the host's tools (download, unpack); second stage inside, emulated (configure).
    first = [
        "debootstrap",
        "--foreign",
        "--arch=arm64",
        "--variant=minbase",
        f"--include={','.join(PACKAGES)}",
        release,
        str(partial),
        _mirror(),
    ]
    second = ["chroot", str(partial), "/debootstrap/debootstrap", "--second-stage"]
    for cmd in (first, second):
        with open(log or os.devnull, "ab") as out:
            code = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode
        if code != 0:
            raise EmulationUnavailable(f"{' '.join(cmd[:2])} failed (exit {code}); see {log or 'its output'}")
    for deb in (partial / "var/cache/apt/archives").glob("*.deb"):
        deb.unlink()
    (partial / ".edgelat-complete").write_text(" ".join(first) + "\n")
    shutil.rmtree(done, ignore_errors=True)
    partial.rename(done)
    return done


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class EmulatedDevice:
    """The cached root file system under a writable layer in ``work``, its sshd on ``port``."""

    work: Path
    port: int
    base: Path
    client_key: Path = field(init=False)
    user: str = "root"
    process: subprocess.Popen[bytes] | None = None
    _mounts: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.client_key = self.work / "client_ed25519"

    @property
    def root(self) -> Path:
        return self.work / "merged"

    def start(self) -> EmulatedDevice:
        self.work.mkdir(parents=True, exist_ok=True)
        enable_binfmt()
        self._layer()
        try:
            self._mount("proc", self.root / "proc", "-t", "proc")
            self._mount("/dev", self.root / "dev", "--rbind")
            self._mount("tmpfs", self.root / "run", "-t", "tmpfs")
            self._keys()
            self._serve()
        except BaseException:
            self.stop()
            raise
        return self

    def _layer(self) -> None:
        """A copy-on-write view of the cached file system (overlayfs; a plain copy where overlays are refused)."""
        upper, scratch = self.work / "upper", self.work / "overlay-work"
        for d in (upper, scratch, self.root):
            d.mkdir(exist_ok=True)
        options = f"lowerdir={self.base},upperdir={upper},workdir={scratch}"
        if subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, str(self.root)], capture_output=True).returncode == 0:
            self._mounts.append(self.root)
        else:
            self.root.rmdir()
            subprocess.run(["cp", "-a", "--reflink=auto", str(self.base), str(self.root)], check=True)

    def _mount(self, source: str, target: Path, *options: str) -> None:
        target.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", *options, source, str(target)], check=True, capture_output=True)
        self._mounts.append(target)

    def _keys(self) -> None:
        for key in (self.client_key, self.work / "host_ed25519"):
            if not key.exists():
                subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        shutil.copy(self.work / "host_ed25519", self.root / _HOST_KEY.lstrip("/"))
        os.chmod(self.root / _HOST_KEY.lstrip("/"), 0o600)
        ssh_dir = self.root / "root" / ".ssh"
        ssh_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (ssh_dir / "authorized_keys").write_text(self.client_key.with_suffix(".pub").read_text())
        (self.root / _SSHD_CONFIG.lstrip("/")).write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {_HOST_KEY}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "StrictModes no",
                    "Subsystem sftp internal-sftp",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )

    def _serve(self) -> None:
        (self.root / "run" / "sshd").mkdir(exist_ok=True)
        log = self.work / "sshd.log"
        self.process = subprocess.Popen(
            ["chroot", str(self.root), "/usr/sbin/sshd", "-D", "-e", "-f", _SSHD_CONFIG], stderr=open(log, "ab"), start_new_session=True
        )
        deadline = time.time() + 120  # sshd starts in a second natively, tens of seconds emulated on a busy host
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise EmulationUnavailable(f"the emulated sshd exited: {log.read_text()[-800:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1.0) as s:
                    if s.recv(4).startswith(b"SSH"):
                        return
            except OSError:
                time.sleep(0.2)
        raise EmulationUnavailable(f"the emulated sshd did not answer on port {self.port} within 120 s")

    def stop(self) -> None:
        """Stop sshd and every session it serves, then undo the mounts (innermost first)."""
        if self.process is not None:
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.process.wait(30)
            self.process = None
        self._kill_chrooted()
        for target in reversed(self._mounts):
            subprocess.run(["umount", "-R", "-l", str(target)], capture_output=True)
        self._mounts.clear()

    def _kill_chrooted(self) -> None:
        """Sessions' processes (agents) left their group; find them by their root directory."""
        root = str(self.root.resolve())
        for proc in Path("/proc").glob("[0-9]*"):
            try:
                if os.readlink(proc / "root") == root:
                    os.kill(int(proc.name), signal.SIGKILL)
            except OSError:
                continue

    def add_command(self, name: str = "emu", preset: str = "rpi4") -> str:
        return (
            f"edgelat device add {name} --preset {preset} --host 127.0.0.1 --port {self.port} "
            f"--user {self.user} --key {self.client_key} --trust-new-host"
        )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the cached root file system (once) and print its path")
    sub.add_parser("wait", help="wait until no other process is building the root file system")
    start = sub.add_parser("start", help="serve the emulated device over SSH until interrupted")
    start.add_argument("--port", type=int, default=0, help="loopback port (default: a free one)")
    start.add_argument("--work", type=Path, default=None, help="folder for its writable layer and keys (default: a temporary one)")
    args = parser.parse_args()
    if args.command == "wait":
        wait_for_build()
        return 0
    try:
        base = rootfs(log=CACHE / "debootstrap.log")
        if args.command == "build":
            print(base)
            return 0
        work = args.work or Path(tempfile.mkdtemp(prefix="edgelat-emu-"))
        device = EmulatedDevice(work, args.port or free_port(), base).start()
    except (EmulationUnavailable, subprocess.CalledProcessError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"an emulated aarch64 Debian ({RELEASE}) answers on 127.0.0.1:{device.port}; add it with:\n  {device.add_command()}")
    print("Ctrl-C stops it.", flush=True)
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    try:
        signal.sigwait({signal.SIGINT, signal.SIGTERM})
    finally:
        device.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
