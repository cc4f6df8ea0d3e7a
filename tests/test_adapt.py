"""Few-shot adaptation: the adapter's fit, the measurement CSV's checks, and `edgelat adapt` end to end."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.datasets.tables import load_fbnet_table, load_latency_csv, load_nb201_table
from edgelat.errors import UsageError
from edgelat.nas import get_space
from edgelat.predictors.adapt import LAUNCH, fit_adapter
from edgelat.predictors.predict import predict_network
from edgelat.predictors.train import train_device
from edgelat.profiler.campaign import ProfileConfig, profile
from edgelat.workspace import open_workspace


def _networks(n: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    return [
        {"conv2d": rng.uniform(1, 10), "dwconv2d": rng.uniform(0.1, 3), "add": rng.uniform(0.01, 0.5), LAUNCH: float(rng.integers(10, 80))}
        for _ in range(n)
    ]


def _truth(features: list[dict[str, float]]) -> np.ndarray:
    """A device 3x slower on convs, 6x on depthwise convs, 2x on adds, 20 us per kernel."""
    w = {"conv2d": 3.0, "dwconv2d": 6.0, "add": 2.0}
    return np.array([sum(w[g] * f[g] for g in w) + 0.02 * f[LAUNCH] for f in features])


def test_adapter_learns_relative_speeds_from_enough_networks() -> None:
    train, test = _networks(50, 0), _networks(200, 1)
    adapter = fit_adapter(train, _truth(train), "local", "default")
    assert all(w >= 0 for w in adapter.weights.values()) and adapter.launch_ms >= 0
    assert adapter.weights["dwconv2d"] > adapter.weights["conv2d"] > adapter.weights["add"]
    err = adapter.predict(test) / _truth(test) - 1
    assert np.mean(np.abs(err) <= 0.05) > 0.9
    assert adapter.cv["within_10"] > 90 and adapter.cv["spearman"] > 0.95


def test_adapter_with_three_networks_is_a_calibrated_scale() -> None:
    train = _networks(3, 2)
    adapter = fit_adapter(train, _truth(train), "local", "default")
    assert adapter.n == 3 and np.all(np.isfinite(adapter.predict(_networks(5, 3))))
    with pytest.raises(UsageError, match="at least 3 measured networks, got 2"):
        fit_adapter(train[:2], _truth(train[:2]), "local", "default")


def test_shipped_tables() -> None:
    nb201, fbnet = load_nb201_table(), load_fbnet_table()
    assert len(nb201) == 15625 and len(fbnet) == 5000
    assert (nb201["pixel3_ms"] > 0).all() and nb201["cifar10_test_acc"].between(0, 100).all()
    space = get_space("nb201")
    assert {space.canonical(a) for a in nb201["arch"][:50]} == set(nb201["arch"][:50])
    get_space("fbnet").encode(fbnet["arch"][0])


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_latency_csv_errors_name_the_row(tmp_path: Path) -> None:
    space = get_space("nb201")
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
    with pytest.raises(UsageError, match="no 'latency_ms' column"):
        load_latency_csv(_write(tmp_path / "a.csv", f"arch,ms\n{arch},3\n"), space)
    with pytest.raises(UsageError, match="row 3: latency_ms must be a positive"):
        load_latency_csv(_write(tmp_path / "b.csv", f"arch,latency_ms\n{arch},3\n{arch},-1\n"), space)
    with pytest.raises(UsageError, match="row 2: .*unknown op 'conv_9x9'"):
        load_latency_csv(
            _write(
                tmp_path / "c.csv", "arch,latency_ms\n" + arch.replace("nor_conv_1x1", "x").replace("avg_pool_3x3", "conv_9x9") + ",3\n"
            ),
            space,
        )
    with pytest.raises(UsageError, match="row 2: no such ONNX file"):
        load_latency_csv(_write(tmp_path / "d.csv", "onnx,latency_ms\nmissing.onnx,3\n"))
    with pytest.raises(UsageError, match="needs a search space"):
        load_latency_csv(_write(tmp_path / "e.csv", f"arch,latency_ms\n{arch},3\n"))
    with pytest.raises(UsageError, match="row 2: latency_ms must be a positive number .*'fast'"):
        load_latency_csv(_write(tmp_path / "f.csv", f"arch,latency_ms\n{arch},fast\n"), space)
    ok = load_latency_csv(_write(tmp_path / "g.csv", f"arch,latency_ms\n{arch},3.5\n"), space)
    assert ok.to_dict("records") == [{"arch": arch, "latency_ms": 3.5}]


def _mlp(width: int) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10))


@pytest.mark.timed
@pytest.mark.slow
def test_adapt_cli_creates_a_device_that_predicts_like_any_other(tmp_path: Path) -> None:
    root = tmp_path / "ws"
    csv = tmp_path / "phone.csv"
    with open_workspace(root) as ws:
        profile(ws, "local", ProfileConfig(ops=("dense", "activation"), samples=14, repeat=3, min_repeat_ms=5.0, weighted=False))
        train_device(ws, "local")
        rows = []
        for width in (32, 64, 128, 256, 512, 768):
            path = tmp_path / f"mlp{width}.onnx"
            torch.onnx.export(_mlp(width).eval(), (torch.randn(1, 64),), str(path), dynamo=False)
            source = predict_network(ws, "local", str(path)).total_ms
            rows.append(f"{path.name},{4 * source + 0.05:.6f}")  # a phone 4x slower, 50 us more per network
        csv.write_text("onnx,latency_ms\n" + "\n".join(rows) + "\n")
    result = CliRunner().invoke(app, ["adapt", "phone", "--from", "local", "--measurements", str(csv), "--json", "-w", str(root)])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["device"] == "phone" and report["networks"] == 6 and report["cv"]["within_10"] >= 80
    # The adapted device predicts a network it never saw, with a per-kernel breakdown.
    new = tmp_path / "mlp384.onnx"
    torch.onnx.export(_mlp(384).eval(), (torch.randn(1, 64),), str(new), dynamo=False)
    result = CliRunner().invoke(app, ["predict", "phone", str(new), "--json", "-w", str(root)])
    assert result.exit_code == 0, result.output
    pred = json.loads(result.stdout)
    with open_workspace(root) as ws:
        source = predict_network(ws, "local", str(new)).total_ms
    assert pred["device"] == "phone" and len(pred["kernels"]) >= 3
    assert pred["total_ms"] == pytest.approx(4 * source + 0.05, rel=0.15)
    listed = CliRunner().invoke(app, ["device", "list", "--json", "-w", str(root)])
    assert any(d["name"] == "phone" and d["preset"] == "adapted" for d in json.loads(listed.stdout))
    # Listed and shown as adapted: never as this machine, never with advice to probe or profile it.
    table = CliRunner().invoke(app, ["device", "list", "-w", str(root)], env={"COLUMNS": "200"})
    phone_row = next(line for line in table.stdout.splitlines() if "phone" in line)
    assert "adapted" in phone_row and "this machine" not in phone_row, table.stdout
    shown = CliRunner().invoke(app, ["device", "show", "phone", "-w", str(root)], env={"COLUMNS": "200"})
    assert shown.exit_code == 0 and "no connection" in shown.stdout, shown.output
    assert "edgelat device probe" not in shown.stdout and "edgelat profile" not in shown.stdout, shown.stdout
    # Nothing connects to it.
    measured = CliRunner().invoke(app, ["measure", "phone", str(new), "-w", str(root)])
    assert measured.exit_code == 2 and "has no connection" in measured.output
    # Bad input: the source must be profiled, the CSV valid.
    again = CliRunner().invoke(app, ["adapt", "tablet", "--from", "phone", "--measurements", str(csv), "-w", str(root)])
    assert again.exit_code == 2 and "itself adapted" in again.output
    csv.write_text("onnx,latency_ms\nmlp32.onnx,0\n")
    bad = CliRunner().invoke(app, ["adapt", "tablet", "--from", "local", "--measurements", str(csv), "-w", str(root)])
    assert bad.exit_code == 2 and "row 2" in bad.output
