"""Building blocks the zoo's families (and the OFA search space) are made of."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

__all__ = ["Act", "ChannelShuffle", "InvertedResidual", "SqueezeExcite", "conv_bn", "make_divisible"]

Act = Callable[[], nn.Module]


# ---------------------------------------------------------------------------------------------
# Shared building blocks


def make_divisible(value: float, divisor: int = 8) -> int:
    """Round ``value`` to a multiple of ``divisor``, never going down by more than 10%."""
    new_value = max(divisor, int(value + divisor / 2) // divisor * divisor)
    if new_value < 0.9 * value:
        new_value += divisor
    return new_value


def conv_bn(in_ch: int, out_ch: int, kernel_size: int, stride: int = 1, groups: int = 1, act: Act | None = nn.ReLU) -> nn.Sequential:
    """Conv (no bias, 'same' padding) + BatchNorm (+ activation)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_ch),
    ]
    if act is not None:
        layers.append(act())
    return nn.Sequential(*layers)


def _head(in_features: int, num_classes: int) -> nn.Sequential:
    """Global average pooling + flatten + linear classifier."""
    return nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(in_features, num_classes))


class ChannelShuffle(nn.Module):
    """ShuffleNet's channel shuffle; reshapes with Python ints so exported graphs have static shapes."""

    def __init__(self, groups: int) -> None:
        super().__init__()
        self.groups = groups

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        x = x.reshape(n, self.groups, c // self.groups, h, w).transpose(1, 2)
        return x.reshape(n, c, h, w)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: pool, 1x1 conv down, activation, 1x1 conv up, gate, rescale."""

    def __init__(self, channels: int, squeeze_channels: int, act: Act = nn.ReLU, gate: Act = nn.Sigmoid) -> None:
        super().__init__()
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.reduce = nn.Conv2d(channels, squeeze_channels, 1)
        self.act = act()
        self.expand = nn.Conv2d(squeeze_channels, channels, 1)
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.expand(self.act(self.reduce(self.pool(x)))))


class InvertedResidual(nn.Module):
    """MobileNetV2-style block: [1x1 expand] -> kxk depthwise -> [SE] -> 1x1 project (+ identity).

    The expansion conv exists only when ``mid_ch != in_ch``; the identity shortcut only when
    the shapes allow it (stride 1, ``in_ch == out_ch``). Shared by MobileNetV2/V3, MnasNet,
    EfficientNet and ProxylessNAS.
    """

    def __init__(
        self,
        in_ch: int,
        mid_ch: int,
        out_ch: int,
        kernel_size: int,
        stride: int,
        act: Act,
        se: nn.Module | None = None,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        if mid_ch != in_ch:
            layers.append(conv_bn(in_ch, mid_ch, 1, act=act))
        layers.append(conv_bn(mid_ch, mid_ch, kernel_size, stride, groups=mid_ch, act=act))
        if se is not None:
            layers.append(se)
        layers.append(conv_bn(mid_ch, out_ch, 1, act=None))
        self.block = nn.Sequential(*layers)
        self.use_residual = stride == 1 and in_ch == out_ch

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out
