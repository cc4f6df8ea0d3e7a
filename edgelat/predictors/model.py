"""A device's kernel latency models and what they predict: kernels in, milliseconds (and a breakdown) out.

:class:`DeviceLatencyModel` holds one trained model per op kind and the fallback model;
:func:`predict_kernels` prices a network's kernels with it. Loading the model of any device
(adapted ones too) is :func:`edgelat.predictors.predict.load_model`.
"""

from __future__ import annotations

import json
import logging
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgelat.errors import ModelFileError, UsageError
from edgelat.ops import get_op
from edgelat.ops.network import Kernel, KernelRecord
from edgelat.ops.registry import FEATURE_SCHEMA_VERSION
from edgelat.predictors import CONTEXT_FILE, FALLBACK, FAR
from edgelat.predictors.context import CacheContext, models_tag
from edgelat.predictors.estimators import MODEL_FORMAT, load_estimator
from edgelat.predictors.results import ContextPrediction, KernelPrediction, Prediction
from edgelat.workspace import Workspace

__all__ = ["DeviceLatencyModel", "KernelPrediction", "Prediction", "far_ms", "grouped_ms", "kernel_group", "predict_kernels"]

log = logging.getLogger(__name__)

# A kernel as a network's import gives it, or as a cache keeps it: both price the same way.
PricedKernel = Kernel | KernelRecord


class DeviceLatencyModel:
    """The trained kernel models of one (device, recipe); ``predict`` takes (op, config) pairs."""

    def __init__(
        self,
        device: str,
        recipe: str,
        models: dict[str, Any],
        meta: dict[str, Any],
        fallback: Any = None,
        far: DeviceLatencyModel | None = None,
        context: CacheContext | None = None,
    ) -> None:
        self.device = device
        self.recipe = recipe
        self.models = models
        self.meta = meta
        # Prices kernels no kind's model covers, from the features every kernel has (None in old workspaces).
        self.fallback = fallback
        # The same kinds timed the recipe's far way (Recipe.far_caches), and where the device's networks run between
        # the two by their footprint (edgelat.predictors.context); None where the recipe or the device has none.
        self.far = far
        self.context = context
        self._memo: dict[tuple[Any, ...], float] = {}

    @classmethod
    def load(cls, ws: Workspace, device: str, recipe: str | None = None) -> DeviceLatencyModel:
        """The models trained on ``device``'s own measurements (see :func:`edgelat.predictors.predict.load_model`
        for any device, adapted ones included)."""
        from edgelat.profiler.inventory import default_recipe

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
            models, fallback = _estimators(folder, meta)
            far = None
            if isinstance(meta.get(FAR), dict):
                far_models, far_fallback = _estimators(folder / FAR, meta[FAR])
                far = cls(device, recipe, far_models, meta[FAR], far_fallback)
        except ModelFileError as exc:
            raise ModelFileError(f"the {recipe} models of {device} cannot be used: {exc}; {retrain}") from None
        return cls(device, recipe, models, meta, fallback, far, CacheContext.load(folder / CONTEXT_FILE, models_tag(folder)) if far else None)

    @property
    def in_context(self) -> bool:
        """Whether a network's footprint places its kernels between two ways (a far model and a fitted curve)."""
        return self.far is not None and self.context is not None

    def placed(self, near_ms: np.ndarray, items: Sequence[tuple[str, dict[str, Any]]], share: float) -> np.ndarray:
        """Kernels priced ``near_ms`` the recipe's way, moved ``share`` of the way to their far prices (a kind
        without a far model stays at its near price)."""
        if self.far is None or share == 0.0:
            return near_ms
        far_ms = self.far.predict(items)
        return near_ms + share * (np.where(np.isnan(far_ms), near_ms, far_ms) - near_ms)

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

    def predict_fallback(self, kernels: Sequence[PricedKernel]) -> np.ndarray:
        """Milliseconds of kernels no kind's model covers, by the fallback model (NaN without one)."""
        if self.fallback is None or not kernels:
            return np.full(len(kernels), np.nan)
        rows = [k.generic_features() for k in kernels]
        names = list(self.fallback.feature_names_in_)
        return np.asarray(self.fallback.predict_array(np.array([[r[n] for n in names] for r in rows], dtype=float)), dtype=float)


