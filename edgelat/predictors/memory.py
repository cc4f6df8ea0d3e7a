"""Memory and storage of a network on a device, predicted from its module and the device's measurements.

What is exact comes from the module (:func:`edgelat.ops.footprint.network_footprint`): the weights the
library embeds and the activation memory Relax's static planner allocates. What depends on the device
is fitted on the networks measured there (``edgelat measure``, ``validate``, search verifications):

- peak resident memory = the runtime's fixed cost (the fresh process before it loads the network, its
  median over the device's measurements) + the planned activations (allocated and written once per run:
  fixed at one, not fitted, as networks whose activations are small next to their weights cannot tell)
  + a * weights + c * kernels + d;
- deployable size = weights + e * kernels + f (the code around the weights).

Coefficients are non-negative least squares (scikit-learn's ``LinearRegression(positive=True)``), fitted
with at least :data:`MIN_NETWORKS` measured networks; with fewer, memory is the runtime's cost plus
weights plus activations and size the weights alone (and the prediction says it is not fitted).
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgelat.ops.footprint import Footprint
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


@dataclass(frozen=True)
class MemoryPrediction:
    memory_mb: float | None  # peak resident memory; None when the device has no measured network to learn its runtime from
    size_mb: float
    params_mb: float
    activation_mb: float
    fitted: bool  # False: the unfitted sums of the module docstring


def measured_memory(ws: Workspace, device: str) -> list[MeasuredMemory]:
    """Every network measured on ``device`` (for a group: on its members) with its memory, the newest
    measurement of each network."""
    from edgelat.profiler.inventory import get_device

    names = [device, *get_device(ws, device).members]
    rows = ws.db.execute(
        "SELECT name, network_hash, data FROM network_measurements WHERE device IN (SELECT value FROM json_each(?)) ORDER BY id DESC",
        (json.dumps(names),),
    )
    found: dict[str, MeasuredMemory] = {}
    for row in rows:
        data: dict[str, Any] = json.loads(row["data"])
        if row["network_hash"] in found or data.get("peak_memory_mb") is None or data.get("params_bytes") is None:
            continue
        footprint = Footprint(int(data["params_bytes"]), int(data["planned_activation_bytes"]), int(data["kernels_built"]))
        found[row["network_hash"]] = MeasuredMemory(
            row["name"], row["network_hash"], footprint, float(data["peak_memory_mb"]), float(data["runtime_memory_mb"]), int(data["size_bytes"])
        )
    return list(found.values())


def _memory_features(f: Footprint) -> list[float]:
    return [f.params_bytes / MB, float(f.kernels)]


class MemoryModel:
    """Peak memory and deployable size of networks on one device (see the module docstring)."""

    def __init__(self, measured: Sequence[MeasuredMemory]) -> None:
        from sklearn.linear_model import LinearRegression

        self.networks = len(measured)
        self.runtime_mb = statistics.median(m.runtime_mb for m in measured) if measured else None
        self.fitted = len(measured) >= MIN_NETWORKS
        self._memory: Any = None
        self._code: Any = None
        if self.fitted:
            x = np.array([_memory_features(m.footprint) for m in measured])
            own = [m.peak_mb - m.runtime_mb - m.footprint.activation_bytes / MB for m in measured]
            self._memory = LinearRegression(positive=True).fit(x, own)
            kernels = np.array([[float(m.footprint.kernels)] for m in measured])
            self._code = LinearRegression(positive=True).fit(kernels, [(m.size_bytes - m.footprint.params_bytes) / MB for m in measured])

    @classmethod
    def for_device(cls, ws: Workspace, device: str, leave_out: str | None = None) -> MemoryModel:
        """Fitted on ``device``'s measured networks (but the one whose hash is ``leave_out``)."""
        return cls([m for m in measured_memory(ws, device) if m.network_hash != leave_out])

    def predict(self, footprint: Footprint) -> MemoryPrediction:
        params, activations = footprint.params_bytes / MB, footprint.activation_bytes / MB
        if self.fitted:
            fitted = float(self._memory.predict(np.array([_memory_features(footprint)]))[0])
            memory: float | None = fitted + activations + float(self.runtime_mb or 0.0)
            size = params + max(0.0, float(self._code.predict(np.array([[float(footprint.kernels)]]))[0]))
        else:
            memory = None if self.runtime_mb is None else self.runtime_mb + params + activations
            size = params
        return MemoryPrediction(memory, size, params, activations, self.fitted)
