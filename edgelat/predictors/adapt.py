"""Few-shot adaptation: a device known from a handful of end-to-end latencies.

The source device's kernel models predict every kernel of a network; the new device's
latency is modelled as a non-negative reweighting of those predictions by kernel group
(:func:`edgelat.predictors.model.kernel_group`: conv, pointwise conv, depthwise conv,
pooling, elementwise, ...) plus a fixed cost per kernel launched::

    new_ms(network) = sum_g w_g * source_ms_g(network) + w_launch * kernels(network)

Every weight starts from one prior, the new device's overall speed ratio to the source, and
moves away from it only as far as the measurements support: a ridge penalty towards the
prior whose strength is chosen by leave-one-out cross-validation. With 3 measurements it is
a calibrated scale; with 50 it learns which kinds of kernels the new device is relatively
good or bad at. Because the model is per kernel, an adapted device predicts any network,
with a per-kernel breakdown, like a profiled one.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelat.errors import UsageError
from edgelat.predictors.model import DeviceLatencyModel, kernel_group
from edgelat.predictors.train import accuracy_metrics
from edgelat.workspace import Workspace

__all__ = ["LAUNCH", "MIN_MEASUREMENTS", "AdaptedLatencyModel", "Adapter", "fit_adapter", "save_adapter"]

# The fewest measurements a fit needs: a scale and a held-out check of it.
MIN_MEASUREMENTS = 3
LAUNCH = "n_kernels"
_ALPHAS = (1e-6, 1e-5, 1e-4, 1e-3, 0.01, 0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 100.0)


@dataclass
class Adapter:
    """Weights that turn a source device's kernel predictions into a new device's."""

    source: str
    recipe: str
    # ms per ms of source prediction, per kernel group; groups not listed use ``scale``
    weights: dict[str, float]
    # ms per kernel launched
    launch_ms: float
    scale: float
    alpha: float
    n: int
    # leave-one-out metrics on the measurements the adapter was fitted on
    cv: dict[str, float] = field(default_factory=dict)

    def predict(self, features: Sequence[dict[str, float]]) -> np.ndarray:
        """New-device milliseconds of networks given as source group sums (and ``n_kernels``)."""
        return np.array(
            [
                sum(self.weights.get(g, self.scale) * v for g, v in f.items() if g != LAUNCH) + self.launch_ms * f.get(LAUNCH, 0.0)
                for f in features
            ]
        )


def _solve(z: np.ndarray, prior: np.ndarray, alpha: float) -> np.ndarray:
    """Non-negative v minimising ||1 - z v||^2 + alpha ||v - prior||^2."""
    from scipy.optimize import nnls

    k = z.shape[1]
    a = np.vstack([z, np.sqrt(alpha) * np.eye(k)])
    b = np.concatenate([np.ones(len(z)), np.sqrt(alpha) * prior])
    return nnls(a, b)[0]


def fit_adapter(features: Sequence[dict[str, float]], latency_ms: Sequence[float], source: str, recipe: str) -> Adapter:
    """Fit the weights on measured networks; ``features`` are the source's group sums per network.

    Raises:
        UsageError: fewer than :data:`MIN_MEASUREMENTS` measurements, or networks without any
            kernel the source predicts.
    """
    y = np.asarray(latency_ms, dtype=float)
    if len(y) < MIN_MEASUREMENTS:
        raise UsageError(f"adapting needs at least {MIN_MEASUREMENTS} measured networks, got {len(y)}")
    groups = sorted({g for f in features for g in f if g != LAUNCH})
    totals = np.array([sum(v for g, v in f.items() if g != LAUNCH) for f in features])
    if np.any(totals <= 0):
        row = int(np.argmax(totals <= 0))
        raise UsageError(f"measured network {row + 1} has no kernel the source device predicts")
    scale = float(np.median(y / totals))
    launches = np.array([f.get(LAUNCH, 0.0) for f in features])
    # Columns scaled so that every weight's prior is 1 (groups) or 0 (launch cost), in units of the prior.
    launch_unit = scale * float(np.mean(totals) / max(np.mean(launches), 1.0))
    x = np.column_stack([[f.get(g, 0.0) * scale for f in features] for g in groups] + [launches * launch_unit])
    z = x / y[:, None]
    prior = np.array([1.0] * len(groups) + [0.0])

    def loo(alpha: float) -> np.ndarray:
        pred = np.empty(len(y))
        for i in range(len(y)):
            keep = np.arange(len(y)) != i
            pred[i] = x[i] @ _solve(z[keep], prior, alpha)
        return pred

    best_alpha, best_pred, best_err = _ALPHAS[-1], None, np.inf
    for alpha in _ALPHAS:
        pred = loo(alpha)
        err = float(np.sqrt(np.mean(((pred - y) / y) ** 2)))
        if err < best_err - 1e-12:
            best_alpha, best_pred, best_err = alpha, pred, err
    v = _solve(z, prior, best_alpha)
    weights = {g: float(v[i] * scale) for i, g in enumerate(groups)}
    cv = accuracy_metrics(y, best_pred) if best_pred is not None else {}
    if len(y) >= 4 and best_pred is not None:
        from scipy.stats import spearmanr

        cv["spearman"] = float(spearmanr(y, best_pred).statistic)
    return Adapter(source, recipe, weights, float(v[-1] * launch_unit), scale, best_alpha, len(y), cv)


class AdaptedLatencyModel(DeviceLatencyModel):
    """A device predicted from another device's kernel models through an :class:`Adapter`."""

    def __init__(self, device: str, source: DeviceLatencyModel, adapter: Adapter) -> None:
        super().__init__(device, source.recipe, source.models, {"adapted_from": adapter.source, **asdict(adapter)})
        self.source = source
        self.adapter = adapter

    @classmethod
    def load_adapted(cls, ws: Workspace, device: str) -> AdaptedLatencyModel:
        data = json.loads(ws.adapter_file(device).read_text())
        adapter = Adapter(**{k: v for k, v in data.items() if k in Adapter.__dataclass_fields__})
        return cls(device, DeviceLatencyModel.load(ws, adapter.source, adapter.recipe), adapter)

    def predict(self, items: Sequence[tuple[str, dict[str, Any]]]) -> np.ndarray:
        source_ms = self.source.predict(items)
        w = np.array([self.adapter.weights.get(kernel_group(op, cfg), self.adapter.scale) for op, cfg in items])
        return w * source_ms + self.adapter.launch_ms  # NaN (no source model) stays NaN


def save_adapter(ws: Workspace, device: str, adapter: Adapter) -> Path:
    path = ws.adapter_file(device)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({**asdict(adapter), "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())}, indent=2))
    return path