def _estimators(folder: Path, meta: dict[str, Any]) -> tuple[dict[str, Any], Any]:
    """The kinds' models and the fallback (None) that ``meta`` lists in ``folder``."""
    return {op: load_estimator(folder / op) for op in meta["ops"]}, load_estimator(folder / FALLBACK) if meta.get(FALLBACK) else None


def predict_kernels(
    model: DeviceLatencyModel, kernels: Sequence[PricedKernel], *, strict: bool = False, footprint_mb: float | None = None
) -> Prediction:
    """Each kernel priced by its kind's model, or by the fallback model where there is none.

    With ``strict``, a kernel without a dedicated model is refused instead, with the kinds to
    profile and the kernels no kind claims. With the network's ``footprint_mb`` and a device whose models
    have a far way and a fitted context, each kernel is priced between its two ways where the network's
    footprint puts it (:mod:`edgelat.predictors.context`; ``prediction.context`` says how).
    """
    ms, missing = _priced(model, kernels, strict)
    context = None
    if footprint_mb is not None and model.in_context:
        assert model.far is not None and model.context is not None
        far_ms = _far_priced(model.far, kernels, ms)
        share = model.context.share(footprint_mb)
        context = ContextPrediction(float(np.sum(ms)), float(np.sum(far_ms)), footprint_mb, share)
        ms = ms + share * (far_ms - ms)
    total = float(np.sum(ms))
    dedicated = np.ones(len(ms), dtype=bool)
    dedicated[missing] = False
    out = [
        KernelPrediction(k.name, k.op, k.config, float(v), float(v) / total if total > 0 else 0.0, not d)
        for k, v, d in zip(kernels, ms, dedicated, strict=True)
    ]
    coverage = float(np.sum(ms[dedicated]) / total) if total > 0 else 1.0
    return Prediction(model.device, model.recipe, total, out, coverage, context=context)


def far_ms(model: DeviceLatencyModel, kernels: Sequence[PricedKernel]) -> float:
    """The kernels' sum priced the recipe's far way, as :func:`predict_kernels` places them (``model.far`` needed)."""
    assert model.far is not None
    return float(np.sum(_far_priced(model.far, kernels, _priced(model, kernels, False)[0])))


def _far_priced(far: DeviceLatencyModel, kernels: Sequence[PricedKernel], near_ms: np.ndarray) -> np.ndarray:
    """Each kernel's milliseconds by the far models; a kernel they do not price (no far fallback), its near price."""
    ms = _priced(far, kernels, False)[0]
    return np.where(np.isnan(ms), near_ms, ms)


def _priced(model: DeviceLatencyModel, kernels: Sequence[PricedKernel], strict: bool) -> tuple[np.ndarray, list[int]]:
    """Each kernel's milliseconds by ``model``, and which of them the fallback priced."""
    items = [(k.op or "", k.config or {}) for k in kernels]
    ms = model.predict(items)
    missing = [i for i, v in enumerate(ms) if np.isnan(v)]
    if missing and strict:
        raise UsageError(_no_predictor_message(model, [kernels[i] for i in missing]) + "; without --strict the fallback model prices them")
    if missing:
        log.info("%d of %d kernels priced by the fallback model: %s", len(missing), len(kernels),
                 ", ".join(sorted({kernels[i].label for i in missing})))  # fmt: skip
        priced = model.predict_fallback([kernels[i] for i in missing])
        if np.isnan(priced).any():
            raise UsageError(
                _no_predictor_message(model, [kernels[i] for i in missing])
                + f", and the models of {model.device} have no fallback (trained by an older edgelat): run `edgelat train {model.device}`"
            )
        ms[missing] = priced
    return ms, missing


def _no_predictor_message(model: DeviceLatencyModel, kernels: Sequence[PricedKernel]) -> str:
    kinds = sorted({k.op for k in kernels if k.op})
    odd = [k.name for k in kernels if not k.op]
    parts = []
    if kinds:
        parts.append(f"profile them with `edgelat profile {model.device} --ops {','.join(kinds)}`")
    if odd:
        names = sorted(set(odd))
        parts.append(f"{len(odd)} match no kind ({', '.join(names[:6])}{f', ... {len(names)} in all' if len(names) > 6 else ''})")
    return f"{len(kernels)} kernel(s) have no model of their kind on {model.device}: " + "; ".join(parts)


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
