"""What a prediction returns, as plain data: a network's latency with its per-kernel breakdown and its memory,
and an architecture of a search space priced block by block. Nothing here imports TVM, torch or the models,
so :mod:`edgelat.client` hands back the same objects from a service without them."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["ArchPrediction", "ContextPrediction", "KernelPrediction", "MemoryPrediction", "Prediction"]


@dataclass
class KernelPrediction:
    name: str
    op: str | None
    config: dict[str, Any] | None
    predicted_ms: float
    share: float = 0.0
    # Priced by the fallback model (no kind claims the kernel, or the device has no model of its kind).
    fallback: bool = False


@dataclass(frozen=True)
class MemoryPrediction:
    memory_mb: float | None  # peak resident memory; None when the device has no measured network to learn its runtime from
    size_mb: float
    params_mb: float
    activation_mb: float
    fitted: bool  # False: the unfitted sums of edgelat.predictors.memory's docstring


@dataclass(frozen=True)
class ContextPrediction:
    """How a network was put between its kernels' two ways (edgelat.predictors.context)."""

    near_ms: float  # its kernels priced the recipe's way (a network in the last level)
    far_ms: float  # and the far way (their weights in memory)
    footprint_mb: float  # what one run touches: weights and planned activations
    share: float  # of the way from near to far, by the device's fitted curve


@dataclass
class Prediction:
    device: str
    recipe: str
    total_ms: float
    kernels: list[KernelPrediction] = field(default_factory=list)
    # Share of the predicted time priced by a dedicated kind's model (the rest by the fallback).
    coverage: float = 1.0
    # Memory and storage, when asked for.
    memory: MemoryPrediction | None = None
    # Where between its kernels' two ways the network was priced (None: the recipe's way alone).
    context: ContextPrediction | None = None

    def as_dict(self) -> dict[str, Any]:
        lightness = {}
        if self.memory is not None:
            m = self.memory
            lightness = {"memory_mb": m.memory_mb, "size_mb": m.size_mb, "params_mb": m.params_mb,
                         "planned_activation_mb": m.activation_mb, "memory_fitted": m.fitted}  # fmt: skip
        return {
            "device": self.device,
            "recipe": self.recipe,
            "total_ms": self.total_ms,
            **lightness,
            "coverage": self.coverage,
            **({"context": self.context.__dict__} if self.context is not None else {}),
            "kernels": [k.__dict__ for k in self.kernels],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Prediction:
        """The prediction :meth:`as_dict` described (what ``predict --json`` and the service return)."""
        memory = None
        if "size_mb" in data:
            memory = MemoryPrediction(data.get("memory_mb"), data["size_mb"], data["params_mb"], data["planned_activation_mb"],
                                      data["memory_fitted"])  # fmt: skip
        kernels = [KernelPrediction(**k) for k in data.get("kernels", [])]
        context = ContextPrediction(**data["context"]) if data.get("context") else None
        return cls(data["device"], data["recipe"], data["total_ms"], kernels, data.get("coverage", 1.0), memory, context)


@dataclass
class ArchPrediction:
    """One architecture of a space priced block by block (see :class:`edgelat.nas.oracle.BlockOracle`)."""

    arch: str
    device: str
    recipe: str
    total_ms: float
    blocks: list[tuple[str, float]]
    # Milliseconds of the total priced by the fallback model (kernels of kinds without a model).
    fallback_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "device": self.device,
            "recipe": self.recipe,
            "total_ms": self.total_ms,
            "fallback_ms": self.fallback_ms,
            "blocks": [{"block": key, "ms": ms} for key, ms in self.blocks],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ArchPrediction:
        blocks = [(b["block"], b["ms"]) for b in data.get("blocks", [])]
        return cls(data["arch"], data["device"], data["recipe"], data["total_ms"], blocks, data.get("fallback_ms", 0.0))
