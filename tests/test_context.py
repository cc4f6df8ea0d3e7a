"""Networks placed between their kernels' two timing ways by their footprint (edgelat.predictors.context), and the
chain that feeds it: a recipe's far way profiled after its own, trained beside it, used by predictions."""

from __future__ import annotations

import json
import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.predictors import CONTEXT_FILE, FAR
from edgelat.predictors.context import MIN_NETWORKS, CacheContext, ContextRow, cross_fitted, models_tag
from edgelat.workspace import Workspace, open_workspace

runner = CliRunner()


def _rows(curve: CacheContext, footprints: list[float]) -> list[ContextRow]:
    """Networks whose measured times the curve gives exactly, near and far sums that differ by network."""
    rows = []
    for i, mb in enumerate(footprints):
        near, far = 1.0 + 0.3 * i, 1.5 + 0.5 * i
        rows.append(ContextRow(f"n{i}", mb, near, far, near + curve.share(mb) * (far - near)))
    return rows


def test_share_rises_with_footprint_from_none_to_the_height() -> None:
    curve = CacheContext(center_mb=14.0, width=0.3, height=0.9)
    shares = [curve.share(mb) for mb in (1, 8, 14, 20, 200)]
    assert shares == sorted(shares)
    assert shares[0] < 0.01 and math.isclose(shares[2], 0.45) and 0.89 < shares[-1] <= 0.9
    assert curve.price(ContextRow("n", 14.0, 2.0, 4.0, 0.0)) == pytest.approx(2.9)


def test_fit_finds_the_curve_that_made_the_times_and_cross_fits_each_from_the_others() -> None:
    truth = CacheContext(center_mb=14.0, width=0.3, height=0.9)
    rows = _rows(truth, [5, 7, 9, 11, 13, 16, 19, 24, 45])
    fitted = CacheContext.fit(rows)
    assert fitted.center_mb == pytest.approx(14.0, rel=0.02) and fitted.height == pytest.approx(0.9, rel=0.02)
    assert fitted.networks == tuple(r.name for r in rows)
    for row, price in zip(rows, cross_fitted(rows), strict=True):
        assert price == pytest.approx(row.measured_ms, rel=0.01)
    # Too few others to fit: nothing to say.
    assert cross_fitted(rows[:MIN_NETWORKS]) == [None] * MIN_NETWORKS
    with pytest.raises(ValueError, match="at least"):
        CacheContext.fit(rows[: MIN_NETWORKS - 1])


def test_saved_curve_loads_and_a_damaged_one_is_none(tmp_path: Path) -> None:
    curve = CacheContext(12.5, 0.4, 1.1, ("a", "b"))
    curve.save(tmp_path / "c.json")
    assert CacheContext.load(tmp_path / "c.json") == curve
    (tmp_path / "bad.json").write_text("{")
    assert CacheContext.load(tmp_path / "bad.json") is None and CacheContext.load(tmp_path / "none.json") is None


