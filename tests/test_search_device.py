"""`edgelat search` on the local device: a real predictor, real TVM builds, real measurements."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.nas import get_space
from edgelat.nas.search import min_latency
from edgelat.workflows import device_oracle, measure_arch
from edgelat.workspace import open_workspace


@pytest.fixture(scope="module")
def nb201_device(_profiled_for_search: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, float]:
    """A workspace whose local device is trained on the kinds NB201 runs, and a budget some archs meet."""
    root = Path(shutil.copytree(_profiled_for_search, tmp_path_factory.mktemp("search") / "ws"))
    space = get_space("nb201")
    with open_workspace(root) as ws:
        # A budget some but not all architectures meet: the median of a few measured ones, raised to half again the
        # measured latency of the fastest architecture this weakly trained predictor knows, so that neither its
        # error nor a noisy machine (measurements here drift by a third between minutes) leaves nothing to return.
        archs = [space.sample(np.random.default_rng(i)) for i in range(3)]
        oracle = device_oracle(ws, "local", space)
        assert np.all(oracle.predict(archs) > 0)
        fastest = measure_arch(ws, "local", space, min_latency(space, oracle).arch)
        budget = max(float(np.median([measure_arch(ws, "local", space, a) for a in archs])), 1.5 * fastest)
    return root, round(budget, 4)


@pytest.mark.timed
@pytest.mark.slow
def test_search_cli_returns_a_network_that_meets_its_budget_when_measured(nb201_device: tuple[Path, float], tmp_path: Path) -> None:
    root, budget = nb201_device
    space = get_space("nb201")
    out = tmp_path / "out"
    args = ["search", "local", "--space", "nb201", "--latency-ms", f"{budget:.4f}", "--proxy", "params", "--generations", "4",
            "--population", "10", "--top-k", "2", "--rounds", "3", "--out", str(out), "--json", "--workspace", str(root)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["met_budget"] and found["measured_ms"] <= budget
    assert found["arch"] == space.canonical(found["arch"])
    assert Path(found["onnx"]).exists()
    best = json.loads((out / "best.json").read_text())
    assert best["arch"] == found["arch"] and best["device"] == "local"
    assert (out / "pareto.csv").read_text().startswith("arch,predicted_ms,score")
    assert (out / "pareto.png").stat().st_size > 10_000
    assert "measured" in (out / "report.md").read_text()
    # Every verified pick was measured on the device and stored.
    with open_workspace(root) as ws:
        names = {r["name"] for r in ws.store.rows("SELECT name FROM network_measurements")}
    assert {f"nb201:{v['arch']}" for v in found["verified"]} <= names


def test_search_cli_needs_a_trained_device(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["search", "local", "--space", "nb201", "--latency-ms", "1", "--workspace", str(tmp_path)])
    assert result.exit_code == 2
    assert "no kernel measurements" in result.output and "edgelat profile local" in result.output


@pytest.mark.timed
@pytest.mark.slow
def test_search_then_prune_compares_both_routes(nb201_device: tuple[Path, float], tmp_path: Path) -> None:
    root, budget = nb201_device
    args = ["search", "local", "--space", "nb201", "--latency-ms", f"{budget:.4f}", "--then-prune", "--looser", "2", "--proxy", "params",
            "--generations", "3", "--population", "8", "--top-k", "2", "--rounds", "2", "--out", str(tmp_path / "out"), "--json", "-w", str(root)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    routes = json.loads(result.stdout)
    pruned = routes["search_then_prune"]
    assert pruned["measured_ms"] <= budget
    if pruned["searched_ms"] <= budget:  # it fit when searched: never pruned (a network over the budget then may
        assert not pruned["pruned"]  # still fit when measured again before pruning: then it is kept as it is)
    assert 0 <= pruned["accuracy"] <= 100 and Path(pruned["onnx"]).exists()
    alone = routes["search_alone"]  # both routes are always reported; search alone may miss the budget, never silently
    assert "error" in alone or alone["measured_ms"] <= budget, alone
    assert json.loads((tmp_path / "out" / "routes.json").read_text())["budget_ms"] == pytest.approx(budget, rel=1e-4)


def test_a_looser_winner_that_fits_when_measured_again_is_kept_unpruned(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The looser search's winner measured over the budget, then under it when pruning measures its baseline (a
    noisy device): the route keeps it as it is, with the newer measurement, instead of failing."""
    from types import SimpleNamespace

    from edgelat.errors import AlreadyMeetsTargetError
    from edgelat.workflows import routes
    from edgelat.workflows.prune import PruneOptions

    arch = get_space("nb201").sample(np.random.default_rng(0))
    found = SimpleNamespace(result=SimpleNamespace(chosen=SimpleNamespace(arch=arch, measured_ms=9.0)), paths={"onnx": "x.onnx"})
    monkeypatch.setattr(routes, "search_device", lambda *args, **kwargs: found)

    def refuse(*args: object, **kwargs: object) -> None:
        raise AlreadyMeetsTargetError("the network already runs in 8.00 ms, within the 8.5 ms target", 8.0)

    monkeypatch.setattr(routes, "prune_device", refuse)
    with open_workspace(tmp_path / "ws") as ws:
        out = routes.search_then_prune(
            ws, "local", "nb201", 8.5, prune=PruneOptions(steps=1, pretrain_steps=1, finetune_steps=1), out_dir=tmp_path / "out"
        )
    kept = out["search_then_prune"]
    assert kept["pruned"] is False and kept["searched_ms"] == 9.0 and kept["measured_ms"] == 8.0 and kept["arch"] == arch
