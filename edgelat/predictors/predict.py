"""Predicting whole networks: split into the kernels the device runs, predict each, sum."""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import numpy as np

from edgelat.errors import ModelFileError, UsageError
from edgelat.ops import get_op
from edgelat.ops.lowering import FusedGroup
from edgelat.ops.network import Kernel, network_kernels
from edgelat.ops.onnx_import import ShapeArg
from edgelat.ops.registry import FEATURE_SCHEMA_VERSION
from edgelat.predictors.estimators import MODEL_FORMAT, load_estimator
from edgelat.predictors.train import FALLBACK, default_recipe
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

log = logging.getLogger(__name__)


class DeviceLatencyModel:
    """The trained kernel models of one (device, recipe); ``predict`` takes (op, config) pairs."""

    def __init__(self, device: str, recipe: str, models: dict[str, Any], meta: dict[str, Any], fallback: Any = None) -> None:
        self.device = device
        self.recipe = recipe
        self.models = models
        self.meta = meta
        # Prices kernels no kind's model covers, from the features every kernel has (None in old workspaces).
        self.fallback = fallback
        self._memo: dict[tuple[Any, ...], float] = {}

    @classmethod
    def load(cls, ws: Workspace, device: str, recipe: str | None = None) -> DeviceLatencyModel:
        from edgelat.predictors.adapt import AdaptedLatencyModel
        from edgelat.profiler.inventory import get_device

        if ws.adapter_file(device).exists():
            return AdaptedLatencyModel.load_adapted(ws, device)
        if get_device(ws, device).is_adapted:
            raise UsageError(f"{device} is an adapted device whose adapter is missing: run `edgelat adapt {device} --from SOURCE ...` again")
        recipe = recipe or default_recipe(ws, device)
        folder = ws.model_dir(device, recipe)
        meta_file = folder / "meta.json"
        if not meta_file.exists():
            raise UsageError(f"no trained {recipe} models for {device}: run `edgelat train {device}` first")
        retrain = f"retrain with `edgelat train {device}`"
        try:
            meta = json.loads(meta_file.read_text())
            if not isinstance(meta, dict) or not isinstance(meta.get("ops"), dict):
                raise ValueError("no 'ops' in it")
        except (OSError, ValueError) as exc:
            raise ModelFileError(f"the {recipe} models of {device} cannot be used: {meta_file} is damaged ({exc}); {retrain}") from None
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
        try:
            models = {op: load_estimator(folder / op) for op in meta["ops"]}
            fallback = load_estimator(folder / FALLBACK) if meta.get(FALLBACK) else None
        except ModelFileError as exc:
            raise ModelFileError(f"the {recipe} models of {device} cannot be used: {exc}; {retrain}") from None
        return cls(device, recipe, models, meta, fallback)

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

    def predict_fallback(self, groups: Sequence[FusedGroup]) -> np.ndarray:
        """Milliseconds of kernels no kind's model covers, by the fallback model (NaN without one)."""
        if self.fallback is None or not groups:
            return np.full(len(groups), np.nan)
        from edgelat.ops.generic import group_features

        rows = [group_features(g) for g in groups]
        names = list(self.fallback.feature_names_in_)
        return np.asarray(self.fallback.predict_array(np.array([[r[n] for n in names] for r in rows], dtype=float)), dtype=float)


@dataclass
class KernelPrediction:
    name: str
    op: str | None
    config: dict[str, Any] | None
    predicted_ms: float
    share: float = 0.0
    # Priced by the fallback model (no kind claims the kernel, or the device has no model of its kind).
    fallback: bool = False


@dataclass
class Prediction:
    device: str
    recipe: str
    total_ms: float
    kernels: list[KernelPrediction] = field(default_factory=list)
    # Share of the predicted time priced by a dedicated kind's model (the rest by the fallback).
    coverage: float = 1.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "device": self.device,
            "recipe": self.recipe,
            "total_ms": self.total_ms,
            "coverage": self.coverage,
            "kernels": [k.__dict__ for k in self.kernels],
        }


