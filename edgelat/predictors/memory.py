"""Memory and storage of a network on a device, predicted from its module and the device's measurements.

What is exact comes from the module (:func:`edgelat.ops.footprint.network_footprint`): the weights the
library embeds and the activation memory Relax's static planner allocates. What depends on the device
is fitted on the networks measured there (``edgelat measure``, ``validate``, search verifications):

- peak resident memory = the runtime's fixed cost (the fresh process before it loads the network, its
  median over the device's measurements) + the larger of loading the network (a * weights: the library
  mapped and its constants copied out, transient copies included) and running it (b * weights + the
  planned activations + the largest kernel's workspace) + c * kernels + d;
- deployable size = weights + e * kernels + f (the code around the weights).

The peak's coefficients are a least-squares fit on relative errors (SciPy's ``least_squares``; a, b, c
non-negative), the size's non-negative least squares (scikit-learn), with at least :data:`MIN_NETWORKS`
measured networks. With fewer, a = b = 1 and c = d = 0 (weights once, plus what running allocates) and size
is the weights alone; the prediction says it is not fitted. Loading and running are told apart only by
networks whose activations are large next to their weights (high resolutions): measure some.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import sqlalchemy as sa

from edgelat.ops.footprint import Footprint
from edgelat.predictors.results import MemoryPrediction
from edgelat.workspace import Workspace

__all__ = ["MIN_NETWORKS", "MemoryModel", "MemoryPrediction", "MeasuredMemory", "measured_memory"]

MIN_NETWORKS = 4
MB = 2**20


@dataclass(frozen=True)
class MeasuredMemory:
    """One network measured on the device: its footprint and what the device showed."""

    name: str
    network_hash: str
    footprint: Footprint
    peak_mb: float
    runtime_mb: float
    size_bytes: int


def measured_memory(ws: Workspace, device: str) -> list[MeasuredMemory]:
    """Every network measured on ``device`` (for a group: on its members) with its memory, the newest
    measurement of each network."""
    from edgelat.profiler.inventory import get_device

    names = [device, *get_device(ws, device).members]
    stmt = sa.text("SELECT name, network_hash, data FROM network_measurements WHERE device IN :names ORDER BY id DESC")
    rows = ws.store.rows(stmt.bindparams(sa.bindparam("names", expanding=True)), {"names": names})
    found: dict[str, MeasuredMemory] = {}
    for row in rows:
        data: dict[str, Any] = json.loads(row["data"])
        if row["network_hash"] in found or data.get("peak_memory_mb") is None or data.get("params_bytes") is None:
            continue
        footprint = Footprint(int(data["params_bytes"]), int(data["planned_activation_bytes"]), int(data["kernels_built"]),
                              int(data.get("workspace_bytes") or 0))  # fmt: skip
        found[row["network_hash"]] = MeasuredMemory(
            row["name"], row["network_hash"], footprint, float(data["peak_memory_mb"]), float(data["runtime_memory_mb"]), int(data["size_bytes"])
        )
    return list(found.values())


def _run_mb(f: Footprint) -> float:
    """What running the network allocates: its planned activations and the largest kernel's workspace."""
    return (f.activation_bytes + f.workspace_bytes) / MB


def _memory_features(f: Footprint) -> list[float]:
    return [f.params_bytes / MB, float(f.kernels)]


def _own_mb(params: np.ndarray, run: np.ndarray, kernels: np.ndarray, theta: np.ndarray) -> np.ndarray:
    """The memory a network adds to the runtime's: the larger of loading it (a * weights: the library mapped
    and its constants copied out) and running it (b * weights + activations + workspace), plus c per kernel
    and d."""
    a, b, c, d = theta
    return np.maximum(a * params, b * params + run) + c * kernels + d


class MemoryModel:
    """Peak memory and deployable size of networks on one device (see the module docstring)."""

    def __init__(self, measured: Sequence[MeasuredMemory]) -> None:
        from scipy.optimize import least_squares
        from sklearn.linear_model import LinearRegression

        self.networks = len(measured)
        self.runtime_mb = statistics.median(m.runtime_mb for m in measured) if measured else None
        self.fitted = len(measured) >= MIN_NETWORKS
        self.theta = np.array([1.0, 1.0, 0.0, 0.0])
        self._code: Any = None
        if self.fitted:
            params = np.array([m.footprint.params_bytes / MB for m in measured])
            run = np.array([_run_mb(m.footprint) for m in measured])
            kernels = np.array([float(m.footprint.kernels) for m in measured])
            own = np.array([m.peak_mb - m.runtime_mb for m in measured])
            # Relative residuals: a small network's error counts as much as a large one's.
            fit = least_squares(
                lambda t: (_own_mb(params, run, kernels, t) - own) / np.maximum(own, 1.0),
                x0=[4.0, 2.0, 0.0, 0.0],
                bounds=([0.0, 0.0, 0.0, -np.inf], [np.inf, np.inf, np.inf, np.inf]),
            )
            self.theta = fit.x
            self._code = LinearRegression(positive=True).fit(
                kernels[:, None], [(m.size_bytes - m.footprint.params_bytes) / MB for m in measured]
            )

    @classmethod
    def for_device(cls, ws: Workspace, device: str, leave_out: str | None = None) -> MemoryModel:
        """Fitted on ``device``'s measured networks (but the one whose hash is ``leave_out``)."""
        return cls([m for m in measured_memory(ws, device) if m.network_hash != leave_out])

    def predict(self, footprint: Footprint) -> MemoryPrediction:
        params, activations = footprint.params_bytes / MB, footprint.activation_bytes / MB
        if self.runtime_mb is None:
            memory = None
        else:
            own = _own_mb(np.array([params]), np.array([_run_mb(footprint)]), np.array([float(footprint.kernels)]), self.theta)
            memory = float(own[0]) + self.runtime_mb
        size = params
        if self.fitted:
            size += max(0.0, float(self._code.predict(np.array([[float(footprint.kernels)]]))[0]))
        return MemoryPrediction(memory, size, params, activations, self.fitted)

    def weight_slope(self, footprint: Footprint) -> float:
        """MB of predicted peak memory per MB of weights, at ``footprint``: a where loading the network is the
        larger term, else b."""
        a, b = self.theta[:2]
        params = footprint.params_bytes / MB
        return float(a if a * params >= b * params + _run_mb(footprint) else b)
