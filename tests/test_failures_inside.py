"""Failures from inside (not the user's input): one line on stderr naming what failed, never a traceback."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgelat.cli import app


def _net(path: Path) -> Path:
    torch.onnx.export(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()).eval(), (torch.randn(1, 64),), str(path), dynamo=False)
    return path


def _one_line(result: object) -> str:
    stderr = result.stderr  # type: ignore[attr-defined]
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "Traceback" not in stderr, stderr
    return lines[0]


def test_an_unreadable_tuning_database(tmp_path: Path) -> None:
    """A workload line damaged before others cannot be set aside (records refer to workloads by position; a last line
    cut short is set aside: tests/test_tuning.py): one line, exit 2."""
    w = tmp_path / "ws"
    tuning = w / "tuning" / "local"
    tuning.mkdir(parents=True)
    (tuning / "database_workload.json").write_text("garbage{\ngarbage{\n")
    (tuning / "database_tuning_record.json").write_text("")
    result = CliRunner().invoke(app, ["measure", "local", str(_net(tmp_path / "n.onnx")), "--recipe", "tuned", "-w", str(w)])
    line = _one_line(result)
    assert result.exit_code == 2 and "tuning database" in line and str(tuning) in line and "move the folder away" in line, line


def test_a_metaschedule_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Raised while tuning, which happened outside the build's error handling."""
    import tvm

    from edgelat.profiler.tuning import KernelTuner

    def fail(self: KernelTuner, func: object, trials: int) -> object:
        raise tvm.error.InternalError('Check failed: (sketch) is false: no space generator applies\n  File "x.cc", line 1')

    monkeypatch.setattr(KernelTuner, "tune", fail)
    result = CliRunner().invoke(app, ["measure", "local", str(_net(tmp_path / "n.onnx")), "--recipe", "tuned", "-w", str(tmp_path / "ws")])
    line = _one_line(result)
    assert result.exit_code == 1 and "MetaSchedule could not tune kernel" in line and "no space generator applies" in line, line


def test_verbose_logs_what_the_fallback_priced(trained: Path, tmp_path: Path) -> None:
    # The trained workspace has dense and activation models only: a conv is priced by the fallback.
    path = tmp_path / "conv.onnx"
    torch.onnx.export(
        torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.ReLU()).eval(), (torch.randn(1, 3, 16, 16),), str(path), dynamo=False
    )
    quiet = CliRunner().invoke(app, ["predict", "local", str(path), "-w", str(trained)])
    assert quiet.exit_code == 0 and "fallback model" not in quiet.stderr, quiet.output
    loud = CliRunner().invoke(app, ["-v", "predict", "local", str(path), "-w", str(trained)])
    assert loud.exit_code == 0 and "priced by the fallback model: conv2d" in loud.stderr, loud.stderr


@pytest.mark.timed
def test_measure_check_compares_the_device_with_the_host_build(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`measure --check`: the device's outputs next to this host's build; a device computing something else
    exits 1 with one line."""
    import json

    from edgelat.profiler import e2e

    net, w = _net(tmp_path / "n.onnx"), str(tmp_path / "ws")
    builds: list[int] = []
    build = e2e._build_for  # (the build itself runs in a worker process)
    monkeypatch.setattr(e2e, "_build_for", lambda *a, **k: builds.append(1) or build(*a, **k))
    same = CliRunner().invoke(app, ["measure", "local", str(net), "--check", "--json", "-w", w])
    assert same.exit_code == 0, same.output
    assert len(builds) == 1  # the library timed is the one checked
    check = json.loads(same.stdout)["check"]
    assert check["ok"] and check["max_abs_error"] < 1e-5 < check["max_abs_output"]
    real = e2e.run_on_host
    monkeypatch.setattr(e2e, "run_on_host", lambda mod, inputs: [o + 0.5 for o in real(mod, inputs)])
    wrong = CliRunner().invoke(app, ["measure", "local", str(net), "--check", "-w", w])
    line = _one_line(wrong)
    assert wrong.exit_code == 1 and "local computes something else than this host's build of n.onnx" in line, line
