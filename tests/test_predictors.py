"""Training per-op models on real measurements, and predicting networks from them."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import edgelat
from edgelat.cli import app
from edgelat.errors import UsageError
from edgelat.ops import FEATURE_SCHEMA_VERSION
from edgelat.predictors.estimators import FlopsLinear, KernelLatencyRegressor, NearestNeighbour
from edgelat.predictors.predict import load_model, predict_network
from edgelat.predictors.train import accuracy_metrics, train_device
from edgelat.workspace import Workspace, open_workspace


def test_accuracy_metrics() -> None:
    m = accuracy_metrics(np.array([1.0, 1.0, 1.0, 1.0]), np.array([1.04, 0.92, 1.2, 1.0]))
    assert m["within_5"] == 50.0 and m["within_10"] == 75.0
    assert m["rmspe"] == pytest.approx(np.sqrt((0.04**2 + 0.08**2 + 0.2**2) / 4) * 100)


def test_estimators_follow_the_sklearn_contract() -> None:
    from sklearn.base import clone
    from sklearn.exceptions import NotFittedError

    rng = np.random.default_rng(0)
    X = pd.DataFrame({"flops": rng.uniform(1e6, 1e8, 200), "bytes": rng.uniform(1e4, 1e6, 200)})
    X["log_flops"], X["log_bytes"] = np.log1p(X["flops"]), np.log1p(X["bytes"])
    y = 1e-8 * X["flops"] + 1e-6 * X["bytes"] + 0.01
    for est in (KernelLatencyRegressor(n_estimators=50), FlopsLinear(), NearestNeighbour()):
        with pytest.raises(NotFittedError):
            est.predict(X)
        assert est.fit(X, y) is est
        assert clone(est).get_params() == est.get_params()
        assert accuracy_metrics(y.to_numpy(), est.predict(X))["within_10"] > 50
    # Without the prior: monotone in work, more FLOPs never predicts less.
    model = KernelLatencyRegressor(n_estimators=100, prior=False).fit(X, y)
    grid = X.iloc[[0] * 20].copy()
    grid["flops"] = np.linspace(1e6, 1e8, 20)
    grid["log_flops"] = np.log1p(grid["flops"])
    assert np.all(np.diff(model.predict(grid)) >= 0)
    # With it (the default), latency keeps scaling with work beyond the training range, where trees alone flatten.
    far = X.iloc[[0]].copy()
    far["flops"] = 1e9
    far["log_flops"] = np.log1p(far["flops"])
    truth = 1e-8 * 1e9 + 1e-6 * far["bytes"].iloc[0] + 0.01
    assert abs(KernelLatencyRegressor(n_estimators=100).fit(X, y).predict(far)[0] / truth - 1) < 0.2
    assert abs(model.predict(far)[0] / truth - 1) > 0.5


def _mlp() -> nn.Module:
    return nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 10))


def test_train_report_and_saved_models(trained: Path) -> None:
    meta = json.loads((trained / "models" / "local" / "default" / "meta.json").read_text())
    assert meta["feature_schema"] == FEATURE_SCHEMA_VERSION and meta["versions"]["xgboost"] and len(meta["dataset_hash"]) == 16
    assert set(meta["ops"]["dense"]["held_out"]) == {"xgboost", "flops_linear", "random_forest", "lookup_1nn"}


def test_models_are_saved_without_pickles_and_load_to_the_same_predictions(tmp_path: Path) -> None:
    from edgelat.predictors.estimators import load_estimator, save_estimator

    rng = np.random.default_rng(1)
    X = pd.DataFrame({"flops": rng.uniform(1e6, 1e8, 100), "bytes": rng.uniform(1e4, 1e6, 100), "out_elems": rng.uniform(1e3, 1e5, 100)})
    y = 1e-8 * X["flops"] + 1e-6 * X["bytes"] + 0.01 * rng.uniform(0.5, 1.5, 100)
    for est in (KernelLatencyRegressor(n_estimators=40).fit(X, y), FlopsLinear().fit(X, y)):
        save_estimator(est, tmp_path / type(est).__name__)
        again = load_estimator(tmp_path / type(est).__name__)
        assert type(again) is type(est) and np.array_equal(again.predict(X), est.predict(X))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["FlopsLinear.json", "KernelLatencyRegressor.json", "KernelLatencyRegressor.xgb.json"]


def test_damaged_models_are_one_line_naming_the_file_and_retrain(trained: Path, tmp_path: Path) -> None:
    import shutil

    onnx_path = tmp_path / "mlp.onnx"
    torch.onnx.export(_mlp().eval(), (torch.randn(1, 64),), str(onnx_path), dynamo=False)
    folder = Path("models") / "local" / "default"
    assert not list((trained / folder).glob("*.joblib")) and (trained / folder / "dense.xgb.json").exists()
    damages = {
        "meta.json": ("{not json", "meta.json is damaged"),
        "dense.json": ('{"estimator": "KernelLatencyRegressor"}', "dense.json holds model format None"),
        "dense.xgb.json": ("\x00\x01garbage", "dense.xgb.json"),
        "fallback.json": (None, "fallback.json is missing"),
    }
    for name, (content, says) in damages.items():
        copy = tmp_path / name
        shutil.copytree(trained, copy)
        target = copy / folder / name
        target.unlink() if content is None else target.write_text(content)
        result = CliRunner().invoke(app, ["predict", "local", str(onnx_path), "-w", str(copy)])
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert result.exit_code == 2 and len(lines) == 1, (name, result.stderr)
        assert says in lines[0] and "edgelat train local" in lines[0], (name, lines[0])


def test_predict_a_torch_network(trained: Path) -> None:
    with open_workspace(trained) as ws:
        pred = predict_network(ws, "local", _mlp(), input_shape=(1, 64))
    assert [k.op for k in pred.kernels] == ["dense", "dense"]
    assert pred.kernels[0].config == {"m": 1, "k": 64, "n": 128, "epilogue": "add.c+relu"}
    assert pred.total_ms == pytest.approx(sum(k.predicted_ms for k in pred.kernels))
    assert sum(k.share for k in pred.kernels) == pytest.approx(1.0)
    again = edgelat.predict(_mlp(), device="local", input_shape=(1, 64), workspace=trained)
    assert again.total_ms == pytest.approx(pred.total_ms)
    many = edgelat.predict_many([_mlp(), nn.Sequential(nn.Linear(64, 32))], device="local", input_shape=(1, 64), workspace=trained)
    assert len(many) == 2 and many[1].total_ms < many[0].total_ms * 2


def test_kernels_without_a_model_are_priced_by_the_fallback(trained: Path) -> None:
    """A conv (no conv2d model on this device) and a gather (no kind at all) are priced, flagged and counted."""

    class Net(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.fc = nn.Conv2d(3, 8, 3), nn.Linear(8 * 6 * 6, 10)
            self.register_buffer("order", torch.tensor([3, 1, 2, 0, 9, 8, 7, 6, 5, 4]))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.fc(self.conv(x).flatten(1))[:, self.order]

    net = Net()
    with open_workspace(trained) as ws:
        pred = predict_network(ws, "local", net, input_shape=(1, 3, 8, 8))
        with pytest.raises(UsageError, match=r"2 kernel\(s\) have no model.*--ops conv2d`; 1 match no kind.*without --strict"):
            predict_network(ws, "local", net, input_shape=(1, 3, 8, 8), strict=True)
    conv, dense, gather = pred.kernels
    assert (conv.op, conv.fallback) == ("conv2d", True) and (dense.op, dense.fallback) == ("dense", False)
    assert gather.op is None and gather.fallback and gather.predicted_ms > 0
    assert pred.coverage == pytest.approx(dense.predicted_ms / pred.total_ms)
    assert pred.total_ms == pytest.approx(sum(k.predicted_ms for k in pred.kernels))


def test_predict_cli_on_onnx(trained: Path, tmp_path: Path) -> None:
    onnx_path = tmp_path / "mlp.onnx"
    torch.onnx.export(_mlp().eval(), (torch.randn(1, 64),), str(onnx_path), dynamo=False)
    result = CliRunner().invoke(app, ["predict", "local", str(onnx_path), "--json", "-w", str(trained)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["device"] == "local" and data["total_ms"] > 0 and [k["op"] for k in data["kernels"]] == ["dense", "dense"]
    assert CliRunner().invoke(app, ["predict", "local", str(tmp_path / "none.onnx"), "-w", str(trained)]).exit_code == 2
    # The table (piped: no terminal) shows each figure with 4 significant digits, however small (a 9 us total is not "0.009").
    import re

    table = CliRunner().invoke(app, ["predict", "local", str(onnx_path), "-w", str(trained)]).stdout
    total = re.search(r"predicted total: ([0-9.e-]+) ms", table)
    assert total and float(total.group(1)) == pytest.approx(data["total_ms"], rel=1e-3), table
    assert len(total.group(1).lstrip("0.").replace(".", "")) == 4, table


def test_schema_mismatch_is_a_clear_error(trained: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ws"
    shutil.copytree(trained, copy)
    meta_file = copy / "models" / "local" / "default" / "meta.json"
    meta = json.loads(meta_file.read_text())
    meta["feature_schema"] = 0
    meta_file.write_text(json.dumps(meta))
    with open_workspace(copy) as ws, pytest.raises(UsageError, match="feature schema 0"):
        load_model(ws, "local")
    meta["feature_schema"] = FEATURE_SCHEMA_VERSION
    del meta["model_format"]  # saved by an edgelat before the prior
    meta_file.write_text(json.dumps(meta))
    with open_workspace(copy) as ws, pytest.raises(UsageError, match="model format 1, this edgelat reads format 3.*retrain"):
        load_model(ws, "local")


def test_training_takes_only_measurements_built_for_the_recipes_target(trained: Path, tmp_path: Path) -> None:
    import shutil

    copy = tmp_path / "ws"
    shutil.copytree(trained, copy)
    with open_workspace(copy) as ws:
        ws.store.execute("UPDATE measurements SET target = :target WHERE op = 'dense'", {"target": json.dumps({"kind": "llvm", "mcpu": "other"})})
        report = train_device(ws, "local")
        assert {r.op for r in report.ops} == {"activation", "fallback"}
        assert "built for another target" in report.skipped["(built or timed otherwise)"]
        meta = json.loads((ws.model_dir("local", "default") / "meta.json").read_text())
        assert meta["target"] == ws_target(ws) and meta["caches"] == "warm"
        # Timed with flushed caches, as the tuned recipe times kernels: not what the default recipe's model learns from.
        ws.store.execute("UPDATE measurements SET target = :target WHERE op = 'dense'", {"target": json.dumps(ws_target(ws))})
        ws.store.execute("UPDATE measurements SET caches = 'flushed' WHERE op = 'activation'")
        assert {r.op for r in train_device(ws, "local").ops} == {"dense", "fallback"}
        ws.store.execute("UPDATE measurements SET target = :target", {"target": json.dumps({"kind": "llvm", "mcpu": "other"})})
        with pytest.raises(UsageError, match="another target.*edgelat profile local --recipe default"):
            train_device(ws, "local")


def ws_target(ws: Workspace) -> dict:
    from edgelat.profiler.inventory import get_device

    return get_device(ws, "local").target("default")


def test_recipes_choose_their_target_flags() -> None:
    from edgelat.profiler.recipes import get_recipe

    x86 = {"kind": "llvm", "mtriple": "x86_64-linux-gnu", "mcpu": "znver5"}
    arm = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a72", "mattr": ["+neon"]}
    assert get_recipe("default").target({**x86, "mattr": ["+avx2"]}) == {"kind": "llvm", "mtriple": "x86_64-linux-gnu"}
    assert get_recipe("default").target(arm) == arm and get_recipe("tuned").target(arm) == arm
    assert get_recipe("tuned").target(x86) == x86


def test_train_without_data(ws: Workspace) -> None:
    with pytest.raises(UsageError, match="no kernel measurements"):
        train_device(ws, "local")


def test_validation_zoo_takes_sets_names_and_resolutions() -> None:
    from edgelat.workflows.validate import QUICK_ZOO, validation_networks

    labels = [label for label, _, _ in validation_networks("quick, resnet18@96,mobilenetv2_050")]
    assert labels == [f"{n}@{r}" for n, r in QUICK_ZOO] + ["resnet18@96", "mobilenetv2_050@160", "mobilenetv2_050@224"]
    with pytest.raises(UsageError, match="resolution"):
        validation_networks("resnet18@x")
    with pytest.raises(UsageError):
        validation_networks("resnet18@160,no_such_net")


@pytest.mark.timed
def test_validate_writes_table_plot_and_metrics(trained: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgelat.workflows import validate

    def tiny_zoo(zoo: str = "all", seed: int = 0) -> list:
        def mlp(width: int):  # noqa: ANN202
            return lambda: nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, width), nn.ReLU(), nn.Linear(width, 10))

        return [("mlp64@8", mlp(64), 8), ("mlp256@8", mlp(256), 8), ("conv@8", lambda: nn.Conv2d(3, 4, 3), 8)]

    monkeypatch.setattr(validate, "validation_networks", tiny_zoo)
    with open_workspace(trained) as ws:
        report = validate.validate_device(ws, "local", out_dir=tmp_path / "v")
        stored = ws.store.scalar("SELECT COUNT(*) FROM network_measurements")
    assert [r.network for r in report.rows] == ["mlp64@8", "mlp256@8", "conv@8"]  # the conv priced by the fallback
    assert all(r.measured_ms > 0 and r.predicted_ms > 0 for r in report.rows) and [r.kernels for r in report.rows] == [2, 2, 1]
    assert set(report.metrics) == {"rmspe", "within_5", "within_10"} and set(report.flops_metrics) == set(report.metrics)
    assert Path(report.plot).stat().st_size > 10_000 and len(pd.read_csv(report.table)) == 3
    assert stored == 3 and all(r.measurements == 1 and r.measured_spread_pct == 0 for r in report.rows)
    # In rounds: each network's time is the median of its measurements, the stored one counting as the first.
    seen: list[tuple[str, int]] = []
    with open_workspace(trained) as ws:
        twice = validate.validate_device(ws, "local", out_dir=tmp_path / "v2", rounds=2, on_measured=lambda n, r, ms: seen.append((n, r)))
        medians = {name: sorted(json.loads(row["data"])["median_ms"] for row in ws.store.rows(
            "SELECT data FROM network_measurements WHERE name = :name", {"name": name})) for name in ("mlp64@8", "mlp256@8", "conv@8")}  # fmt: skip
        again = validate.validate_device(ws, "local", out_dir=tmp_path / "v3", rounds=2)
        stored = ws.store.scalar("SELECT COUNT(*) FROM network_measurements")
    assert seen == [("mlp64@8", 1), ("mlp256@8", 1), ("conv@8", 1)]  # one new measurement each, in the second round
    for row in twice.rows:
        pair = medians[row.network]
        assert len(pair) == 2 and row.measurements == 2 and row.measured_ms == pytest.approx(sum(pair) / 2)
        assert row.measured_spread_pct == pytest.approx(100 * (pair[1] / pair[0] - 1))
    assert stored == 6 and [r.measured_ms for r in again.rows] == [r.measured_ms for r in twice.rows]  # both stored ones reused
    # Fresh: every network measured again, whatever is stored; the new ones are stored too. Each is built once, its
    # library timed in both rounds.
    from edgelat.profiler import e2e

    fresh: list[tuple[str, int]] = []
    builds: list[int] = []
    build = e2e._build_for
    monkeypatch.setattr(e2e, "_build_for", lambda *a, **k: builds.append(1) or build(*a, **k))
    with open_workspace(trained) as ws:
        anew = validate.validate_device(ws, "local", out_dir=tmp_path / "v4", rounds=2, fresh=True, on_measured=lambda n, r, ms: fresh.append((n, r)))
        stored = ws.store.scalar("SELECT COUNT(*) FROM network_measurements")
        sizes = [json.loads(row["data"])["size_bytes"] for row in ws.store.rows("SELECT data FROM network_measurements ORDER BY id DESC LIMIT 6")]
    assert fresh == [(n, r) for r in (0, 1) for n in ("mlp64@8", "mlp256@8", "conv@8")] and stored == 12
    assert len(builds) == 3 and sizes[:3] == sizes[3:]
    assert all(r.measurements == 2 for r in anew.rows)


def test_validate_says_which_networks_were_measured_on_an_unsteady_device(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Networks whose rounds spread over STEADY_SPREAD_PCT are named, the accuracy on the steady ones is given beside
    the whole zoo's, and the plot marks them; a network measured once is not called unsteady."""
    from edgelat.workflows import validate
    from edgelat.workflows.validate import ValidationReport, ValidationRow

    def row(name: str, predicted: float, measured: float, spread: float, measurements: int = 3) -> ValidationRow:
        return ValidationRow(name, 96, 10, predicted, predicted, measured, 100 * (predicted / measured - 1), 0.0,
                             measurements=measurements, measured_spread_pct=spread)  # fmt: skip

    rows = [row("steady_ok", 1.02, 1.0, 4.0), row("steady_off", 1.3, 1.0, 9.0), row("shaky", 2.0, 1.0, 66.0), row("once", 1.0, 1.0, 0.0, 1)]
    report = ValidationReport("local", "tuned", rows=rows)
    report.metrics = accuracy_metrics(np.array([r.measured_ms for r in rows]), np.array([r.predicted_ms for r in rows]))
    report.flops_metrics = report.metrics
    validate._steadiness(report)
    assert report.unsteady == ["shaky"]
    assert report.steady_metrics == accuracy_metrics(np.array([1.0, 1.0, 1.0]), np.array([1.02, 1.3, 1.0]))
    report.plot, report.table = str(validate._scatter(report, tmp_path / "p.png")), str(tmp_path / "t.csv")
    assert Path(report.plot).stat().st_size > 10_000
    monkeypatch.setattr(validate, "validate_device", lambda *a, **k: report)
    result = CliRunner().invoke(app, ["validate", "local", "-w", str(tmp_path / "ws")])
    assert result.exit_code == 0, result.output
    text = " ".join(result.stdout.split())  # (the console wraps lines)
    assert "1 of 4 networks' measurements spread over 10% between rounds (shaky)" in text
    assert "the 3 steady ones: 66.7% within ±10%" in text
    calm = ValidationReport("local", "tuned", rows=rows[:2])
    validate._steadiness(calm)
    assert calm.unsteady == [] and calm.steady_metrics == {}


