"""Validation: predict and measure a zoo of real networks on a device, side by side."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from edgelat.errors import BuildError, UsageError
from edgelat.ops.footprint import network_footprint
from edgelat.ops.network import network_kernels, relax_from_torch
from edgelat.predictors.model import far_ms
from edgelat.predictors.predict import DeviceLatencyModel, load_model, predict_kernels
from edgelat.predictors.train import accuracy_metrics
from edgelat.workspace import Workspace

__all__ = ["ValidationReport", "ValidationRow", "validation_networks", "validate_device"]

# Small, diverse and quick: for tests, demos and the tuned recipe (where every network is tuned).
QUICK_ZOO = [("mobilenetv2_050", 128), ("mobilenetv3_small_100", 160), ("resnet18", 96), ("squeezenet1_1", 128), ("shufflenetv2_050", 128),
             ("mnasnet_050", 128), ("regnetx_002", 96), ("ghostnet_100", 96), ("proxylessnas_mobile", 96), ("efficientnet_b0", 96)]  # fmt: skip


def validation_networks(zoo: str = "all", seed: int = 0) -> list[tuple[str, Callable[[], Any], int]]:
    """(label, factory, resolution) of the validation zoo.

    A comma-separated list of: ``all`` (every (model, resolution) of
    :data:`edgelat.datasets.zoo.VALIDATION_ZOO` plus NAS-Bench-201 and FBNet samples at 32x32),
    ``quick`` (ten small networks), ``name@resolution``, or a zoo model name (at 160 and 224).
    """
    from edgelat.datasets import fbnet, nb201
    from edgelat.datasets import zoo as model_zoo

    pairs: list[tuple[str, int]] = []
    for token in [t.strip() for t in zoo.split(",") if t.strip()]:
        if token in ("all", "quick"):
            pairs += model_zoo.VALIDATION_ZOO if token == "all" else QUICK_ZOO
            continue
        name, _, res = token.partition("@")
        model_zoo.create_model(name)  # unknown names fail here, with close matches
        if res and not (res.isdigit() and int(res) >= 32):
            raise UsageError(f"{token!r}: the resolution after @ must be a whole number of pixels, at least 32")
        pairs += [(name, int(res))] if res else [(name, 160), (name, 224)]
    nets: list[tuple[str, Callable[[], Any], int]] = [(f"{n}@{r}", partial(model_zoo.create_model, n), r) for n, r in pairs]
    if "all" in [t.strip() for t in zoo.split(",")]:
        rng = np.random.default_rng(seed)
        for _ in range(3):
            cells = [f"{nb201.OPS[int(rng.integers(1, len(nb201.OPS)))]}~{i}" for j in range(3) for i in range(j + 1)]
            arch = "|" + "|+|".join("|".join(cells[j * (j + 1) // 2 : (j + 1) * (j + 2) // 2]) for j in range(3)) + "|"
            nets.append((f"nb201{arch}@32", partial(nb201.build_nb201, arch), 32))
        for _ in range(3):
            layers = [fbnet.LAYER_CHOICES[int(rng.integers(len(fbnet.LAYER_CHOICES)))] for _ in range(fbnet.NUM_LAYERS)]
            nets.append((f"fbnet:{'-'.join(layers[:3])}...@32", partial(fbnet.build_fbnet, layers), 32))
    return nets


# A network whose measurements spread more than this between rounds (max / min - 1, in %) was not measured on a
# steady device: against a ±10% accuracy target its error says as much about the device as about the predictor.
STEADY_SPREAD_PCT = 10.0


@dataclass
class ValidationRow:
    network: str
    resolution: int
    kernels: int
    predicted_ms: float
    flops_baseline_ms: float
    measured_ms: float
    error_pct: float
    flops_error_pct: float
    # Lightness. Weights (exact, from the module) and the library's size, measured and predicted; peak
    # resident memory measured and predicted (fitted on the device's other measured networks: leave one out)
    # and the part of it the network adds to the runtime's, measured and predicted.
    params_mb: float | None = None
    size_mb: float | None = None
    predicted_size_mb: float | None = None
    memory_mb: float | None = None
    predicted_memory_mb: float | None = None
    network_memory_mb: float | None = None
    predicted_network_memory_mb: float | None = None
    # measured_ms is the median of this many measurements (``rounds``), spread (max / min - 1) between them.
    measurements: int = 1
    measured_spread_pct: float = 0.0
    # A recipe with a far way (edgelat.predictors.context): the kernels priced both ways, the megabytes one run
    # touches, and the share of the way the curve fitted to the *other* networks gave it (predicted_ms is there).
    near_ms: float | None = None
    far_ms: float | None = None
    touched_mb: float | None = None
    context_share: float | None = None


@dataclass
class ValidationReport:
    device: str
    recipe: str
    rows: list[ValidationRow] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    flops_metrics: dict[str, float] = field(default_factory=dict)
    # Peak memory, the network's own part of it (peak - runtime), and the library's size: predicted vs measured.
    memory_metrics: dict[str, float] = field(default_factory=dict)
    network_memory_metrics: dict[str, float] = field(default_factory=dict)
    size_metrics: dict[str, float] = field(default_factory=dict)
    # The kernels' near sums alone against the measurements, and the curve fitted to every network (saved with the
    # models for predictions); None without a far way or with too few networks.
    near_metrics: dict[str, float] = field(default_factory=dict)
    # The networks whose measurements spread over STEADY_SPREAD_PCT between rounds, and the accuracy on the others
    # (empty when all or none are steady).
    unsteady: list[str] = field(default_factory=list)
    steady_metrics: dict[str, float] = field(default_factory=dict)
    context: dict[str, Any] | None = None
    plot: str | None = None
    context_plot: str | None = None
    table: str | None = None


def _steadiness(report: ValidationReport) -> None:
    """Which networks were measured on an unsteady device (spread over :data:`STEADY_SPREAD_PCT`), and the accuracy on
    the steady ones."""
    unsteady = [r.measurements > 1 and r.measured_spread_pct > STEADY_SPREAD_PCT for r in report.rows]
    report.unsteady = [r.network for r, u in zip(report.rows, unsteady, strict=True) if u]
    steady = [r for r, u in zip(report.rows, unsteady, strict=True) if not u]
    report.steady_metrics = (
        accuracy_metrics(np.array([r.measured_ms for r in steady]), np.array([r.predicted_ms for r in steady])) if report.unsteady and steady else {}
    )


def _flops_baseline(ws: Workspace, model: DeviceLatencyModel) -> DeviceLatencyModel:
    from edgelat.predictors import FALLBACK
    from edgelat.predictors.estimators import load_estimator

    folder = ws.model_dir(model.device, model.recipe)
    return DeviceLatencyModel(
        model.device, model.recipe, {op: load_estimator(folder / f"{op}.flops") for op in model.models}, model.meta,
        load_estimator(folder / f"{FALLBACK}.flops") if model.fallback is not None else None,
    )  # fmt: skip


def validate_device(
    ws: Workspace, device: str, *, zoo: str = "all", recipe: str | None = None, out_dir: Path | None = None, rounds: int = 1,
    fresh: bool = False,
    on_network: Callable[[str, ValidationRow | None], None] | None = None,
    on_measured: Callable[[str, int, float], None] | None = None,
) -> ValidationReport:  # fmt: skip
    """Predict and measure every network of ``zoo`` on ``device``; write a CSV table and a scatter plot.

    A network's measured time is the median of ``rounds`` end-to-end measurements taken in rounds (every
    network once a round, so that a slow spell of the device falls on one measurement of each, not on all of
    one). Measurements the workspace holds of a network built the same way count towards them (the newest
    first), unless ``fresh``; each new one is stored (``on_measured(network, round, ms)`` is told of it). A network
    is built once a run: later rounds time the same library, each loaded by a fresh process on the device."""
    with tempfile.TemporaryDirectory(prefix="edgelat-validate-") as libraries:
        return _validate(ws, device, zoo, recipe, out_dir, rounds, fresh, on_network, on_measured, Path(libraries))


def _validate(
    ws: Workspace, device: str, zoo: str, recipe: str | None, out_dir: Path | None, rounds: int, fresh: bool,
    on_network: Callable[[str, ValidationRow | None], None] | None, on_measured: Callable[[str, int, float], None] | None,
    libraries: Path,
) -> ValidationReport:  # fmt: skip
    import torch

    from edgelat.profiler.e2e import NetworkMeasurement, measure_network, network_hash, stored_measurements

    if rounds < 1:
        raise UsageError(f"rounds must be at least 1, not {rounds}")
    model = load_model(ws, device, recipe)
    flops = _flops_baseline(ws, model)
    report = ValidationReport(device, model.recipe)
    hashes: dict[str, str] = {}
    priced: dict[str, tuple[Any, int, Any, Any]] = {}  # network -> (module, resolution, prediction, FLOPs baseline)
    far: dict[str, tuple[float, float]] = {}  # network -> (its kernels priced the far way, the MB one run touches)
    measured: dict[str, list[NetworkMeasurement]] = {}
    networks = validation_networks(zoo)
    for r in range(rounds):
        for label, factory, res in networks:
            if label in report.failures:
                continue
            try:
                if r == 0:
                    torch.manual_seed(0)
                    mod = relax_from_torch(factory(), torch.randn(1, 3, res, res))
                    kernels = network_kernels(mod)
                    priced[label] = (mod, res, predict_kernels(model, kernels), predict_kernels(flops, kernels))
                    if model.far is not None:
                        far[label] = (far_ms(model, kernels), network_footprint(mod).touched_mb)
                    measured[label] = [] if fresh else stored_measurements(ws, device, mod, recipe=model.recipe)[:rounds]
                if len(measured[label]) <= r:
                    now = measure_network(ws, device, priced[label][0], name=label, recipe=model.recipe, per_kernel=False, library_dir=libraries)
                    measured[label].append(now)
                    if on_measured:
                        on_measured(label, r, now.median_ms)
            except (UsageError, BuildError) as exc:  # one network that cannot be built or priced: reported, the rest go on
                report.failures[label] = str(exc)
                if on_network:
                    on_network(label, None)
    for label, _, _ in networks:
        if label in report.failures:
            continue
        mod, res, pred, base = priced[label]
        times = [m.median_ms for m in measured[label]]
        first = measured[label][0]  # (weights, library and memory do not change between rounds)
        ms = float(np.median(times))
        row = ValidationRow(label, res, len(pred.kernels), pred.total_ms, base.total_ms, ms,
                            100 * (pred.total_ms / ms - 1), 100 * (base.total_ms / ms - 1),
                            params_mb=first.params_mb, size_mb=first.size_mb, memory_mb=first.peak_memory_mb,
                            measurements=len(times), measured_spread_pct=100 * (max(times) / min(times) - 1))  # fmt: skip
        hashes[label] = network_hash(mod)
        report.rows.append(row)
    if not report.rows:
        raise UsageError(f"no network of zoo {zoo!r} could be predicted on {device}: {next(iter(report.failures.values()), '')}")
    if far:
        _in_context(ws, model, report, far)
    for row in report.rows:
        if on_network:
            on_network(row.network, row)
    y = np.array([r.measured_ms for r in report.rows])
    report.metrics = accuracy_metrics(y, np.array([r.predicted_ms for r in report.rows]))
    report.flops_metrics = accuracy_metrics(y, np.array([r.flops_baseline_ms for r in report.rows]))
    _steadiness(report)
    _lightness(ws, device, report, hashes)
    out_dir = out_dir or ws.run_dir("validation", device, model.recipe)
    out_dir.mkdir(parents=True, exist_ok=True)
    import pandas as pd

    table = pd.DataFrame([asdict(r) for r in report.rows])
    table.to_csv(out_dir / "validation.csv", index=False)
    report.table = str(out_dir / "validation.csv")
    report.plot = str(_scatter(report, out_dir / "predicted_vs_measured.png"))
    if report.context is not None:
        report.context_plot = str(_context_plot(report, out_dir / "share_vs_footprint.png"))
    (out_dir / "report.json").write_text(json.dumps(asdict(report), indent=2))
    return report


def _in_context(ws: Workspace, model: DeviceLatencyModel, report: ValidationReport, far: dict[str, tuple[float, float]]) -> None:
    """Each network priced between its kernels' two ways by a curve fitted to the other networks (cross-fitted:
    what a network the device never ran is told); the curve fitted to all of them is saved with the models."""
    from edgelat.predictors import CONTEXT_FILE
    from edgelat.predictors.context import MIN_NETWORKS, CacheContext, ContextRow, cross_fitted, models_tag

    rows = [ContextRow(r.network, far[r.network][1], r.predicted_ms, far[r.network][0], r.measured_ms) for r in report.rows]
    report.near_metrics = accuracy_metrics(np.array([r.measured_ms for r in rows]), np.array([r.near_ms for r in rows]))
    for row, c in zip(report.rows, rows, strict=True):
        row.near_ms, row.far_ms, row.touched_mb = c.near_ms, c.far_ms, c.footprint_mb
    if len(rows) <= MIN_NETWORKS:  # (each network's curve is fitted to the others)
        return
    for row, c, price in zip(report.rows, rows, cross_fitted(rows), strict=True):
        assert price is not None
        row.context_share = (price - c.near_ms) / (c.far_ms - c.near_ms) if c.far_ms != c.near_ms else 0.0
        row.predicted_ms, row.error_pct = price, 100 * (price / row.measured_ms - 1)
    folder = ws.model_dir(model.device, model.recipe)
    folder.mkdir(parents=True, exist_ok=True)
    curve = replace(CacheContext.fit(rows), models=models_tag(folder))
    curve.save(folder / CONTEXT_FILE)
    report.context = asdict(curve)


def _lightness(ws: Workspace, device: str, report: ValidationReport, hashes: dict[str, str]) -> None:
    """Each row's memory and size predicted by a model fitted on the device's other measured networks."""
    from edgelat.predictors.memory import MemoryModel, measured_memory

    measured = {m.network_hash: m for m in measured_memory(ws, device)}
    for row in report.rows:
        m = measured.get(hashes[row.network])
        if m is None:
            continue
        others = MemoryModel([o for h, o in measured.items() if h != m.network_hash])
        predicted = others.predict(m.footprint)
        row.predicted_size_mb = predicted.size_mb
        row.network_memory_mb = m.peak_mb - m.runtime_mb
        if predicted.memory_mb is not None and others.runtime_mb is not None:
            row.predicted_memory_mb = predicted.memory_mb
            row.predicted_network_memory_mb = predicted.memory_mb - others.runtime_mb
    rows = [r for r in report.rows if r.predicted_memory_mb is not None]
    if rows:
        report.memory_metrics = accuracy_metrics(np.array([r.memory_mb for r in rows]), np.array([r.predicted_memory_mb for r in rows]))
        report.network_memory_metrics = accuracy_metrics(
            np.array([r.network_memory_mb for r in rows]), np.array([r.predicted_network_memory_mb for r in rows])
        )
    sized = [r for r in report.rows if r.predicted_size_mb is not None]
    if sized:
        report.size_metrics = accuracy_metrics(np.array([r.size_mb for r in sized]), np.array([r.predicted_size_mb for r in sized]))


def _context_plot(report: ValidationReport, path: Path) -> Path:
    """Where each network ran between its kernels' two ways, against the MB it touches, with the device's curve."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from edgelat.predictors.context import CacheContext

    assert report.context is not None
    curve = CacheContext(report.context["center_mb"], report.context["width"], report.context["height"])
    rows = [r for r in report.rows if r.touched_mb is not None and r.far_ms is not None and r.near_ms is not None and r.far_ms != r.near_ms]
    fig, ax = plt.subplots(figsize=(7, 4.5))
    mb = np.array([r.touched_mb for r in rows])
    # A network whose two sums nearly agree has a share that says little: kept on the scale, marked.
    low, high = -0.5, max(1.5, curve.height + 0.3)
    shares = np.array([(r.measured_ms - r.near_ms) / (r.far_ms - r.near_ms) for r in rows])  # type: ignore[operator]
    ax.scatter(mb, np.clip(shares, low, high), color="tab:blue", s=22, label="measured (clipped to the axes: marked >)")
    for r, x, y in zip(rows, mb, shares, strict=True):
        off = "" if low <= y <= high else f" > ({y:.1f})"
        ax.annotate(r.network + off, (x, float(np.clip(y, low, high))), fontsize=6, xytext=(3, 2), textcoords="offset points")
    grid = np.geomspace(mb.min() / 1.5, mb.max() * 1.5, 200)
    ax.plot(grid, [curve.share(x) for x in grid], "k-", lw=1, label=f"fitted to all (half way at {curve.center_mb:.1f} MB)")
    ax.axhline(0, color="tab:gray", lw=0.6)
    ax.axhline(1, color="tab:gray", lw=0.6, ls="--")
    ax.set(ylim=(low - 0.1, high + 0.1), xscale="log", xlabel="MB one run touches (weights + planned activations)",
           ylabel="share of the way from near to far sum", title=f"{report.device} ({report.recipe}): networks between their kernels' two ways")  # fmt: skip
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _scatter(report: ValidationReport, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    y = np.array([r.measured_ms for r in report.rows])
    fig, ax = plt.subplots(figsize=(6, 6))
    ax.scatter(
        y,
        [r.flops_baseline_ms for r in report.rows],
        s=18,
        marker="x",
        color="tab:gray",
        label=f"FLOPs baseline ({report.flops_metrics['within_10']:.0f}% within ±10%)",
    )
    shaky = np.array([r.network in report.unsteady for r in report.rows], dtype=bool)
    predicted = np.array([r.predicted_ms for r in report.rows])
    ax.scatter(y[~shaky], predicted[~shaky], s=22, color="tab:blue", label=f"edgelat ({report.metrics['within_10']:.0f}% within ±10%)")
    if shaky.any():
        ax.scatter(y[shaky], predicted[shaky], s=22, facecolors="none", edgecolors="tab:blue",
                   label=f"edgelat, measurements spread over {STEADY_SPREAD_PCT:.0f}%")  # fmt: skip
    lo, hi = float(y.min()) * 0.5, float(y.max()) * 2
    ax.plot([lo, hi], [lo, hi], "k-", lw=0.8)
    ax.fill_between([lo, hi], [lo * 0.9, hi * 0.9], [lo * 1.1, hi * 1.1], color="tab:green", alpha=0.15, label="±10%")
    ax.set(xscale="log", yscale="log", xlim=(lo, hi), ylim=(lo, hi), xlabel="measured latency (ms)", ylabel="predicted latency (ms)",
           title=f"{report.device} ({report.recipe}): {len(report.rows)} networks")  # fmt: skip
    ax.legend(loc="upper left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
