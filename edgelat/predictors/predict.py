"""Predicting whole networks: split into the kernels the device runs, predict each, sum."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from edgelat.errors import UsageError
from edgelat.ops import get_op
from edgelat.ops.network import network_kernels
from edgelat.ops.onnx_import import ShapeArg
from edgelat.predictors.adapt import AdaptedLatencyModel
from edgelat.predictors.model import DeviceLatencyModel, KernelPrediction, Prediction, grouped_ms, kernel_group, predict_kernels
from edgelat.workspace import Workspace

if TYPE_CHECKING:
    from edgelat.predictors.memory import MemoryModel

__all__ = [
    "DeviceLatencyModel",
    "KernelPrediction",
    "NetworkMemoryPricer",
    "NetworkPricer",
    "Prediction",
    "grouped_ms",
    "kernel_group",
    "load_model",
    "load_network",
    "predict_kernels",
    "predict_network",
]


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


def load_model(ws: Workspace, device: str, recipe: str | None = None) -> DeviceLatencyModel:
    """The latency model of ``device``: its trained models, or for a device adapted from another
    (``edgelat adapt``), the source's models through its adapter."""
    from edgelat.profiler.inventory import get_device

    if ws.adapter_file(device).exists():
        return AdaptedLatencyModel.load_adapted(ws, device)
    if get_device(ws, device).is_adapted:
        raise UsageError(f"{device} is an adapted device whose adapter is missing: run `edgelat adapt {device} --from SOURCE ...` again")
    return DeviceLatencyModel.load(ws, device, recipe)


def predict_network(
    ws: Workspace,
    device: str,
    network: Any,
    *,
    input_shape: ShapeArg = None,
    recipe: str | None = None,
    strict: bool = False,
    memory: bool = True,
    latency_model: DeviceLatencyModel | None = None,
) -> Prediction:
    """Predicted latency of ``network`` (ONNX path, torch module or Relax module) on ``device``; with
    ``memory``, its peak memory and deployable size too (``prediction.memory``: :mod:`edgelat.predictors.memory`).
    ``latency_model``: the device's models, when already loaded (a service keeps them)."""
    from edgelat.ops.footprint import network_footprint

    model = latency_model or load_model(ws, device, recipe)
    mod = load_network(network, input_shape)
    footprint = network_footprint(mod) if memory or model.in_context else None
    touched = footprint.touched_mb if footprint is not None and model.in_context else None
    prediction = predict_kernels(model, network_kernels(mod), strict=strict, footprint_mb=touched)
    if memory and footprint is not None:
        from edgelat.predictors.memory import MemoryModel

        prediction.memory = MemoryModel.for_device(ws, device).predict(footprint)
    return prediction


def covered_ops(model: DeviceLatencyModel) -> list[str]:
    return sorted(op for op in model.models if not get_op(op).composite)


class NetworkPricer:
    """Prices torch modules and single kernels with a device's model: what pruning loops ask.

    On a device with a fitted cache context a network is priced as ``predict`` prices it (between its kernels' two
    ways, by its footprint), and single kernels at the share of the way of the network priced last: a cut changes
    the footprint a little, and the share with it, which the next network's price takes in."""

    def __init__(self, model: DeviceLatencyModel) -> None:
        self.model = model
        self.share = 0.0

    def network(self, module: Any, example: Any) -> tuple[float, list[tuple[str, dict[str, Any]]]]:
        from edgelat.ops.footprint import network_footprint

        mod = load_network(module, example=example)
        kernels = network_kernels(mod)
        prediction = predict_kernels(self.model, kernels, footprint_mb=network_footprint(mod).touched_mb if self.model.in_context else None)
        self.share = prediction.context.share if prediction.context is not None else 0.0
        return prediction.total_ms, [(k.op, k.config) for k in kernels if k.op is not None and k.config is not None]

    def kernels(self, items: Sequence[tuple[str, dict[str, Any]]]) -> np.ndarray:
        return self.model.placed(self.model.predict(items), items, self.share)


class NetworkMemoryPricer:
    """Prices torch modules' peak memory with a device's memory model: what pruning under a memory limit asks."""

    def __init__(self, model: MemoryModel) -> None:
        if model.runtime_mb is None:
            raise UsageError("the device has no network measured with its memory yet: measure one (edgelat measure) first")
        self.model = model

    def network(self, module: Any, example: Any) -> tuple[float, float]:
        from edgelat.ops.footprint import network_footprint

        footprint = network_footprint(load_network(module, example=example))
        memory = self.model.predict(footprint).memory_mb
        assert memory is not None
        return memory, self.model.weight_slope(footprint)