NB201 = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"


def test_predict_search_space_archs(trained: Path, tmp_path: Path) -> None:
    w = str(trained)
    result = CliRunner().invoke(app, ["predict", "local", "--space", "nb201", "--arch", NB201, "--json", "-w", w])
    assert result.exit_code == 0, result.stderr
    one = json.loads(result.stdout)
    assert one["arch"] == NB201 and one["kernels"][-1]["op"] == "dense" and not one["kernels"][-1]["fallback"]
    assert any(k["fallback"] for k in one["kernels"]) and 0 < one["coverage"] < 1  # convs: no conv model here
    strict = CliRunner().invoke(app, ["predict", "local", "--space", "nb201", "--arch", NB201, "--strict", "-w", w])
    assert strict.exit_code == 2 and "--ops" in strict.stderr
    archs = tmp_path / "archs.txt"
    archs.write_text(f"{NB201}\n\n{NB201.replace('avg_pool_3x3', 'nor_conv_1x1')}\n")
    result = CliRunner().invoke(
        app, ["predict", "local", "--space", "nb201", "--archs-file", str(archs), "--json", "-w", w]
    )
    assert result.exit_code == 0, result.stderr
    many = json.loads(result.stdout)
    assert [p["arch"] for p in many] == archs.read_text().split()
    for p in many:  # priced block by block: the blocks add up to the total, and the convs' share is the fallback's
        assert p["total_ms"] == pytest.approx(sum(b["ms"] for b in p["blocks"])) and 0 < p["fallback_ms"] < p["total_ms"]
    # Within the few percent a kernel fusing across a block seam moves (see predict_archs).
    assert many[0]["total_ms"] == pytest.approx(one["total_ms"], rel=0.1)
    archs.write_text(f"{NB201}\n|conv~0|+|x~0|y~1|\n")
    bad = CliRunner().invoke(app, ["predict", "local", "--space", "nb201", "--archs-file", str(archs), "-w", w])
    assert bad.exit_code == 2 and "architecture 2:" in bad.stderr, bad.output
    for bad in (["--space", "nb201", "--arch", "|conv~0|"], ["--space", "nas101", "--arch", "x"], [], ["--space", "nb201"]):
        assert CliRunner().invoke(app, ["predict", "local", *bad, "-w", w]).exit_code == 2, bad


