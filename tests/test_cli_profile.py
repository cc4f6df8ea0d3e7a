"""The profile and data commands of the CLI, as a user runs them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

from edgelat.cli import app

runner = CliRunner()


def test_profile_20_conv2d_then_export(tmp_path: Path) -> None:
    w = str(tmp_path / "W")
    result = runner.invoke(
        app, ["profile", "local", "--ops", "conv2d", "--samples", "20", "--unweighted", "--repeat", "3", "--min-repeat-ms", "5", "--workspace", w]
    )
    assert result.exit_code == 0, result.stderr
    assert "conv2d" in result.stdout and "20/20 kernels stored" in result.stdout
    db = sqlite3.connect(Path(w) / "edgelat.db")
    assert db.execute("SELECT COUNT(*) FROM measurements WHERE op = 'conv2d' AND status = 'ok' AND median_ms > 0").fetchone()[0] == 20
    out = tmp_path / "k.csv"
    result = runner.invoke(app, ["data", "export", "local", "--format", "csv", "--output", str(out), "--workspace", w])
    assert result.exit_code == 0, result.stderr
    frame = pd.read_csv(out)
    assert len(frame) == 20
    assert {"op", "config_id", "recipe", "median_ms", "std_ms", "status", "p_cin", "p_k", "p_stride"} <= set(frame.columns)


def test_profile_bad_input(tmp_path: Path) -> None:
    w = str(tmp_path)
    for args, message in [
        (["--ops", "conv9d"], "unknown op 'conv9d'"),
        (["--recipe", "fast"], "unknown recipe"),
        (["--samples", "0"], "--samples must be at least 1"),
        (["--resume"], "nothing to resume"),
    ]:
        result = runner.invoke(app, ["profile", "local", *args, "-w", w])
        assert result.exit_code == 2 and message in result.stderr, (args, result.stderr)
    result = runner.invoke(app, ["data", "export", "local", "--format", "xls", "-w", w])
    assert result.exit_code == 2 and "unknown format" in result.stderr


def test_ops_lists_the_registry() -> None:
    result = runner.invoke(app, ["ops"])
    assert result.exit_code == 0 and "dwconv2d" in result.stdout and "squeeze_excite" in result.stdout
