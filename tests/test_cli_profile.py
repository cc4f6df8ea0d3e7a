"""The profile and data commands of the CLI, as a user runs them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from edgelat.cli import app

runner = CliRunner()


@pytest.mark.timed
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


@pytest.mark.timed
def test_a_terminated_campaign_is_marked_interrupted_and_resumes(tmp_path: Path) -> None:
    """`kill` (SIGTERM) stops a campaign as Ctrl-C does: exit 130, status `interrupted`, --resume finishes it."""
    import signal
    import subprocess
    import sys
    import time

    ws = tmp_path / "ws"
    cmd = [sys.executable, "-m", "edgelat.cli", "profile", "local", "--ops", "add", "--samples", "12", "--repeat", "2",
           "--min-repeat-ms", "2", "--workspace", str(ws)]  # fmt: skip
    host = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    def measured() -> int:
        if not (ws / "edgelat.db").exists():
            return 0
        with sqlite3.connect(ws / "edgelat.db") as db:
            try:
                return int(db.execute("SELECT COUNT(*) FROM measurements").fetchone()[0])
            except sqlite3.OperationalError:  # not created yet
                return 0

    deadline = time.time() + 300
    while measured() < 2 and host.poll() is None and time.time() < deadline:
        time.sleep(0.2)
    assert host.poll() is None, "the campaign ended before it could be stopped"
    host.send_signal(signal.SIGTERM)
    _, stderr = host.communicate(timeout=120)
    assert host.returncode == 130 and "continue with --resume" in stderr, stderr
    with sqlite3.connect(ws / "edgelat.db") as db:
        assert db.execute("SELECT status FROM campaigns").fetchall() == [("interrupted",)]
    result = CliRunner().invoke(app, ["profile", "local", "--resume", "--workspace", str(ws)])
    assert result.exit_code == 0, result.output
    with sqlite3.connect(ws / "edgelat.db") as db:
        assert db.execute("SELECT status FROM campaigns").fetchall() == [("done",)]
        assert db.execute("SELECT COUNT(DISTINCT config_id) FROM measurements").fetchone()[0] == 12