@pytest.mark.timings_ignored
def test_a_recipe_with_a_far_way_profiles_trains_and_predicts_both(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """`profile` times every kernel the recipe's way and then its far way (a second campaign, kept as such);
    `train` fits both; a prediction with the device's curve is its kernels' near sum moved the curve's share
    of the way to their far sum, and without a curve the near sum alone."""
    from edgelat.predictors.predict import load_model, predict_network
    from edgelat.profiler.recipes import get_recipe

    recipe = get_recipe("default")
    monkeypatch.setattr(recipe, "caches", "llc")
    monkeypatch.setattr(recipe, "far_caches", "flushed")
    w = str(tmp_path / "W")
    fast = ["--repeat", "3", "--min-repeat-ms", "2", "-w", w]
    done = runner.invoke(app, ["profile", "local", "--ops", "dense,activation", "--samples", "10", "--unweighted", *fast])
    assert done.exit_code == 0, done.stderr
    assert "20/20 kernels stored" in done.stdout and ", flushed: done, 20/20 kernels stored" in done.stdout
    with open_workspace(Path(w)) as ws:
        ways = ws.store.rows("SELECT c.caches AS campaign, m.caches, COUNT(*) AS n FROM measurements m JOIN campaigns c ON c.id = m.campaign_id "
                             "WHERE m.status = 'ok' GROUP BY c.caches, m.caches")  # fmt: skip
        assert {(r["campaign"], r["caches"]): r["n"] for r in ways} == {(None, "llc"): 20, ("flushed", "flushed"): 20}
    again = runner.invoke(app, ["profile", "local", "--retime", *fast])
    assert again.exit_code == 0 and "nothing to re-time" in again.stdout
    trained = runner.invoke(app, ["train", "local", "-w", w])
    assert trained.exit_code == 0, trained.stdout + trained.stderr
    assert "dense" in trained.stdout.partition("local (default, timed flushed): cross-validated accuracy")[2], trained.stdout
    net = torch.nn.Sequential(torch.nn.Linear(256, 512), torch.nn.ReLU(), torch.nn.Linear(512, 64))
    with open_workspace(Path(w)) as ws:
        meta = json.loads((ws.model_dir("local", "default") / "meta.json").read_text())
        assert meta["caches"] == "llc" and set(meta[FAR]["ops"]) == {"dense", "activation"}
        model = load_model(ws, "local")
        assert model.far is not None and model.context is None
        alone = predict_network(ws, "local", net, input_shape=(1, 256), memory=False)
        assert alone.context is None
        near = alone.total_ms
        far = predict_network(ws, "local", net, input_shape=(1, 256), memory=False, latency_model=model.far).total_ms
        folder = ws.model_dir("local", "default")
        CacheContext(center_mb=0.5, width=0.3, height=0.8, models=models_tag(folder)).save(folder / CONTEXT_FILE)
        placed = predict_network(ws, "local", net, input_shape=(1, 256), memory=False)
    c = placed.context
    assert c is not None and c.near_ms == pytest.approx(near) and c.far_ms == pytest.approx(far)
    assert c.footprint_mb == pytest.approx((256 * 512 + 512 + 512 * 64 + 64) * 4 / 2**20, rel=0.05)  # weights, and small activations
    assert c.share == pytest.approx(CacheContext(0.5, 0.3, 0.8).share(c.footprint_mb))
    assert placed.total_ms == pytest.approx(near + c.share * (far - near))
    assert sum(k.predicted_ms for k in placed.kernels) == pytest.approx(placed.total_ms)
    # Pruning and search price as predict does: the pricer places a network, and its kernels at that network's share;
    # the oracle places an architecture by its blocks' two sums and their footprint.
    from edgelat.nas import get_space
    from edgelat.predictors.predict import NetworkPricer
    from edgelat.workflows.oracle import device_oracle, predict_archs

    with open_workspace(Path(w)) as ws:
        pricer = NetworkPricer(load_model(ws, "local"))
        total, items = pricer.network(net, torch.randn(1, 256))
        assert total == pytest.approx(placed.total_ms) and pricer.share == pytest.approx(c.share)
        assert float(sum(pricer.kernels(items))) == pytest.approx(placed.total_ms)  # every kernel has a kind's model here
        space = get_space("nb201")
        arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|"
        whole = predict_network(ws, "local", space.build(arch), input_shape=space.input_shape(arch), memory=False)
        oracle = device_oracle(ws, "local", space)
        by_blocks = predict_archs(ws, "local", space, [arch], oracle=oracle)[0]
    assert whole.context is not None and 0.1 < whole.context.share < 0.9
    assert oracle.footprint_mb(space.blocks(arch)) == pytest.approx(whole.context.footprint_mb, rel=0.15)
    assert by_blocks.total_ms == pytest.approx(whole.total_ms, rel=0.1)  # NB201's blocks add up within 0-6% (a ReLU fuses across cells)
    assert sum(ms for _, ms in by_blocks.blocks) == pytest.approx(by_blocks.total_ms)
    # Trained again, the models do not take the curve fitted to the sums of the ones before: the near sum, with a warning.
    import logging

    from edgelat.predictors.train import train_device

    logging.getLogger().addHandler(caplog.handler)  # (the CLI's logging set-up above took it off the root logger)
    caplog.clear()
    with open_workspace(Path(w)) as ws:
        train_device(ws, "local")
        assert (ws.model_dir("local", "default") / CONTEXT_FILE).exists() and load_model(ws, "local").context is None
        again_alone = predict_network(ws, "local", net, input_shape=(1, 256), memory=False)
    assert again_alone.context is None and "fitted to models since trained again" in caplog.text


@pytest.mark.timings_ignored
def test_an_interrupted_far_campaign_resumes_timing_the_far_way(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgelat.profiler.campaign import ProfileConfig, profile, untimed_configs
    from edgelat.profiler.recipes import get_recipe

    monkeypatch.setattr(get_recipe("default"), "far_caches", "flushed")

    def crash(done: int) -> None:
        if done == 3:
            raise RuntimeError("host died")

    with open_workspace(tmp_path / "W") as ws:
        fast = {"repeat": 3, "min_repeat_ms": 2.0}
        profile(ws, "local", ProfileConfig(ops=("activation",), samples=6, weighted=False, **fast))  # type: ignore[arg-type]
        left = untimed_configs(ws, "local", "default", caches="flushed")
        assert len(left) == 6
        with pytest.raises(RuntimeError):
            profile(ws, "local", ProfileConfig(configs=left, caches="flushed", **fast), fault=crash)  # type: ignore[arg-type]
        assert len(untimed_configs(ws, "local", "default", caches="flushed")) == 3
        profile(ws, "local", ProfileConfig(**fast), resume=True)  # type: ignore[arg-type]
        assert untimed_configs(ws, "local", "default", caches="flushed") == ()
        rows = ws.store.rows("SELECT caches, COUNT(*) AS n FROM measurements WHERE status = 'ok' GROUP BY caches")
        assert {r["caches"]: r["n"] for r in rows} == {"warm": 6, "flushed": 6}
        with pytest.raises(Exception, match="not llc"):
            profile(ws, "local", ProfileConfig(configs=left, caches="llc", **fast))  # type: ignore[arg-type]


def test_validate_prices_each_network_by_a_curve_fitted_to_the_others_and_saves_the_curve_of_all(ws: Workspace, tmp_path: Path) -> None:
    from edgelat.predictors.model import DeviceLatencyModel
    from edgelat.workflows.validate import ValidationReport, ValidationRow, _context_plot, _in_context

    truth = CacheContext(center_mb=14.0, width=0.3, height=0.9)
    rows = _rows(truth, [5, 7, 9, 11, 13, 16, 19, 24])
    report = ValidationReport("local", "tuned")
    for r in rows:
        report.rows.append(ValidationRow(r.name, 96, 10, r.near_ms, r.near_ms, r.measured_ms, 100 * (r.near_ms / r.measured_ms - 1), 0.0))
    model = DeviceLatencyModel("local", "tuned", {}, {})
    _in_context(ws, model, report, {r.name: (r.far_ms, r.footprint_mb) for r in rows})
    for row, r in zip(report.rows, rows, strict=True):
        assert row.near_ms == r.near_ms and row.far_ms == r.far_ms and row.touched_mb == r.footprint_mb
        assert row.predicted_ms == pytest.approx(r.measured_ms, rel=0.01) and abs(row.error_pct) < 1
        assert row.context_share == pytest.approx(truth.share(r.footprint_mb), abs=0.02)
    assert report.near_metrics["within_10"] < 100  # the near sums alone miss the larger networks
    folder = ws.model_dir("local", "tuned")
    saved = CacheContext.load(folder / CONTEXT_FILE, models_tag(folder))
    assert saved is not None and saved.center_mb == pytest.approx(14.0, rel=0.02) and report.context == asdict(saved)
    (folder / "meta.json").write_text("{}")  # the models trained again
    assert CacheContext.load(folder / CONTEXT_FILE, models_tag(folder)) is None
    (folder / "meta.json").unlink()
    assert _context_plot(report, tmp_path / "c.png").stat().st_size > 0
    # Too few networks to cross-fit: the near sums stand, nothing is saved.
    few = ValidationReport("local", "tuned", rows=[ValidationRow(r.name, 96, 10, r.near_ms, r.near_ms, r.measured_ms, 0.0, 0.0) for r in rows[:4]])
    (ws.model_dir("local", "tuned") / CONTEXT_FILE).unlink()
    _in_context(ws, model, few, {r.name: (r.far_ms, r.footprint_mb) for r in rows})
    assert few.context is None and [r.predicted_ms for r in few.rows] == [r.near_ms for r in rows[:4]]
    assert not (ws.model_dir("local", "tuned") / CONTEXT_FILE).exists()


def test_one_network_the_kernel_model_misses_does_not_bend_the_curve() -> None:
    truth = CacheContext(center_mb=14.0, width=0.3, height=0.9)
    rows = _rows(truth, [5, 7, 9, 11, 13, 16, 19, 24, 45])
    missed = rows[6]
    rows[6] = ContextRow(missed.name, missed.footprint_mb, missed.near_ms, missed.far_ms, missed.measured_ms / 1.3)
    fitted = CacheContext.fit(rows)
    # (a plain least-squares fit of the same rows prices one of the others 9% off)
    assert max(abs(fitted.price(r) / r.measured_ms - 1) for r in rows if r.name != missed.name) < 0.04
