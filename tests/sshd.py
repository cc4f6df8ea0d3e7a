"""A private OpenSSH server on 127.0.0.1 for tests: generated keys, own config, own port."""

from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path


def find_sshd() -> str | None:
    return shutil.which("sshd") or next((p for p in ("/usr/sbin/sshd", "/usr/local/sbin/sshd") if os.path.exists(p)), None)


def free_port() -> int:
    """A port nothing listens on now (distributed's ``open_port``: the scripts/ that run before install keep their own)."""
    from distributed.utils import open_port

    return int(open_port("127.0.0.1"))


def keygen(path: Path, kind: str = "ed25519") -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", kind, "-N", "", "-f", str(path)], check=True)
    return path


@dataclass
class SSHServer:
    root: Path
    port: int
    user: str
    client_key: Path
    host_key: Path
    process: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "sshd_config"

    def write_config(self) -> None:
        self.config.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    "ListenAddress 127.0.0.1",
                    f"HostKey {self.host_key}",
                    f"AuthorizedKeysFile {self.root / 'authorized_keys'}",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PubkeyAuthentication yes",
                    "PermitRootLogin yes",
                    "UsePAM no",
                    "StrictModes no",
                    f"PidFile {self.root / 'sshd.pid'}",
                    "Subsystem sftp internal-sftp",
                    "AllowTcpForwarding yes",
                    "LogLevel ERROR",
                    "",
                ]
            )
        )

    def start(self) -> SSHServer:
        Path("/run/sshd").mkdir(parents=True, exist_ok=True)  # privilege separation dir, needed as root
        self.write_config()
        # -D: stay in the foreground so the test owns the process; -e: log to stderr.
        self.process = subprocess.Popen(
            [find_sshd() or "sshd", "-D", "-e", "-f", str(self.config)], stderr=open(self.root / "sshd.log", "ab")
        )
        deadline = time.time() + 15
        while time.time() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"sshd exited: {(self.root / 'sshd.log').read_text()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5) as s:
                    if s.recv(4).startswith(b"SSH"):
                        return self
            except OSError:
                time.sleep(0.05)
        raise RuntimeError(f"sshd did not come up on port {self.port}")

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(10)
        self.process = None

    def kill(self) -> None:
        """Drop the server and every session it serves, as a crashed or rebooted device would."""
        import psutil

        if self.process is None:
            return
        parent = psutil.Process(self.process.pid)
        for proc in [*parent.children(recursive=True), parent]:
            try:
                proc.kill()
            except psutil.NoSuchProcess:
                pass
        self.process.wait(10)
        self.process = None

    def regenerate_host_key(self) -> None:
        """Give the server a new identity (what a reinstalled device or an attacker looks like)."""
        self.stop()
        for p in (self.host_key, self.host_key.with_suffix(".pub")):
            p.unlink(missing_ok=True)
        keygen(self.host_key)
        self.start()


def start_sshd(root: Path) -> SSHServer:
    root.mkdir(parents=True, exist_ok=True)
    host_key = keygen(root / "host_ed25519")
    client_key = keygen(root / "client_ed25519")
    (root / "authorized_keys").write_text(client_key.with_suffix(".pub").read_text())
    return SSHServer(root=root, port=free_port(), user=getpass.getuser(), client_key=client_key, host_key=host_key).start()
