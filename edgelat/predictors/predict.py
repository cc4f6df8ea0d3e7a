"""Predicting whole networks: split into the kernels the device runs, predict each, sum."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgelat.errors import UsageError
from edgelat.ops import get_op
from edgelat.ops.network import Kernel, network_kernels
from edgelat.ops.registry import FEATURE_SCHEMA_VERSION
from edgelat.predictors.estimators import MODEL_FORMAT
from edgelat.predictors.train import default_recipe, model_dir
from edgelat.workspace import Workspace

__all__ = [
    "DeviceLatencyModel",
    "KernelPrediction",
    "Prediction",
    "grouped_ms",
    "kernel_group",
    "load_network",
    "module_latency",
    "predict_kernels",
    "predict_network",
]


class DeviceLatencyModel:
    """The trained kernel models of one (device, recipe); ``predict`` takes (op, config) pairs."""

    def __init__(self, device: str, recipe: str, models: dict[str, Any], meta: dict[str, Any]) -> None:
        self.device = device
        self.recipe = recipe
        self.models = models
        self.meta = meta
        self._memo: dict[tuple[Any, ...], float] = {}

    @classmethod
    def load(cls, ws: Workspace, device: str, recipe: str | None = None) -> DeviceLatencyModel:
        import joblib

        from edgelat.predictors.adapt import AdaptedLatencyModel, adapter_file

        if adapter_file(ws, device).exists():
            return AdaptedLatencyModel.load_adapted(ws, device)
        recipe = recipe or default_recipe(ws, device)
        folder = model_dir(ws, device, recipe)
        meta_file = folder / "meta.json"
        if not meta_file.exists():
            raise UsageError(f"no trained {recipe} models for {device}: run `edgelat train {device}` first")
        meta = json.loads(meta_file.read_text())
        if meta.get("feature_schema") != FEATURE_SCHEMA_VERSION:
            raise UsageError(
                f"the {recipe} models of {device} were trained with feature schema {meta.get('feature_schema')}, "
                f"this edgelat computes schema {FEATURE_SCHEMA_VERSION}: retrain with `edgelat train {device}`"
            )
        if meta.get("model_format", 1) != MODEL_FORMAT:
            raise UsageError(
                f"the {recipe} models of {device} were saved in model format {meta.get('model_format', 1)}, "
                f"this edgelat reads format {MODEL_FORMAT}: retrain with `edgelat train {device}`"
            )
        models = {op: joblib.load(folder / f"{op}.joblib") for op in meta["ops"]}
        return cls(device, recipe, models, meta)

    def forget(self) -> None:
        """Drop the remembered predictions (each (op, config) is predicted afresh)."""
        self._memo.clear()

    def predict(self, items: Sequence[tuple[str, dict[str, Any]]]) -> np.ndarray:
        """Predicted milliseconds of each (op, config); NaN where no model covers the op.

        Each distinct (op, config) is featurized and predicted once per model and remembered:
        networks and batches of networks repeat most of their kernels.
        """
        # Keyed by op, field names and values in the config's own order, one flat tuple (not sorted: a fifth
        # of the time): the same config in another key order is only predicted once more, never confused.
        keys = [(op, *cfg, *cfg.values()) for op, cfg in items]
        memo = self._memo
        todo: dict[str, dict[tuple[Any, ...], dict[str, Any]]] = defaultdict(dict)
        for key, (op, cfg) in zip(keys, items, strict=True):
            if key not in memo:
                todo[op][key] = cfg
        for op, configs in todo.items():
            model = self.models.get(op)
            if model is None:
                memo.update(dict.fromkeys(configs, np.nan))
                continue
            # The registry's one feature function, on all of this kind's new configs at once.
            ms = model.predict_array(get_op(op).feature_matrix(list(configs.values()), list(model.feature_names_in_)))
            memo.update(zip(configs, ms.tolist(), strict=True))
        return np.fromiter(map(memo.__getitem__, keys), dtype=float, count=len(keys))


@dataclass
class KernelPrediction:
    name: str
    op: str | None
    config: dict[str, Any] | None
    predicted_ms: float | None
    share: float = 0.0


@dataclass
class Prediction:
    device: str
    recipe: str
    total_ms: float
    kernels: list[KernelPrediction] = field(default_factory=list)
    # Kernels no predictor covers (listed only with allow_unpredicted).
    unpredicted: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "recipe": self.recipe,
            "total_ms": self.total_ms,
            "kernels": [k.__dict__ for k in self.kernels],
            "unpredicted": self.unpredicted,
        }


def load_network(model: Any, input_shape: Sequence[int] | None = None, example: Any = None) -> Any:
    """A Relax module from an ONNX path or a ``torch.nn.Module`` (with ``input_shape`` or ``example``)."""
    from edgelat.ops.network import relax_from_onnx, relax_from_torch

    if isinstance(model, (str, Path)):
        path = Path(model)
        if not path.exists():
            raise UsageError(f"no such model file: {path}")
        if path.suffix != ".onnx":
            raise UsageError(f"{path}: only .onnx files are read (or pass a torch.nn.Module from Python)")
        return relax_from_onnx(path, tuple(input_shape) if input_shape else None)
    import torch

    if isinstance(model, torch.nn.Module):
        if example is None:
            if input_shape is None:
                raise UsageError("a torch module needs input_shape or an example input")
            example = torch.randn(*input_shape)
        return relax_from_torch(model, example)
    return model  # already a Relax IRModule


def predict_kernels(model: DeviceLatencyModel, kernels: Sequence[Kernel], *, allow_unpredicted: bool = False) -> Prediction:
    items = [(k.op or "", k.config or {}) for k in kernels]
    ms = model.predict(items)
    missing = [k.group.name for k, v in zip(kernels, ms, strict=True) if np.isnan(v)]
    if missing and not allow_unpredicted:
        raise UsageError(
            f"{len(missing)} kernel(s) have no predictor: {', '.join(sorted(set(missing))[:8])}"
            + (" ..." if len(set(missing)) > 8 else "")
            + "; profile those op kinds, or pass --allow-unpredicted to list them"
        )
    total = float(np.nansum(ms))
    out = [
        KernelPrediction(
            k.group.name, k.op, k.config, None if np.isnan(v) else float(v), 0.0 if np.isnan(v) or total <= 0 else float(v) / total
        )
        for k, v in zip(kernels, ms, strict=True)
    ]
    return Prediction(model.device, model.recipe, total, out, missing)


def predict_network(
    ws: Workspace,
    device: str,
    network: Any,
    *,
    input_shape: Sequence[int] | None = None,
    recipe: str | None = None,
    allow_unpredicted: bool = False,
) -> Prediction:
    """Predicted latency of ``network`` (ONNX path, torch module or Relax module) on ``device``."""
    model = DeviceLatencyModel.load(ws, device, recipe)
    return predict_kernels(model, network_kernels(load_network(network, input_shape)), allow_unpredicted=allow_unpredicted)


def kernel_group(op: str, config: dict[str, Any]) -> str:
    """The feature group a kernel's latency counts towards when a device is adapted from another.

    The op kind; convolutions also by kernel size and grouping (``conv2d_k1``, ``conv2d_k3_g``,
    ``dwconv2d_k5``, ...): devices differ most in how they run those.
    """
    if op in ("conv2d", "dwconv2d"):
        return f"{op}_k{config.get('k')}" + ("_g" if op == "conv2d" and config.get("groups", 1) > 1 else "")
    return op


def grouped_ms(prediction: Prediction) -> dict[str, float]:
    """Predicted milliseconds per kernel group (see :func:`kernel_group`), and ``n_kernels``."""
    groups: dict[str, float] = defaultdict(float)
    for k in prediction.kernels:
        if k.op is not None and k.predicted_ms is not None and k.config is not None:
            groups[kernel_group(k.op, k.config)] += k.predicted_ms
            groups["n_kernels"] += 1.0
    return dict(groups)


def module_latency(model: DeviceLatencyModel) -> Callable[[Any, Any], dict[str, float]]:
    """A function pricing a torch module at an input shape (or a list of shapes, one per input) with ``model``.

    It returns the milliseconds per kernel group and the kernel count (:func:`grouped_ms`):
    what block oracles cache for a search space's blocks.
    """
    import torch

    def block_ms(module: Any, input_shape: tuple[int, ...] | list[tuple[int, ...]]) -> dict[str, float]:
        gen = torch.Generator().manual_seed(0)
        shapes = input_shape if isinstance(input_shape, list) else [input_shape]
        example = tuple(torch.randn(*s, generator=gen) for s in shapes)
        return grouped_ms(predict_kernels(model, network_kernels(load_network(module, example=example))))

    return block_ms


def covered_ops(model: DeviceLatencyModel) -> list[str]:
    return sorted(op for op in model.models if not get_op(op).composite)


class NetworkPricer:
    """Prices torch modules and single kernels with a device's model: what pruning loops ask."""

    def __init__(self, model: DeviceLatencyModel) -> None:
        self.model = model

    def network(self, module: Any, example: Any) -> tuple[float, list[tuple[str, dict[str, Any]]]]:
        kernels = network_kernels(load_network(module, example=example))
        prediction = predict_kernels(self.model, kernels)
        return prediction.total_ms, [(k.op, k.config) for k in kernels if k.op is not None and k.config is not None]

    def kernels(self, items: Sequence[tuple[str, dict[str, Any]]]) -> np.ndarray:
        return self.model.predict(items)
