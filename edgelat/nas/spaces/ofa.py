"""A once-for-all MobileNetV3 space (Cai et al., ICLR 2020): elastic depth, kernel, expansion, width, resolution.

An architecture string is ``r{resolution}_w{width}`` and one ``_``-separated token per stage,
the stage's blocks joined by ``-``, each ``k{kernel}e{expansion}``::

    r160_w1.0_k3e4-k5e6_k7e3-k3e3-k5e4_k3e6-k3e6_k5e4-k5e4-k3e3-k7e6_k3e3-k5e6

The macro network is OFA's MobileNetV3-Large: a 3x3 stride-2 conv stem (16 channels, h-swish),
one fixed 3x3 depthwise block, five elastic stages (24, 40, 80, 112, 160 channels; strides 2,
2, 2, 1, 2; ReLU in the first two, h-swish after; squeeze-excite in stages 2, 4 and 5) of 2-4
inverted-residual blocks each, then a 1x1 conv to 960 channels, global pooling, a 1280-wide
h-swish layer and a 1000-way classifier. The width multiplier scales every channel count
but the 1280 of the head (rounded to multiples of 8).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
from torch import nn

from edgelat.datasets.zoo import InvertedResidual, SqueezeExcite, conv_bn, init_weights, make_divisible
from edgelat.errors import UsageError
from edgelat.nas.spaces.base import SearchSpace, register_space

RESOLUTIONS = (128, 160, 192, 224)
WIDTHS = (0.75, 1.0)
KERNELS = (3, 5, 7)
EXPANSIONS = (3, 4, 6)
DEPTHS = (2, 3, 4)
# (channels, stride of the first block, activation, squeeze-excite) of each elastic stage
STAGES = ((24, 2, "relu", False), (40, 2, "relu", True), (80, 2, "hswish", False), (112, 1, "hswish", True), (160, 2, "hswish", True))
_MAX_DEPTH = max(DEPTHS)
_GENES_PER_STAGE = 1 + 2 * _MAX_DEPTH
_ACTS = {"relu": nn.ReLU, "hswish": nn.Hardswish}
_BLOCK = re.compile(r"k(\d+)e(\d+)")


def _conv_out(size: int, stride: int) -> int:
    return (size + stride - 1) // stride


def _mb_block(in_ch: int, out_ch: int, stride: int, kernel: int, expansion: int, act: str, se: bool) -> nn.Module:
    mid = make_divisible(in_ch * expansion)
    squeeze = SqueezeExcite(mid, make_divisible(mid // 4), nn.ReLU, nn.Hardsigmoid) if se else None
    return InvertedResidual(in_ch, mid, out_ch, kernel, stride, _ACTS[act], squeeze)


def _stem(width: float) -> nn.Sequential:
    c = make_divisible(16 * width)
    return nn.Sequential(conv_bn(3, c, 3, 2, act=nn.Hardswish), InvertedResidual(c, c, c, 3, 1, nn.ReLU))


def _head(in_ch: int, width: float, num_classes: int = 1000) -> nn.Sequential:
    c = make_divisible(960 * width)
    return nn.Sequential(
        conv_bn(in_ch, c, 1, act=nn.Hardswish),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(c, 1280),
        nn.Hardswish(),
        nn.Linear(1280, num_classes),
    )


@register_space
class OFASpace(SearchSpace):
    name = "ofa"
    description = "once-for-all MobileNetV3: depth 2-4 per stage, kernel 3/5/7, expansion 3/4/6, width 0.75/1.0, 128-224 px"
    choices = (len(RESOLUTIONS), len(WIDTHS)) + (len(DEPTHS), *(len(KERNELS), len(EXPANSIONS)) * _MAX_DEPTH) * len(STAGES)

    def decode(self, genes: Sequence[int] | np.ndarray) -> str:
        g = [int(v) for v in genes]
        tokens = [f"r{RESOLUTIONS[g[0]]}", f"w{WIDTHS[g[1]]}"]
        for s in range(len(STAGES)):
            base = 2 + s * _GENES_PER_STAGE
            depth = DEPTHS[g[base]]
            tokens.append("-".join(f"k{KERNELS[g[base + 1 + 2 * b]]}e{EXPANSIONS[g[base + 2 + 2 * b]]}" for b in range(depth)))
        return "_".join(tokens)

    def parse(self, arch: str) -> tuple[int, float, list[list[tuple[int, int]]]]:
        """(resolution, width, per stage [(kernel, expansion), ...]) of an architecture string."""
        if not isinstance(arch, str):
            raise UsageError(f"an ofa arch must be a string, got {type(arch).__name__}")
        tokens = arch.strip().split("_")
        if len(tokens) != 2 + len(STAGES) or not tokens[0].startswith("r") or not tokens[1].startswith("w"):
            raise UsageError(f"ofa arch {arch!r} must read r<resolution>_w<width> and {len(STAGES)} stages joined by '_'")
        try:
            resolution, width = int(tokens[0][1:]), float(tokens[1][1:])
        except ValueError:
            raise UsageError(f"ofa arch {arch!r}: cannot read resolution {tokens[0]!r} or width {tokens[1]!r}") from None
        if resolution not in RESOLUTIONS:
            raise UsageError(f"ofa arch {arch!r}: resolution {resolution} not in {RESOLUTIONS}")
        if width not in WIDTHS:
            raise UsageError(f"ofa arch {arch!r}: width {width} not in {WIDTHS}")
        stages = []
        for s, token in enumerate(tokens[2:], start=1):
            blocks = []
            for block in token.split("-"):
                m = _BLOCK.fullmatch(block)
                if m is None or int(m[1]) not in KERNELS or int(m[2]) not in EXPANSIONS:
                    raise UsageError(f"ofa arch {arch!r}: block {block!r} of stage {s} is not k{{3,5,7}}e{{3,4,6}}")
                blocks.append((int(m[1]), int(m[2])))
            if len(blocks) not in DEPTHS:
                raise UsageError(f"ofa arch {arch!r}: stage {s} has {len(blocks)} blocks; depths are {DEPTHS}")
            stages.append(blocks)
        return resolution, width, stages

    def encode(self, arch: str) -> np.ndarray:
        resolution, width, stages = self.parse(arch)
        genes = [RESOLUTIONS.index(resolution), WIDTHS.index(width)]
        for blocks in stages:
            stage = [DEPTHS.index(len(blocks))] + [0] * (2 * _MAX_DEPTH)
            for b, (k, e) in enumerate(blocks):
                stage[1 + 2 * b], stage[2 + 2 * b] = KERNELS.index(k), EXPANSIONS.index(e)
            genes += stage
        return np.array(genes)

    def _layout(self, arch: str) -> tuple[int, float, list[tuple[int, int, int, int, int, int, str, bool]]]:
        """Resolution, width and (in, out, stride, input size, kernel, expansion, act, se) of every elastic block."""
        resolution, width, stages = self.parse(arch)
        in_ch, size = make_divisible(16 * width), _conv_out(resolution, 2)
        layout = []
        for (channels, stride, act, se), blocks in zip(STAGES, stages, strict=True):
            out_ch = make_divisible(channels * width)
            for b, (k, e) in enumerate(blocks):
                s = stride if b == 0 else 1
                layout.append((in_ch, out_ch, s, size, k, e, act, se))
                in_ch, size = out_ch, _conv_out(size, s)
        return resolution, width, layout

    def build(self, arch: str) -> Any:
        resolution, width, layout = self._layout(arch)
        blocks = [_mb_block(i, o, s, k, e, act, se) for i, o, s, _, k, e, act, se in layout]
        return init_weights(nn.Sequential(_stem(width), *blocks, _head(layout[-1][1], width)))

    def input_shape(self, arch: str) -> tuple[int, ...]:
        resolution = self.parse(arch)[0]
        return (1, 3, resolution, resolution)

    def proxy_input_shape(self, arch: str) -> tuple[int, ...]:
        """A quarter of the resolution (32-56 px), to keep scoring cheap; FLOPs still grow with the resolution squared."""
        resolution = self.parse(arch)[0] // 4
        return (1, 3, resolution, resolution)

    def blocks(self, arch: str) -> list[str]:
        resolution, width, layout = self._layout(arch)
        last = layout[-1]
        keys = [f"stem:r{resolution}:w{width}"]
        keys += [f"mb:{i}>{o}:s{s}:{size}:k{k}e{e}:{act}:{int(se)}" for i, o, s, size, k, e, act, se in layout]
        keys.append(f"head:{last[1]}:{_conv_out(last[3], last[2])}:w{width}")
        return keys

    def build_block(self, key: str) -> tuple[Any, tuple[int, ...]]:
        kind, *parts = key.split(":")
        if kind == "stem":
            resolution, width = int(parts[0][1:]), float(parts[1][1:])
            return _stem(width), (1, 3, resolution, resolution)
        if kind == "head":
            in_ch, size, width = int(parts[0]), int(parts[1]), float(parts[2][1:])
            return _head(in_ch, width), (1, in_ch, size, size)
        channels, stride, size_text, ke, act, se = parts  # `size` is the head branch's int
        in_ch, out_ch = (int(c) for c in channels.split(">"))
        k, e = (int(v) for v in _BLOCK.fullmatch(ke).groups())  # type: ignore[union-attr]
        return _mb_block(in_ch, out_ch, int(stride[1:]), k, e, act, se == "1"), (1, in_ch, int(size_text), int(size_text))
