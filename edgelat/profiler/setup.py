"""Make a device able to load TVM kernels: check its runtime, install the pinned wheel if missing.

The TVM runtime goes into a private virtual environment on the device
(``~/.edgelat/venv-tvm-VERSION``), never into its system Python. With ``offline=True``
the host downloads the wheels for the device's platform and copies them over SFTP, for
devices that cannot reach a package index.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelat.errors import RemoteCommandError, UsageError
from edgelat.profiler.inventory import connect, get_device
from edgelat.profiler.transports import Transport
from edgelat.workspace import Workspace

__all__ = ["TVM_REQUIREMENTS", "SetupReport", "setup_device"]

TVM_VERSION = "0.27.0.post1"
TVM_REQUIREMENTS = (f"apache-tvm=={TVM_VERSION}", "apache-tvm-ffi==0.1.14.post1", "numpy")
# Platforms apache-tvm publishes wheels for (manylinux), and the Python versions it supports.
WHEEL_PLATFORMS = {"x86_64": "manylinux_2_28_x86_64", "aarch64": "manylinux_2_28_aarch64"}
MIN_PYTHON = (3, 10)
MIN_GLIBC = (2, 28)  # what manylinux_2_28 means

_INSPECT = """
import json, os, platform, sys
info = {"machine": platform.machine(), "python": list(sys.version_info[:3]), "libc": list(platform.libc_ver()),
        "home": os.path.expanduser("~"), "tvm": None, "error": None}
try:
    import tvm
    info["tvm"] = tvm.__version__
except Exception as exc:
    info["error"] = "%s: %s" % (type(exc).__name__, exc)
print(json.dumps(info))
"""


@dataclass
class SetupReport:
    device: str
    python: str
    tvm_version: str
    # "present" (nothing to do), "installed" (from an index), "installed-offline" (wheels shipped).
    action: str


def _inspect(transport: Transport, python: str) -> dict[str, Any]:
    result = transport.run([python, "-I", "-c", _INSPECT], timeout=180)
    return json.loads(result.stdout.strip().splitlines()[-1])


def setup_device(ws: Workspace, name: str, *, offline: bool = False, force: bool = False) -> SetupReport:
    """Ensure ``name`` can load TVM kernels; installs the pinned runtime into a venv if needed."""
    device = get_device(ws, name)
    with connect(ws, device) as transport:
        info = _inspect(transport, device.python)
        if info["tvm"] and not force:
            return SetupReport(device.name, device.python, str(info["tvm"]), "present")
        machine = str(info["machine"])
        version = tuple(int(v) for v in info["python"])
        if machine not in WHEEL_PLATFORMS:
            raise UsageError(
                f"{device.name} is {machine}: apache-tvm publishes wheels only for {', '.join(WHEEL_PLATFORMS)} Linux. "
                "Install a 64-bit OS on the device, or build TVM's runtime for it from source and pass its Python with --python"
            )
        if version < MIN_PYTHON:
            raise UsageError(
                f"{device.name} has Python {'.'.join(map(str, version))}; the apache-tvm wheel needs >= {'.'.join(map(str, MIN_PYTHON))}. "
                "Install a newer Python on the device and pass it with `edgelat device add ... --python`"
            )
        libc, libc_version = (list(info.get("libc") or []) + ["", ""])[:2]
        if libc != "glibc" or _version(libc_version) < MIN_GLIBC:
            raise UsageError(
                f"{device.name} has {f'{libc} {libc_version}'.strip() or 'an unknown C library'}; the apache-tvm wheel "
                f"({WHEEL_PLATFORMS[machine]}) needs glibc >= {'.'.join(map(str, MIN_GLIBC))}. "
                "Install a newer OS on the device (Debian 10+, Ubuntu 18.10+, Raspberry Pi OS bullseye+)"
            )
        venv = f"{info['home']}/.edgelat/venv-tvm-{TVM_VERSION}"
        venv_python = f"{venv}/bin/python"
        transport.run([device.python, "-m", "venv", venv], timeout=300)
        try:
            if offline:
                _install_offline(transport, venv_python, machine, version, f"{venv}/wheels")
            else:
                transport.run([venv_python, "-m", "pip", "install", "--quiet", *TVM_REQUIREMENTS], timeout=1800)
        except RemoteCommandError as exc:
            raise RemoteCommandError(
                exc.argv, exc.exit_code, exc.stderr + "\n(no index reachable? try --offline)", where=device.name
            ) from None
        after = _inspect(transport, venv_python)
    if not after["tvm"]:
        raise UsageError(f"installed TVM on {device.name} but it does not import: {after['error']}")
    ws.store.execute("UPDATE devices SET python = :python WHERE name = :name", {"python": venv_python, "name": device.name})
    return SetupReport(device.name, venv_python, str(after["tvm"]), "installed-offline" if offline else "installed")


def _version(text: str) -> tuple[int, ...]:
    parts = []
    for part in str(text).split("."):
        if not part.isdigit():
            break
        parts.append(int(part))
    return tuple(parts)


def wheel_cache(machine: str, version: tuple[int, ...]) -> Path:
    """Where the wheels for a device's platform and Python are kept on this host, once downloaded.

    Keyed by the pinned requirements too, so a new pin downloads afresh; ``$XDG_CACHE_HOME`` or ``~/.cache``.
    """
    key = hashlib.sha256("\n".join(TVM_REQUIREMENTS).encode()).hexdigest()[:10]
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "edgelat" / "wheels" / f"{WHEEL_PLATFORMS[machine]}-py{version[0]}{version[1]}-{key}"


def _download_wheels(machine: str, version: tuple[int, ...]) -> list[Path]:
    """The wheels for ``machine`` and Python ``version``, downloaded once into :func:`wheel_cache`. Processes
    setting devices up at once take turns (a lock file beside the cache): one downloads, the others find
    the cache complete."""
    import fcntl

    cache = wheel_cache(machine, version)
    cache.parent.mkdir(parents=True, exist_ok=True)
    with open(cache.with_name(cache.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not (cache / "complete").exists():
            partial = cache.with_name(cache.name + ".partial")
            shutil.rmtree(partial, ignore_errors=True)
            cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--only-binary=:all:", "--dest", str(partial),
                   "--platform", WHEEL_PLATFORMS[machine], "--python-version", f"{version[0]}.{version[1]}", *TVM_REQUIREMENTS]  # fmt: skip
            done = subprocess.run(cmd, capture_output=True, text=True)
            if done.returncode != 0:
                raise UsageError(f"could not download wheels for {machine} / Python {version[0]}.{version[1]} on the host:\n{done.stderr[-1500:]}")
            (partial / "complete").write_text(" ".join(cmd) + "\n")
            shutil.rmtree(cache, ignore_errors=True)
            partial.rename(cache)
    return sorted(cache.glob("*.whl"))


def _install_offline(transport: Transport, venv_python: str, machine: str, version: tuple[int, ...], remote_dir: str) -> None:
    wheels = _download_wheels(machine, version)
    transport.run(["mkdir", "-p", remote_dir])
    for wheel in wheels:
        transport.put(wheel, f"{remote_dir}/{wheel.name}")
    transport.run(
        [venv_python, "-m", "pip", "install", "--quiet", "--no-index", "--find-links", remote_dir, *TVM_REQUIREMENTS], timeout=1800
    )
    transport.run(["rm", "-rf", "--", remote_dir])
