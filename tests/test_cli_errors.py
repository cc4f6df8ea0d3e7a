"""Bad input at the boundary: one line on stderr, exit code 2, the workspace unchanged, nothing on stdout.

Every case runs the real ``edgelat`` entry point in a subprocess, as a user would meet it.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from edgelat.profiler.inventory import list_devices
from edgelat.workspace import open_workspace

# name -> (arguments, with {t} the case's temporary folder, and {w} its workspace; what stderr says)
CASES: dict[str, tuple[str, str]] = {
    "predict random bytes": ("predict local {t}/random.onnx", "is not an ONNX model"),
    "predict empty file": ("predict local {t}/empty.onnx", "is empty"),
    "predict truncated ONNX": ("predict local {t}/truncated.onnx", "ONNX model"),
    "predict a directory": ("predict local {t}/dir.onnx", "is not a file"),
    "measure random bytes": ("measure local {t}/random.onnx", "is not an ONNX model"),
    "measure empty file": ("measure local {t}/empty.onnx", "is empty"),
    "measure truncated ONNX": ("measure local {t}/truncated.onnx", "ONNX model"),
    "measure a directory": ("measure local {t}/dir.onnx", "is not a file"),
    "input shape of the wrong rank": ("predict local {t}/net.onnx --input-shape 1,3,96", "has 3 dims"),
    "input shape of the wrong channels": ("predict local {t}/net.onnx --input-shape 1,4,96,96", "contradicts input"),
    "input shape that contradicts a fixed file": ("predict local {t}/net.onnx --input-shape 1,3,64,64", "contradicts input"),
    "empty input shape": ("predict local {t}/net.onnx --input-shape ''", "empty --input-shape"),
    "workspace is a file": ("device list --workspace {t}/afile", "is a file, not a directory"),
    "workspace below a file": ("device list --workspace {t}/afile/ws", "is a file, not a directory"),
    "EDGELAT_HOME is a file": ("device list", "is a file, not a directory"),
    "data export to a directory": ("data export local --output {t}", "is a directory"),
    "data export csv named parquet": ("data export local --format csv --output {t}/x.parquet", "suffix .parquet"),
    "zoo export to a directory": ("zoo export resnet18 --resolution 32 --output {t}", "is a directory"),
    "zoo export resolution 0": ("zoo export resnet18 --resolution 0 --output {t}/r.onnx", "--resolution 0"),
    "zoo export unknown model": ("zoo export resnet1800 --output {t}/r.onnx", "edgelat zoo list"),
    "a port that is not a number": ("device add pi --host 10.0.0.2 --preset rpi4 --port abc", "Invalid value for '--port'"),
    "an unknown command": ("devic list", "No such command"),
    "device add with a missing key": ("device add pi --host 10.0.0.2 --preset rpi4 --key {t}/no_key", "no such private key"),
    "an unknown device": ("predict nodevice {t}/net.onnx", "no device named 'nodevice'"),
    "an unknown device before slow work": ("measure nodevice {t}/net.onnx", "no device named 'nodevice'"),
    "train an unknown device": ("train nodevice", "no device named 'nodevice'"),
    "search with a memory limit of 0": ("search local --space nb201 --latency-ms 5 --memory-mb 0", "--memory-mb must be positive"),
    "a group of an unknown device": ("device group add g local nosuch", "no device named 'nosuch'"),
    "measure on a bad scheduler address": ("measure local {t}/net.onnx --scheduler 127.0.0.1:8786", "tcp://HOST:8786"),
}


def _prepare(t: Path) -> None:
    import numpy as np
    import torch

    (t / "random.onnx").write_bytes(np.random.default_rng(0).bytes(3000))
    (t / "empty.onnx").write_bytes(b"")
    (t / "dir.onnx").mkdir()
    (t / "afile").write_text("not a workspace")
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    torch.onnx.export(model, (torch.randn(1, 3, 96, 96),), str(t / "net.onnx"), dynamo=False)
    good = (t / "net.onnx").read_bytes()
    (t / "truncated.onnx").write_bytes(good[: len(good) // 2])


def _run(args: str, t: Path, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    import shlex

    argv = [sys.executable, "-m", "edgelat.cli", *shlex.split(args.format(t=t, w=t / "ws"))]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, cwd=t)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    t = tmp_path_factory.mktemp("bad")
    _prepare(t)
    return t


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_one_line_and_exit_2(case: str, folder: Path, tmp_path: Path, trained: Path) -> None:
    args, says = CASES[case]
    if args.startswith("predict local"):
        ws = trained  # with models to predict from, so what is wrong is the network
    else:
        ws = tmp_path / "ws"
        with open_workspace(ws) as w:
            list_devices(w)  # the workspace as a first command leaves it: store migrated, this machine registered
    env = {**os.environ, "EDGELAT_HOME": str(folder / "afile") if case == "EDGELAT_HOME is a file" else str(ws)}
    before = _snapshot(ws)
    result = _run(args, folder, env)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, (case, result.returncode, result.stderr[-2000:])
    assert len(lines) == 1 and "Traceback" not in result.stderr, (case, result.stderr[-2000:])
    assert says in lines[0], (case, lines[0])
    assert result.stdout == "", (case, result.stdout[-500:])
    assert _snapshot(ws) == before, case


def _snapshot(ws: Path) -> dict[str, int]:
    """What the workspace holds: its files and their sizes (the store's tables land in edgelat.db)."""
    if not ws.exists():
        return {}
    return {str(p.relative_to(ws)): p.stat().st_size for p in ws.rglob("*") if p.is_file() and not p.name.endswith(("-wal", "-shm"))}


def test_adapting_over_an_adapted_device_needs_force(folder: Path, tmp_path: Path) -> None:
    """Checked before any work: the adapter file is what decides."""
    ws = tmp_path / "ws"

    with open_workspace(ws) as w:
        path: Path = w.adapter_file("phone")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("{}")
    result = _run(f"adapt phone --from local --measurements {folder}/x.csv -w {ws}", folder, dict(os.environ))
    assert result.returncode == 2 and "--force" in result.stderr, result.stderr

