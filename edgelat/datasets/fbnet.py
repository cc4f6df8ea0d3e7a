"""FBNet search-space networks (Wu et al., CVPR 2019) for 32x32 CIFAR-100 input.

An architecture is 22 layer choices, each ``skip`` or ``k{3,5}_e{1,3,6}``, the two ``e1``
choices also with ``_g2`` (see :data:`LAYER_CHOICES`). A ``kK_eE[_g2]`` layer is FBNet's block:
1x1 conv to ``E x`` the input channels + BN + ReLU, [channel shuffle], KxK depthwise conv + BN +
ReLU, 1x1 conv + BN, plus the input when the shapes allow it; ``_g2`` makes both 1x1 convs
group-2 and shuffles channels after the first. The first 1x1 conv is kept for ``e1`` too.

Macro architecture (Table 1 of the FBNet paper): a 3x3 conv stem with 16 channels + BN + ReLU,
seven stages of searched layers with 16, 24, 32, 64, 112, 184, 352 channels and 1, 4, 4, 4, 4,
4, 1 layers (22 in all), a 1x1 conv to 1504 channels + BN + ReLU, global average pooling and a
linear classifier. Only a stage's first layer changes channels or stride.

Adaptation to 32x32 input, as HW-NAS-Bench (whose latencies ``fbnet_latency_pixel3.csv``
holds) defines the CIFAR version: the stem has stride 1 instead of 2 and the stages strides
1, 1, 2, 2, 1, 2, 1 (ImageNet: 1, 2, 2, 2, 1, 2, 1), so the stages see 32, 32, 16, 8, 8, 4, 4
pixels; the last conv has 1504 channels (ImageNet: 1984).

``skip`` on a layer that changes channels or stride cannot be an identity; there it is
HW-NAS-Bench's (and FBNet's) projection: 1x1 conv with the layer's stride + BN + ReLU.

Example:
    >>> net = build_fbnet(["k3_e1"] * 22)
    >>> net(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 100])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from edgelat.datasets.zoo import ChannelShuffle, init_weights
from edgelat.errors import UsageError

__all__ = ["LAYER_CHOICES", "NUM_LAYERS", "FBNetBlock", "build_fbnet", "head", "layer_shapes", "parse_arch", "stem"]

# (kernel, expansion, pointwise groups) of each block choice; None is skip. In HW-NAS-Bench's
# order, so a choice's index is its op index there.
_CHOICES: dict[str, tuple[int, int, int] | None] = {
    "k3_e1": (3, 1, 1),
    "k3_e1_g2": (3, 1, 2),
    "k3_e3": (3, 3, 1),
    "k3_e6": (3, 6, 1),
    "k5_e1": (5, 1, 1),
    "k5_e1_g2": (5, 1, 2),
    "k5_e3": (5, 3, 1),
    "k5_e6": (5, 6, 1),
    "skip": None,
}
LAYER_CHOICES: tuple[str, ...] = tuple(_CHOICES)

_STEM_CHANNELS = 16
_HEAD_CHANNELS = 1504
# (channels, layers, stride of the first layer) of each stage
_STAGES = ((16, 1, 1), (24, 4, 1), (32, 4, 2), (64, 4, 2), (112, 4, 1), (184, 4, 2), (352, 1, 1))
NUM_LAYERS = sum(n for _, n, _ in _STAGES)


def parse_arch(arch: str | Sequence[str]) -> tuple[str, ...]:
    """Validate an FBNet architecture: 22 layer choices, as a sequence or a whitespace-separated string.

    The string form is how the ``arch`` column of ``fbnet_latency_pixel3.csv`` is written.

    Raises:
        UsageError: wrong number of layers or an unknown choice (named with its position).
    """
    layers = tuple(arch.split()) if isinstance(arch, str) else tuple(arch)
    if len(layers) != NUM_LAYERS:
        raise UsageError(f"an FBNet arch has {NUM_LAYERS} layers, got {len(layers)}: {arch!r}")
    for i, choice in enumerate(layers):
        if choice not in LAYER_CHOICES:
            raise UsageError(f"layer {i} of FBNet arch is {choice!r}; choices are {', '.join(LAYER_CHOICES)}")
    return layers


def _conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1, relu: bool = True) -> list[nn.Module]:
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if relu:
        layers.append(nn.ReLU())
    return layers


class FBNetBlock(nn.Module):
    """One searched layer: FBNet's inverted-residual block, or ``skip``."""

    def __init__(self, choice: str, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        shape_kept = stride == 1 and in_ch == out_ch
        spec = _CHOICES[choice]
        if spec is None:  # skip: an identity where the shapes allow it, else the projection
            self.use_residual = False
            self.body: nn.Module = nn.Identity() if shape_kept else nn.Sequential(*_conv_bn(in_ch, out_ch, 1, stride))
            return
        kernel_size, expansion, groups = spec
        mid_ch = in_ch * expansion
        layers = _conv_bn(in_ch, mid_ch, 1, groups=groups)
        if groups > 1:
            layers.append(ChannelShuffle(groups))
        layers += _conv_bn(mid_ch, mid_ch, kernel_size, stride, groups=mid_ch)
        layers += _conv_bn(mid_ch, out_ch, 1, groups=groups, relu=False)
        self.use_residual = shape_kept
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.body(x)
        return x + out if self.use_residual else out


def layer_shapes() -> list[tuple[int, int, int, int]]:
    """(input channels, output channels, stride, input size) of each of the 22 searched layers."""
    shapes, in_ch, size = [], _STEM_CHANNELS, 32
    for out_ch, n, stride in _STAGES:
        for i in range(n):
            s = stride if i == 0 else 1
            shapes.append((in_ch, out_ch, s, size))
            in_ch, size = out_ch, size // s
    return shapes


def stem() -> nn.Sequential:
    return nn.Sequential(*_conv_bn(3, _STEM_CHANNELS, 3))


def head(in_ch: int, num_classes: int = 100) -> nn.Sequential:
    """1x1 conv to 1504 channels + BN + ReLU, global average pooling, linear classifier."""
    return nn.Sequential(
        *_conv_bn(in_ch, _HEAD_CHANNELS, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(_HEAD_CHANNELS, num_classes)
    )


def build_fbnet(arch: str | Sequence[str], num_classes: int = 100) -> nn.Module:
    """Build the FBNet-space network of ``arch`` (see :func:`parse_arch`) for 32x32 input.

    Weights are freshly initialised with :func:`edgelat.datasets.zoo.init_weights`.
    """
    layers = [
        FBNetBlock(choice, in_ch, out_ch, stride)
        for choice, (in_ch, out_ch, stride, _) in zip(parse_arch(arch), layer_shapes(), strict=True)
    ]
    return init_weights(nn.Sequential(stem(), *layers, head(layer_shapes()[-1][1], num_classes)))