def test_a_kernel_kept_as_json_is_priced_as_the_kernel(trained: Path) -> None:
    from edgelat.nas import get_space
    from edgelat.ops.network import KernelRecord, network_kernels
    from edgelat.predictors.model import predict_kernels
    from edgelat.predictors.predict import load_network

    space = get_space("nb201")
    kernels = network_kernels(load_network(space.build(NB201), example=torch.randn(*space.input_shape(NB201))))
    kept = [KernelRecord.from_dict(json.loads(json.dumps(k.record().as_dict()))) for k in kernels]
    with open_workspace(trained) as ws:
        model = load_model(ws, "local")
    direct, again = predict_kernels(model, kernels), predict_kernels(model, kept)
    assert any(k.fallback for k in direct.kernels) and any(not k.fallback for k in direct.kernels)
    assert [(k.name, k.op, k.predicted_ms, k.fallback) for k in again.kernels] == [(k.name, k.op, k.predicted_ms, k.fallback) for k in direct.kernels]


def test_block_kernels_are_found_once_and_priced_by_any_model(trained: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import shutil

    from edgelat.nas import get_space
    from edgelat.workflows import oracle

    space = get_space("nb201")
    archs = [NB201, NB201.replace("avg_pool_3x3", "nor_conv_1x1")]
    with open_workspace(trained) as ws:
        first = oracle.predict_archs(ws, "local", space, archs)
        assert list((trained / "blocks").glob("nb201-*.json"))
        shutil.rmtree(ws.oracle_dir("local", first[0].recipe))  # block prices gone, as after `train`: kernels kept
        monkeypatch.setattr("edgelat.ops.network.network_kernels", lambda mod: pytest.fail("a block was imported again"))
        again = oracle.predict_archs(ws, "local", space, archs)
    assert [p.total_ms for p in again] == pytest.approx([p.total_ms for p in first], rel=1e-9)
    assert all(p.total_ms > 0 for p in again)
    # Every block priced: the CLI answers without importing TVM or loading a model (seconds saved per call).
    archs_file = trained / "two-archs.txt"
    archs_file.write_text("\n".join(archs) + "\n")
    code = (
        "import sys\nfrom edgelat.cli import main\n"
        f"sys.argv = ['edgelat', 'predict', 'local', '--space', 'nb201', '--archs-file', {str(archs_file)!r}, '--json', '-w', {str(trained)!r}]\n"
        "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
        "print('tvm' in sys.modules, 'xgboost' in sys.modules)\n"
    )
    import subprocess
    import sys

    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    totals = [p["total_ms"] for p in json.loads(done.stdout[: done.stdout.rindex("]") + 1])]
    assert totals == pytest.approx([p.total_ms for p in first], rel=1e-9)
    assert done.stdout.split()[-2:] == ["False", "False"], done.stdout[-200:]


@pytest.mark.timed
def test_measure_cli_times_the_whole_network(trained: Path, tmp_path: Path) -> None:
    onnx_path = tmp_path / "mlp.onnx"
    torch.onnx.export(_mlp().eval(), (torch.randn(1, 64),), str(onnx_path), dynamo=False)
    result = CliRunner().invoke(app, ["measure", "local", str(onnx_path), "--json", "-w", str(trained)])
    assert result.exit_code == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["median_ms"] > 0 and data["min_ms"] <= data["median_ms"] <= data["max_ms"] and data["threads"] == 1
    assert [name for name, _ in data["kernels"]] == ["fused_matmul_add_relu", "fused_matmul1_add1"]
    with open_workspace(trained) as ws:  # what it was built for, kept with it
        assert data["target"] == ws_target(ws) and data["target"]["kind"] == "llvm"
    table = CliRunner().invoke(app, ["measure", "local", str(onnx_path), "--kernels", "-w", str(trained)])
    assert table.exit_code == 0 and "fused_matmul_add_relu" in table.stdout


def test_the_demo_ends_with_predicted_vs_measured_and_what_next(trained: Path, tmp_path: Path) -> None:
    import shutil

    from edgelat import demo

    ws_dir = tmp_path / "demo"
    shutil.copytree(trained, ws_dir)
    torch.onnx.export(_mlp().eval(), (torch.randn(1, 64),), str(ws_dir / demo.NETWORK), dynamo=False)
    with pytest.raises(UsageError, match="run `make demo`"):
        demo.summary(ws_dir)  # nothing measured yet
    with open_workspace(ws_dir) as ws:
        predicted = predict_network(ws, "local", str(ws_dir / demo.NETWORK)).total_ms
        ws.store.insert(
            "network_measurements",
            {"device": "local", "recipe": "default", "name": demo.NETWORK, "network_hash": "h", "threads": 1, "median_ms": predicted / 1.25,
             "data": "{}", "uid": uuid.uuid4().hex},
        )  # fmt: skip
    first, rough, keep, serve = demo.summary(ws_dir)
    assert f"predicted {predicted:.1f} ms" in first and "(+25.0%)" in first, first
    assert "rough" in rough and "edgelat profile local" in rough
    assert f"--workspace {ws_dir}" in keep and f"EDGELAT_HOME={ws_dir.resolve()}" in keep and "edgelat predict local" in keep
    assert f"serve --workspace {ws_dir}" in serve
