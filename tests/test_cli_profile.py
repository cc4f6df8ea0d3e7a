"""The profile and data commands of the CLI, as a user runs them."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.workspace import open_workspace

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


@pytest.mark.timings_ignored
def test_retime_times_the_measured_kernels_again_the_way_the_recipe_times_now(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, store_url: str | None
) -> None:
    """A recipe whose cache states change keeps its kernels: `--retime` times exactly those again, the new way, and
    training (which takes only the recipe's way) works again; a second `--retime` finds nothing to do."""
    from edgelat.profiler.recipes import get_recipe

    w = str(tmp_path / "W")
    fast = ["--repeat", "2", "--min-repeat-ms", "2", "-w", w, *(["--store", store_url] if store_url else [])]
    store = ["-w", w, *(["--store", store_url] if store_url else [])]
    first = runner.invoke(app, ["profile", "local", "--ops", "dense,add", "--samples", "10", "--unweighted", *fast])
    assert first.exit_code == 0, first.stderr
    monkeypatch.setattr(get_recipe("default"), "caches", "llc")
    refused = runner.invoke(app, ["train", "local", *store])
    assert refused.exit_code == 2 and "--retime" in refused.stderr
    narrowed = runner.invoke(app, ["profile", "local", "--retime", "--ops", "dense", *fast])
    assert narrowed.exit_code == 0 and "10/10 kernels stored" in narrowed.stdout, narrowed.stderr
    rest = runner.invoke(app, ["profile", "local", "--retime", *fast])
    assert rest.exit_code == 0 and "10/10 kernels stored" in rest.stdout, rest.stderr
    assert rest.stdout.count("kernels stored") == 1  # one pass: the recipe has no far way
    with open_workspace(Path(w), store_url) as ws:
        rows = ws.store.rows("SELECT caches, COUNT(DISTINCT config_id) AS n FROM measurements WHERE status = 'ok' GROUP BY caches")
        assert {r["caches"]: r["n"] for r in rows} == {"warm": 20, "llc": 20}
        assert not ws.store.rows("SELECT id FROM measurements WHERE caches = 'llc' AND number != 1")
    again = runner.invoke(app, ["profile", "local", "--retime", *fast])
    assert again.exit_code == 0 and "nothing to re-time" in again.stdout
    trained = runner.invoke(app, ["train", "local", *store])
    assert trained.exit_code == 0, trained.stderr
    wrong = runner.invoke(app, ["profile", "local", "--retime", "--samples", "3", *fast])
    assert wrong.exit_code == 2 and "--retime" in wrong.stderr
