"""The model families: one constructor per registered name (``@register_model``), built from :mod:`.blocks`."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from edgelat.datasets.zoo.blocks import ChannelShuffle, InvertedResidual, SqueezeExcite, _head, conv_bn, make_divisible
from edgelat.datasets.zoo.registry import register_model

# ---------------------------------------------------------------------------------------------
# MobileNetV1 (Howard et al. 2017)


def _mobilenet_v1(width: float, num_classes: int) -> nn.Sequential:
    # (output channels, stride) of the 13 depthwise-separable blocks
    cfg = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2)] + [(512, 1)] * 5 + [(1024, 2), (1024, 1)]
    in_ch = int(32 * width)
    layers: list[nn.Module] = [conv_bn(3, in_ch, 3, 2)]
    for c, s in cfg:
        out_ch = int(c * width)
        layers.append(nn.Sequential(conv_bn(in_ch, in_ch, 3, s, groups=in_ch), conv_bn(in_ch, out_ch, 1)))
        in_ch = out_ch
    return nn.Sequential(nn.Sequential(*layers), _head(in_ch, num_classes))


@register_model
def mobilenetv1_050(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v1(0.5, num_classes)


@register_model
def mobilenetv1_075(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v1(0.75, num_classes)


@register_model
def mobilenetv1_100(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v1(1.0, num_classes)


# ---------------------------------------------------------------------------------------------
# MobileNetV2 (Sandler et al. 2018), torchvision's width rounding


def _mobilenet_v2(width: float, num_classes: int) -> nn.Sequential:
    cfg = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2), (6, 320, 1, 1)]  # t, c, n, s
    in_ch = make_divisible(32 * width)
    last_ch = make_divisible(1280 * max(1.0, width))  # the paper does not thin the last conv
    layers: list[nn.Module] = [conv_bn(3, in_ch, 3, 2, act=nn.ReLU6)]
    for t, c, n, s in cfg:
        out_ch = make_divisible(c * width)
        for i in range(n):
            layers.append(InvertedResidual(in_ch, round(in_ch * t), out_ch, 3, s if i == 0 else 1, nn.ReLU6))
            in_ch = out_ch
    layers.append(conv_bn(in_ch, last_ch, 1, act=nn.ReLU6))
    return nn.Sequential(nn.Sequential(*layers), _head(last_ch, num_classes))


@register_model
def mobilenetv2_050(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v2(0.5, num_classes)


@register_model
def mobilenetv2_075(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v2(0.75, num_classes)


@register_model
def mobilenetv2_100(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v2(1.0, num_classes)


@register_model
def mobilenetv2_140(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v2(1.4, num_classes)


# ---------------------------------------------------------------------------------------------
# MobileNetV3 (Howard et al. 2019), torchvision's configuration

# kernel, expanded, out, SE, hard-swish, stride; the input of the first block is the 16-ch stem
_MBV3_LARGE = [
    (3, 16, 16, False, False, 1),
    (3, 64, 24, False, False, 2),
    (3, 72, 24, False, False, 1),
    (5, 72, 40, True, False, 2),
    (5, 120, 40, True, False, 1),
    (5, 120, 40, True, False, 1),
    (3, 240, 80, False, True, 2),
    (3, 200, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 184, 80, False, True, 1),
    (3, 480, 112, True, True, 1),
    (3, 672, 112, True, True, 1),
    (5, 672, 160, True, True, 2),
    (5, 960, 160, True, True, 1),
    (5, 960, 160, True, True, 1),
]
_MBV3_SMALL = [
    (3, 16, 16, True, False, 2),
    (3, 72, 24, False, False, 2),
    (3, 88, 24, False, False, 1),
    (5, 96, 40, True, True, 2),
    (5, 240, 40, True, True, 1),
    (5, 240, 40, True, True, 1),
    (5, 120, 48, True, True, 1),
    (5, 144, 48, True, True, 1),
    (5, 288, 96, True, True, 2),
    (5, 576, 96, True, True, 1),
    (5, 576, 96, True, True, 1),
]


def _mobilenet_v3(cfg: Sequence[tuple[int, int, int, bool, bool, int]], last_ch: int, width: float, num_classes: int) -> nn.Sequential:
    in_ch = make_divisible(16 * width)
    layers: list[nn.Module] = [conv_bn(3, in_ch, 3, 2, act=nn.Hardswish)]
    for k, exp, out, use_se, use_hs, s in cfg:
        mid_ch, out_ch = make_divisible(exp * width), make_divisible(out * width)
        se = SqueezeExcite(mid_ch, make_divisible(mid_ch // 4), nn.ReLU, nn.Hardsigmoid) if use_se else None
        layers.append(InvertedResidual(in_ch, mid_ch, out_ch, k, s, nn.Hardswish if use_hs else nn.ReLU, se))
        in_ch = out_ch
    conv_ch = 6 * in_ch
    last_ch = make_divisible(last_ch * max(1.0, width))  # as MobileNetV2, the head is not thinned
    layers.append(conv_bn(in_ch, conv_ch, 1, act=nn.Hardswish))
    classifier = nn.Sequential(
        nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(conv_ch, last_ch), nn.Hardswish(), nn.Linear(last_ch, num_classes)
    )
    return nn.Sequential(nn.Sequential(*layers), classifier)


@register_model
def mobilenetv3_small_075(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v3(_MBV3_SMALL, 1024, 0.75, num_classes)


@register_model
def mobilenetv3_small_100(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v3(_MBV3_SMALL, 1024, 1.0, num_classes)


@register_model
def mobilenetv3_large_075(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v3(_MBV3_LARGE, 1280, 0.75, num_classes)


@register_model
def mobilenetv3_large_100(num_classes: int = 1000) -> nn.Module:
    return _mobilenet_v3(_MBV3_LARGE, 1280, 1.0, num_classes)


# ---------------------------------------------------------------------------------------------
# ResNet (He et al. 2016), torchvision's v1.5 (stride in the 3x3 conv of the bottleneck)


class _BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_ch: int, ch: int, stride: int) -> None:
        super().__init__()
        self.body = nn.Sequential(conv_bn(in_ch, ch, 3, stride), conv_bn(ch, ch, 3, act=None))
        self.shortcut = conv_bn(in_ch, ch, 1, stride, act=None) if stride != 1 or in_ch != ch else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


class _Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch: int, ch: int, stride: int) -> None:
        super().__init__()
        out_ch = ch * self.expansion
        self.body = nn.Sequential(conv_bn(in_ch, ch, 1), conv_bn(ch, ch, 3, stride), conv_bn(ch, out_ch, 1, act=None))
        self.shortcut = conv_bn(in_ch, out_ch, 1, stride, act=None) if stride != 1 or in_ch != out_ch else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _resnet(block: type[_BasicBlock | _Bottleneck], depths: Sequence[int], num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    in_ch = 64
    for stage, (ch, depth) in enumerate(zip((64, 128, 256, 512), depths, strict=True)):
        for i in range(depth):
            layers.append(block(in_ch, ch, 2 if i == 0 and stage > 0 else 1))
            in_ch = ch * block.expansion
    return nn.Sequential(nn.Sequential(*layers), _head(in_ch, num_classes))


@register_model
def resnet18(num_classes: int = 1000) -> nn.Module:
    return _resnet(_BasicBlock, (2, 2, 2, 2), num_classes)


@register_model
def resnet34(num_classes: int = 1000) -> nn.Module:
    return _resnet(_BasicBlock, (3, 4, 6, 3), num_classes)


@register_model
def resnet50(num_classes: int = 1000) -> nn.Module:
    return _resnet(_Bottleneck, (3, 4, 6, 3), num_classes)


# ---------------------------------------------------------------------------------------------
# SqueezeNet (Iandola et al. 2016): no BatchNorm, 1x1-conv classifier as in the paper


class _Fire(nn.Module):
    def __init__(self, in_ch: int, squeeze: int, expand1x1: int, expand3x3: int) -> None:
        super().__init__()
        self.squeeze = nn.Sequential(nn.Conv2d(in_ch, squeeze, 1), nn.ReLU())
        self.expand1x1 = nn.Sequential(nn.Conv2d(squeeze, expand1x1, 1), nn.ReLU())
        self.expand3x3 = nn.Sequential(nn.Conv2d(squeeze, expand3x3, 3, padding=1), nn.ReLU())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.squeeze(x)
        return torch.cat([self.expand1x1(x), self.expand3x3(x)], 1)


def _squeezenet(version: str, num_classes: int) -> nn.Sequential:
    def pool() -> nn.Module:
        return nn.MaxPool2d(3, 2, ceil_mode=True)

    if version == "1_0":
        features = [
            nn.Conv2d(3, 96, 7, 2),
            nn.ReLU(),
            pool(),
            _Fire(96, 16, 64, 64),
            _Fire(128, 16, 64, 64),
            _Fire(128, 32, 128, 128),
            pool(),
        ]
        features += [_Fire(256, 32, 128, 128), _Fire(256, 48, 192, 192), _Fire(384, 48, 192, 192), _Fire(384, 64, 256, 256), pool()]
        features += [_Fire(512, 64, 256, 256)]
    else:
        features = [nn.Conv2d(3, 64, 3, 2), nn.ReLU(), pool(), _Fire(64, 16, 64, 64), _Fire(128, 16, 64, 64), pool()]
        features += [_Fire(128, 32, 128, 128), _Fire(256, 32, 128, 128), pool(), _Fire(256, 48, 192, 192), _Fire(384, 48, 192, 192)]
        features += [_Fire(384, 64, 256, 256), _Fire(512, 64, 256, 256)]
    classifier = nn.Sequential(nn.Conv2d(512, num_classes, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1))
    return nn.Sequential(nn.Sequential(*features), classifier)


@register_model
def squeezenet1_0(num_classes: int = 1000) -> nn.Module:
    return _squeezenet("1_0", num_classes)


@register_model
def squeezenet1_1(num_classes: int = 1000) -> nn.Module:
    return _squeezenet("1_1", num_classes)


# ---------------------------------------------------------------------------------------------
# ShuffleNetV2 (Ma et al. 2018)


class _ShuffleV2Block(nn.Module):
    def __init__(self, in_ch: int, out_ch: int, stride: int) -> None:
        super().__init__()
        self.stride = stride
        half = out_ch // 2
        self.split = [half, half]  # Python ints: exports as a static Split (chunk() would need Shape ops)
        if stride > 1:
            self.branch1 = nn.Sequential(conv_bn(in_ch, in_ch, 3, stride, groups=in_ch, act=None), conv_bn(in_ch, half, 1))
        branch2_in = in_ch if stride > 1 else half
        self.branch2 = nn.Sequential(
            conv_bn(branch2_in, half, 1), conv_bn(half, half, 3, stride, groups=half, act=None), conv_bn(half, half, 1)
        )
        self.shuffle = ChannelShuffle(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.stride == 1:
            x1, x2 = x.split(self.split, dim=1)
            out = torch.cat([x1, self.branch2(x2)], 1)
        else:
            out = torch.cat([self.branch1(x), self.branch2(x)], 1)
        return self.shuffle(out)


def _shufflenet_v2(stage_channels: Sequence[int], num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [conv_bn(3, 24, 3, 2), nn.MaxPool2d(3, 2, 1)]
    in_ch = 24
    for out_ch, repeats in zip(stage_channels, (4, 8, 4), strict=True):
        for i in range(repeats):
            layers.append(_ShuffleV2Block(in_ch, out_ch, 2 if i == 0 else 1))
            in_ch = out_ch
    layers.append(conv_bn(in_ch, 1024, 1))
    return nn.Sequential(nn.Sequential(*layers), _head(1024, num_classes))


@register_model
def shufflenetv2_050(num_classes: int = 1000) -> nn.Module:
    return _shufflenet_v2((48, 96, 192), num_classes)


@register_model
def shufflenetv2_100(num_classes: int = 1000) -> nn.Module:
    return _shufflenet_v2((116, 232, 464), num_classes)


@register_model
def shufflenetv2_150(num_classes: int = 1000) -> nn.Module:
    return _shufflenet_v2((176, 352, 704), num_classes)


# ---------------------------------------------------------------------------------------------
# MnasNet-B1 (Tan et al. 2019), torchvision's definition and width rounding


def _mnasnet(alpha: float, num_classes: int) -> nn.Sequential:
    d = [make_divisible(c * alpha) for c in (32, 16, 24, 40, 80, 96, 192, 320)]
    layers: list[nn.Module] = [conv_bn(3, d[0], 3, 2), conv_bn(d[0], d[0], 3, groups=d[0]), conv_bn(d[0], d[1], 1, act=None)]
    # kernel, stride, expansion, repeats of the six stacks
    stacks = [(3, 2, 3, 3), (5, 2, 3, 3), (5, 2, 6, 3), (3, 1, 6, 2), (5, 2, 6, 4), (3, 1, 6, 1)]
    in_ch = d[1]
    for out_ch, (k, s, e, n) in zip(d[2:], stacks, strict=True):
        for i in range(n):
            layers.append(InvertedResidual(in_ch, in_ch * e, out_ch, k, s if i == 0 else 1, nn.ReLU))
            in_ch = out_ch
    layers.append(conv_bn(in_ch, 1280, 1))
    return nn.Sequential(nn.Sequential(*layers), _head(1280, num_classes))


@register_model
def mnasnet_050(num_classes: int = 1000) -> nn.Module:
    return _mnasnet(0.5, num_classes)


@register_model
def mnasnet_100(num_classes: int = 1000) -> nn.Module:
    return _mnasnet(1.0, num_classes)


# ---------------------------------------------------------------------------------------------
# EfficientNet-B0 (Tan & Le 2019): SiLU, SE squeezing to a quarter of the block's input


@register_model
def efficientnet_b0(num_classes: int = 1000) -> nn.Module:
    # expansion, kernel, stride, out channels, repeats
    cfg = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.SiLU)]
    in_ch = 32
    for e, k, s, out_ch, n in cfg:
        for i in range(n):
            mid_ch = in_ch * e
            se = SqueezeExcite(mid_ch, max(1, in_ch // 4), nn.SiLU, nn.Sigmoid)
            layers.append(InvertedResidual(in_ch, mid_ch, out_ch, k, s if i == 0 else 1, nn.SiLU, se))
            in_ch = out_ch
    layers.append(conv_bn(in_ch, 1280, 1, act=nn.SiLU))
    return nn.Sequential(nn.Sequential(*layers), _head(1280, num_classes))


# ---------------------------------------------------------------------------------------------
# GhostNet (Han et al. 2020), the authors' reference definition


class _GhostModule(nn.Module):
    """A 1x1 conv makes half the channels; a cheap 3x3 depthwise conv makes the other half."""

    def __init__(self, in_ch: int, out_ch: int, relu: bool) -> None:
        super().__init__()
        self.out_ch = out_ch
        init_ch = math.ceil(out_ch / 2)
        act = nn.ReLU if relu else None
        self.primary = conv_bn(in_ch, init_ch, 1, act=act)
        self.cheap = conv_bn(init_ch, init_ch, 3, groups=init_ch, act=act)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.primary(x)
        return torch.cat([x, self.cheap(x)], 1)[:, : self.out_ch]


class _GhostBottleneck(nn.Module):
    def __init__(self, in_ch: int, mid_ch: int, out_ch: int, kernel_size: int, stride: int, se_ratio: float) -> None:
        super().__init__()
        layers: list[nn.Module] = [_GhostModule(in_ch, mid_ch, relu=True)]
        if stride > 1:
            layers.append(conv_bn(mid_ch, mid_ch, kernel_size, stride, groups=mid_ch, act=None))
        if se_ratio:
            layers.append(SqueezeExcite(mid_ch, make_divisible(mid_ch * se_ratio, 4), nn.ReLU, nn.Hardsigmoid))
        layers.append(_GhostModule(mid_ch, out_ch, relu=False))
        self.body = nn.Sequential(*layers)
        if stride == 1 and in_ch == out_ch:
            self.shortcut: nn.Module = nn.Identity()
        else:
            self.shortcut = nn.Sequential(
                conv_bn(in_ch, in_ch, kernel_size, stride, groups=in_ch, act=None), conv_bn(in_ch, out_ch, 1, act=None)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x) + self.shortcut(x)


def _ghostnet(width: float, num_classes: int) -> nn.Sequential:
    # kernel, expanded, out, SE ratio, stride
    cfg = [
        (3, 16, 16, 0, 1),
        (3, 48, 24, 0, 2),
        (3, 72, 24, 0, 1),
        (5, 72, 40, 0.25, 2),
        (5, 120, 40, 0.25, 1),
        (3, 240, 80, 0, 2),
        (3, 200, 80, 0, 1),
        (3, 184, 80, 0, 1),
        (3, 184, 80, 0, 1),
        (3, 480, 112, 0.25, 1),
        (3, 672, 112, 0.25, 1),
        (5, 672, 160, 0.25, 2),
        (5, 960, 160, 0, 1),
        (5, 960, 160, 0.25, 1),
        (5, 960, 160, 0, 1),
        (5, 960, 160, 0.25, 1),
    ]
    in_ch = make_divisible(16 * width, 4)
    layers: list[nn.Module] = [conv_bn(3, in_ch, 3, 2)]
    for k, exp, out, se_ratio, s in cfg:
        out_ch = make_divisible(out * width, 4)
        layers.append(_GhostBottleneck(in_ch, make_divisible(exp * width, 4), out_ch, k, s, se_ratio))
        in_ch = out_ch
    conv_ch = make_divisible(960 * width, 4)
    layers.append(conv_bn(in_ch, conv_ch, 1))
    # the head's 1x1 conv (with bias) runs after global pooling
    classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(conv_ch, 1280, 1), nn.ReLU(), nn.Flatten(1), nn.Linear(1280, num_classes))
    return nn.Sequential(nn.Sequential(*layers), classifier)


@register_model
def ghostnet_100(num_classes: int = 1000) -> nn.Module:
    return _ghostnet(1.0, num_classes)


# ---------------------------------------------------------------------------------------------
# RegNetX / RegNetY (Radosavovic et al. 2020), pycls's width generation


def _regnet_stages(w_a: float, w_0: int, w_m: float, depth: int, group_w: int) -> list[tuple[int, int, int]]:
    """(width, depth, group width) of each stage of a RegNet's quantised linear width rule."""
    widths = []
    for i in range(depth):
        k = round(math.log((i * w_a + w_0) / w_0) / math.log(w_m))
        widths.append(int(round(w_0 * w_m**k / 8) * 8))
    stages: list[tuple[int, int, int]] = []
    for w in dict.fromkeys(widths):  # widths are non-decreasing, so this keeps stage order
        g = min(group_w, w)
        stages.append((max(g, round(w / g) * g), widths.count(w), g))
    return stages


