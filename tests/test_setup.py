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