def load_network(model: Any, input_shape: ShapeArg = None, example: Any = None) -> Any:
    """A Relax module from an ONNX path or a ``torch.nn.Module`` (with ``input_shape`` or ``example``).

    ``input_shape`` is one shape, one per input in order, or (ONNX) one per input name.
    """
    from edgelat.ops.network import relax_from_onnx, relax_from_torch

    if isinstance(model, (str, Path)):
        path = Path(model)
        if path.suffix != ".onnx":
            raise UsageError(f"{path}: only .onnx files are read (or pass a torch.nn.Module from Python)")
        return relax_from_onnx(path, input_shape)
    import torch

    if isinstance(model, torch.nn.Module):
        if example is None:
            if input_shape is None:
                raise UsageError("a torch module needs input_shape or an example input")
            if isinstance(input_shape, dict):
                raise UsageError("a torch module's inputs have no names: give their shapes in order")
            # one shape (all ints), or one per input
            shapes = cast("list[Sequence[int]]", [input_shape] if all(isinstance(d, int) for d in input_shape) else list(input_shape))
            example = tuple(torch.randn(*s) for s in shapes)
            example = example[0] if len(example) == 1 else example
        return relax_from_torch(model, example)
    return model  # already a Relax IRModule


def predict_kernels(model: DeviceLatencyModel, kernels: Sequence[Kernel], *, strict: bool = False) -> Prediction:
    """Each kernel priced by its kind's model, or by the fallback model where there is none.

    With ``strict``, a kernel without a dedicated model is refused instead, with the kinds to
    profile and the kernels no kind claims.
    """
    items = [(k.op or "", k.config or {}) for k in kernels]
    ms = model.predict(items)
    missing = [i for i, v in enumerate(ms) if np.isnan(v)]
    if missing and strict:
        raise UsageError(_no_predictor_message(model, [kernels[i] for i in missing]) + "; without --strict the fallback model prices them")
    if missing:
        log.info("%d of %d kernels priced by the fallback model: %s", len(missing), len(kernels),
                 ", ".join(sorted({kernels[i].op or "+".join(dict.fromkeys(kernels[i].group.ops)) for i in missing})))  # fmt: skip
        priced = model.predict_fallback([kernels[i].group for i in missing])
        if np.isnan(priced).any():
            raise UsageError(
                _no_predictor_message(model, [kernels[i] for i in missing])
                + f", and the models of {model.device} have no fallback (trained by an older edgelat): run `edgelat train {model.device}`"
            )
        ms[missing] = priced
    total = float(np.sum(ms))
    dedicated = np.ones(len(ms), dtype=bool)
    dedicated[missing] = False
    out = [
        KernelPrediction(k.group.name, k.op, k.config, float(v), float(v) / total if total > 0 else 0.0, not d)
        for k, v, d in zip(kernels, ms, dedicated, strict=True)
    ]
    coverage = float(np.sum(ms[dedicated]) / total) if total > 0 else 1.0
    return Prediction(model.device, model.recipe, total, out, coverage)


def _no_predictor_message(model: DeviceLatencyModel, kernels: Sequence[Kernel]) -> str:
    kinds = sorted({k.op for k in kernels if k.op})
    odd = [k.group.name for k in kernels if not k.op]
    parts = []
    if kinds:
        parts.append(f"profile them with `edgelat profile {model.device} --ops {','.join(kinds)}`")
    if odd:
        names = sorted(set(odd))
        parts.append(f"{len(odd)} match no kind ({', '.join(names[:6])}{f', ... {len(names)} in all' if len(names) > 6 else ''})")
    return f"{len(kernels)} kernel(s) have no model of their kind on {model.device}: " + "; ".join(parts)


def predict_network(
    ws: Workspace,
    device: str,
    network: Any,
    *,
    input_shape: ShapeArg = None,
    recipe: str | None = None,
    strict: bool = False,
) -> Prediction:
    """Predicted latency of ``network`` (ONNX path, torch module or Relax module) on ``device``."""
    model = DeviceLatencyModel.load(ws, device, recipe)
    return predict_kernels(model, network_kernels(load_network(network, input_shape)), strict=strict)


def kernel_group(op: str, config: dict[str, Any]) -> str:
    """The feature group a kernel's latency counts towards when a device is adapted from another
    (:meth:`edgelat.ops.OpSpec.adapt_group` of its kind)."""
    return get_op(op).adapt_group(config)


def grouped_ms(prediction: Prediction) -> dict[str, float]:
    """Predicted milliseconds per kernel group (see :func:`kernel_group`), and ``n_kernels``."""
    groups: dict[str, float] = defaultdict(float)
    for k in prediction.kernels:
        groups[FALLBACK if k.fallback or k.op is None else kernel_group(k.op, k.config or {})] += k.predicted_ms
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