class _RegNetBlock(nn.Module):
    """Residual bottleneck with group conv (bottleneck ratio 1), optional SE for RegNetY."""

    def __init__(self, in_ch: int, out_ch: int, stride: int, group_w: int, se: bool) -> None:
        super().__init__()
        layers: list[nn.Module] = [conv_bn(in_ch, out_ch, 1), conv_bn(out_ch, out_ch, 3, stride, groups=out_ch // group_w)]
        if se:
            layers.append(SqueezeExcite(out_ch, round(in_ch * 0.25), nn.ReLU, nn.Sigmoid))
        layers.append(conv_bn(out_ch, out_ch, 1, act=None))
        self.body = nn.Sequential(*layers)
        self.shortcut = conv_bn(in_ch, out_ch, 1, stride, act=None) if stride != 1 or in_ch != out_ch else nn.Identity()
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.relu(self.body(x) + self.shortcut(x))


def _regnet(w_a: float, w_0: int, w_m: float, depth: int, group_w: int, se: bool, num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2)]
    in_ch = 32
    for width, stage_depth, g in _regnet_stages(w_a, w_0, w_m, depth, group_w):
        for i in range(stage_depth):
            layers.append(_RegNetBlock(in_ch, width, 2 if i == 0 else 1, g, se))
            in_ch = width
    return nn.Sequential(nn.Sequential(*layers), _head(in_ch, num_classes))


@register_model
def regnetx_002(num_classes: int = 1000) -> nn.Module:
    return _regnet(36.44, 24, 2.49, 13, 8, False, num_classes)


@register_model
def regnetx_004(num_classes: int = 1000) -> nn.Module:
    return _regnet(24.48, 24, 2.54, 22, 16, False, num_classes)


@register_model
def regnety_002(num_classes: int = 1000) -> nn.Module:
    return _regnet(36.44, 24, 2.49, 13, 8, True, num_classes)


@register_model
def regnety_004(num_classes: int = 1000) -> nn.Module:
    return _regnet(27.89, 48, 2.09, 16, 8, True, num_classes)


# ---------------------------------------------------------------------------------------------
# DenseNet-121 (Huang et al. 2017)


class _DenseLayer(nn.Module):
    def __init__(self, in_ch: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.BatchNorm2d(in_ch),
            nn.ReLU(),
            nn.Conv2d(in_ch, 4 * growth, 1, bias=False),
            nn.BatchNorm2d(4 * growth),
            nn.ReLU(),
            nn.Conv2d(4 * growth, growth, 3, padding=1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, self.body(x)], 1)


@register_model
def densenet121(num_classes: int = 1000) -> nn.Module:
    growth = 32
    layers: list[nn.Module] = [conv_bn(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    ch = 64
    for i, n in enumerate((6, 12, 24, 16)):
        for _ in range(n):
            layers.append(_DenseLayer(ch, growth))
            ch += growth
        if i < 3:  # transition: halve channels and resolution
            layers += [nn.BatchNorm2d(ch), nn.ReLU(), nn.Conv2d(ch, ch // 2, 1, bias=False), nn.AvgPool2d(2, 2)]
            ch //= 2
    layers += [nn.BatchNorm2d(ch), nn.ReLU()]
    return nn.Sequential(nn.Sequential(*layers), _head(ch, num_classes))


# ---------------------------------------------------------------------------------------------
# GoogLeNet (Szegedy et al. 2015) with BatchNorm, without auxiliary heads


class _Inception(nn.Module):
    def __init__(self, in_ch: int, c1: int, c3r: int, c3: int, c5r: int, c5: int, pool_proj: int) -> None:
        super().__init__()
        self.branch1 = conv_bn(in_ch, c1, 1)
        self.branch2 = nn.Sequential(conv_bn(in_ch, c3r, 1), conv_bn(c3r, c3, 3))
        self.branch3 = nn.Sequential(conv_bn(in_ch, c5r, 1), conv_bn(c5r, c5, 5))
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1, ceil_mode=True), conv_bn(in_ch, pool_proj, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


@register_model
def googlenet(num_classes: int = 1000) -> nn.Module:
    def pool() -> nn.Module:
        return nn.MaxPool2d(3, 2, ceil_mode=True)

    layers = [
        conv_bn(3, 64, 7, 2),
        pool(),
        conv_bn(64, 64, 1),
        conv_bn(64, 192, 3),
        pool(),
        _Inception(192, 64, 96, 128, 16, 32, 32),
        _Inception(256, 128, 128, 192, 32, 96, 64),
        pool(),
        _Inception(480, 192, 96, 208, 16, 48, 64),
        _Inception(512, 160, 112, 224, 24, 64, 64),
        _Inception(512, 128, 128, 256, 24, 64, 64),
        _Inception(512, 112, 144, 288, 32, 64, 64),
        _Inception(528, 256, 160, 320, 32, 128, 128),
        nn.MaxPool2d(2, 2, ceil_mode=True),
        _Inception(832, 256, 160, 320, 32, 128, 128),
        _Inception(832, 384, 192, 384, 48, 128, 128),
    ]
    return nn.Sequential(nn.Sequential(*layers), _head(1024, num_classes))


# ---------------------------------------------------------------------------------------------
# VGG-11 (Simonyan & Zisserman 2015), configuration A


def _vgg11(batch_norm: bool, num_classes: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    in_ch = 3
    for stage in ((64,), (128,), (256, 256), (512, 512), (512, 512)):
        for ch in stage:
            if batch_norm:
                layers += [nn.Conv2d(in_ch, ch, 3, padding=1, bias=False), nn.BatchNorm2d(ch), nn.ReLU()]
            else:
                layers += [nn.Conv2d(in_ch, ch, 3, padding=1), nn.ReLU()]
            in_ch = ch
        layers.append(nn.MaxPool2d(2, 2))
    classifier = nn.Sequential(
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(1),
        nn.Linear(512, 4096),
        nn.ReLU(),
        nn.Linear(4096, 4096),
        nn.ReLU(),
        nn.Linear(4096, num_classes),
    )
    return nn.Sequential(nn.Sequential(*layers), classifier)


@register_model
def vgg11(num_classes: int = 1000) -> nn.Module:
    return _vgg11(False, num_classes)


@register_model
def vgg11_bn(num_classes: int = 1000) -> nn.Module:
    return _vgg11(True, num_classes)


# ---------------------------------------------------------------------------------------------
# ProxylessNAS-Mobile (Cai et al. 2019), the released searched architecture


@register_model
def proxylessnas_mobile(num_classes: int = 1000) -> nn.Module:
    # per stage: out channels, stride of the first block, then (kernel, expansion) of each block
    stages = [
        (16, 1, [(3, 1)]),
        (32, 2, [(5, 3), (3, 3)]),  # blocks 3 and 4 of this stage are "zero" ops: identities
        (40, 2, [(7, 3), (3, 3), (5, 3), (5, 3)]),
        (80, 2, [(7, 6), (5, 3), (5, 3), (5, 3)]),
        (96, 1, [(5, 6), (5, 3), (5, 3), (5, 3)]),
        (192, 2, [(7, 6), (7, 6), (7, 3), (7, 3)]),
        (320, 1, [(7, 6)]),
    ]
    layers: list[nn.Module] = [conv_bn(3, 32, 3, 2, act=nn.ReLU6)]
    in_ch = 32
    for out_ch, stride, blocks in stages:
        for i, (k, e) in enumerate(blocks):
            layers.append(InvertedResidual(in_ch, in_ch * e, out_ch, k, stride if i == 0 else 1, nn.ReLU6))
            in_ch = out_ch
    layers.append(conv_bn(in_ch, 1280, 1, act=nn.ReLU6))
    return nn.Sequential(nn.Sequential(*layers), _head(1280, num_classes))
