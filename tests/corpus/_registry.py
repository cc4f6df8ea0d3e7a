"""The CorpusNet record and the registration helper the family modules share."""

from __future__ import annotations

import functools
import zlib
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

FAMILIES = ("cnn", "mobile", "shuffle", "segmentation", "detection", "transformer", "multi_input", "odd")

# What ``export_onnx(..., dynamic=True)`` makes symbolic for a network:
#   "spatial": the batch dim and the spatial dims of every image input (H, W of rank-4 inputs, L of rank-3 ones);
#   "batch":   only the batch dim (the network bakes its input resolution in: position embeddings, fixed
#              reshapes, pooling kernels or pads computed in Python from the input size, ...);
#   "static":  nothing (the network hard-codes batch 1); the export is the static one.
DYNAMIC_MODES = ("spatial", "batch", "static")

CALIBRATION_BATCH = 4


@dataclass(frozen=True)
class CorpusNet:
    name: str  # unique, snake_case
    family: str  # one of FAMILIES
    idiom: str  # one line: which idioms it exercises
    build: Callable[[], nn.Module]  # fresh module in eval(), weights seeded deterministically
    input_shapes: tuple[tuple[int, ...], ...]  # one per forward() input, batch 1
    dynamic: str = "spatial"  # see DYNAMIC_MODES
    opset: int = 0  # default torchscript opset (assigned by corpus(), spread over 11-17)
    dynamo_opset: int = 0  # default dynamo opset (assigned by corpus(), spread over 18-21)
    min_opset: int = 11  # lowest torchscript opset that exports this network
    note: str = ""  # why ``dynamic`` is not "spatial", exporter quirks, ...


def _seed(name: str) -> int:
    return zlib.crc32(name.encode())


def _randomize_norms(model: nn.Module) -> None:
    """Trained networks do not have unit scales and zero shifts in their norm layers: make them random."""
    norms = (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)
    for m in model.modules():
        if isinstance(m, norms) and getattr(m, "weight", None) is not None:
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                if m.bias is not None:
                    m.bias.normal_(0.0, 0.1)


@torch.no_grad()
def _calibrate(model: nn.Module, shapes: tuple[tuple[int, ...], ...], batch: int) -> None:
    """Give BatchNorm layers the running statistics of the activations they see (like a trained network)."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    if not bns:
        return
    momenta = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the calibration batches
    model.train()
    for _ in range(2):
        model(*(torch.randn(batch, *s[1:]) for s in shapes))
    for m, momentum in zip(bns, momenta, strict=True):
        m.momentum = momentum


def _build(factory: Callable[[], nn.Module], name: str, shapes: tuple[tuple[int, ...], ...], calib_batch: int) -> nn.Module:
    with torch.random.fork_rng(devices=[]):  # seed without disturbing the caller's global RNG
        torch.manual_seed(_seed(name))
        model = factory()
        _randomize_norms(model)
        _calibrate(model, shapes, calib_batch)
    return model.eval()


def make_net(
    name: str,
    family: str,
    idiom: str,
    factory: Callable[[], nn.Module],
    input_shapes: tuple[tuple[int, ...], ...],
    *,
    dynamic: str = "spatial",
    min_opset: int = 11,
    note: str = "",
) -> CorpusNet:
    if family not in FAMILIES:
        raise ValueError(f"{name}: unknown family {family!r}")
    if dynamic not in DYNAMIC_MODES:
        raise ValueError(f"{name}: unknown dynamic mode {dynamic!r}")
    shapes = tuple(tuple(int(d) for d in s) for s in input_shapes)
    if not shapes or any(s[0] != 1 for s in shapes):
        raise ValueError(f"{name}: input shapes must have batch 1: {shapes}")
    calib_batch = 1 if dynamic == "static" else CALIBRATION_BATCH
    build = functools.partial(_build, factory, name, shapes, calib_batch)
    return CorpusNet(name, family, idiom, build, shapes, dynamic=dynamic, min_opset=min_opset, note=note)


def registry(nets: list[CorpusNet], family: str) -> Callable[..., Callable[[Callable[[], nn.Module]], Callable[[], nn.Module]]]:
    """``@register(name, idiom, shape, ..., dynamic=..., min_opset=..., note=..., family=...)`` on a class or factory."""

    def register(name: str, idiom: str, *input_shapes: tuple[int, ...], family_: str | None = None, **kwargs: object):
        def deco(factory: Callable[[], nn.Module]) -> Callable[[], nn.Module]:
            nets.append(make_net(name, family_ or family, idiom, factory, input_shapes, **kwargs))  # type: ignore[arg-type]
            return factory

        return deco

    return register
