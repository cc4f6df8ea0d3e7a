"""`edgelat device setup`: a device without TVM gets the pinned runtime in a private venv."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from edgelat.errors import UsageError
from edgelat.profiler import inventory, setup
from edgelat.workspace import Workspace
from tests.sshd import SSHServer

pytestmark = pytest.mark.ssh


def test_device_with_tvm_needs_nothing(ws: Workspace, ssh_device: inventory.Device) -> None:
    report = setup.setup_device(ws, ssh_device.name)
    assert report.action == "present" and report.tvm_version.startswith("0.27")
    assert inventory.get_device(ws, ssh_device.name).python == sys.executable


@pytest.mark.slow
@pytest.mark.skipif(not Path("/usr/bin/python3").exists(), reason="needs a second Python without TVM")
def test_offline_install_into_a_private_venv(ws: Workspace, sshd_server: SSHServer, isolated_home: Path) -> None:
    """The system Python has no TVM: wheels go over SFTP into ~/.edgelat/venv-tvm-* and then load."""
    inventory.add_device(ws, "bare", host="127.0.0.1", port=sshd_server.port, user=sshd_server.user,
                         key_file=str(sshd_server.client_key), preset="local", python="/usr/bin/python3")  # fmt: skip
    inventory.trust_device(ws, "bare")
    probe_before = inventory.probe_device(ws, "bare")
    if probe_before["tvm_version"]:
        pytest.skip("/usr/bin/python3 already imports tvm")
    report = setup.setup_device(ws, "bare", offline=True)
    try:
        assert report.action == "installed-offline" and report.tvm_version == "0.27.0.post1"
        assert inventory.get_device(ws, "bare").python == report.python
        assert inventory.probe_device(ws, "bare")["tvm_version"] == "0.27.0.post1"
    finally:
        shutil.rmtree(Path(report.python).parents[1], ignore_errors=True)


def test_unsupported_platform_is_a_clear_error(ws: Workspace, ssh_device: inventory.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    real = setup._inspect
    monkeypatch.setattr(setup, "_inspect", lambda t, p: {**real(t, p), "tvm": None, "machine": "armv7l"})
    with pytest.raises(UsageError, match="armv7l: apache-tvm publishes wheels only for"):
        setup.setup_device(ws, ssh_device.name)


@pytest.mark.parametrize(("libc", "shown"), [(["glibc", "2.24"], "glibc 2.24"), (["", ""], "an unknown C library")])
def test_an_old_or_missing_glibc_is_a_clear_error(
    ws: Workspace, ssh_device: inventory.Device, monkeypatch: pytest.MonkeyPatch, libc: list[str], shown: str
) -> None:
    real = setup._inspect
    monkeypatch.setattr(setup, "_inspect", lambda t, p: {**real(t, p), "tvm": None, "libc": libc})
    with pytest.raises(UsageError, match=f"has {shown}; the apache-tvm wheel \\(manylinux_2_28_.*\\) needs glibc >= 2.28"):
        setup.setup_device(ws, ssh_device.name)


def test_two_processes_setting_devices_up_at_once_download_the_wheels_once(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Two setups at once (two test workers, two terminals) share the host's wheel cache: one downloads while the other
    waits for the lock, then finds the cache complete (both once used one `.partial` folder and one of them failed)."""
    import subprocess
    import threading
    import time

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    downloads: list[str] = []

    def fake_pip(cmd: list[str], **kwargs: object) -> subprocess.CompletedProcess[str]:
        dest = Path(cmd[cmd.index("--dest") + 1])
        downloads.append(str(dest))
        dest.mkdir(parents=True, exist_ok=True)
        time.sleep(0.3)  # the other setup arrives meanwhile
        (dest / "apache_tvm-0.27-cp311-manylinux_2_28_aarch64.whl").write_bytes(b"wheel")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(setup.subprocess, "run", fake_pip)
    found: list[list[Path]] = []
    threads = [threading.Thread(target=lambda: found.append(setup._download_wheels("aarch64", (3, 11)))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(downloads) == 1 and len(found) == 2 and found[0] == found[1] and [p.name for p in found[0]] == [
        "apache_tvm-0.27-cp311-manylinux_2_28_aarch64.whl"
    ]
