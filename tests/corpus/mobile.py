"""Mobile networks: MobileNet V1/V2/V3, EfficientNet(-lite), GhostNet, MnasNet, each in a different author's style
(ReLU6 / hardtanh / clamp / clip, hard-swish and hard-sigmoid written four ways, squeeze-excite three ways)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import CorpusNet, registry

NETS: list[CorpusNet] = []
register = registry(NETS, "mobile")


def _make_divisible(v, divisor, min_value=None):
    if min_value is None:
        min_value = divisor
    new_v = max(min_value, int(v + divisor / 2) // divisor * divisor)
    if new_v < 0.9 * v:  # do not round down by more than 10%
        new_v += divisor
    return new_v


# --- MobileNetV1 (the classic conv_bn / conv_dw helper functions), nn.ReLU6, view(-1, C) ------------------------------
@register(
    "mobilenet_v1_a",
    "MobileNetV1 x0.25 from conv_bn/conv_dw helper functions returning nn.Sequential, nn.ReLU6, nn.AdaptiveAvgPool2d(1) + x.view(-1, 256)",
    (1, 3, 96, 96),
)
class MobileNetV1A(nn.Module):
    def __init__(self, alpha=0.25, num_classes=1000):
        super().__init__()

        def conv_bn(inp, oup, stride):
            return nn.Sequential(nn.Conv2d(inp, oup, 3, stride, 1, bias=False), nn.BatchNorm2d(oup), nn.ReLU6(inplace=True))

        def conv_dw(inp, oup, stride):
            return nn.Sequential(
                nn.Conv2d(inp, inp, 3, stride, 1, groups=inp, bias=False),
                nn.BatchNorm2d(inp),
                nn.ReLU6(inplace=True),
                nn.Conv2d(inp, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
                nn.ReLU6(inplace=True),
            )

        c = [int(x * alpha) for x in (32, 64, 128, 256, 512, 1024)]
        self.last = c[5]
        self.model = nn.Sequential(
            conv_bn(3, c[0], 2),
            conv_dw(c[0], c[1], 1),
            conv_dw(c[1], c[2], 2),
            conv_dw(c[2], c[2], 1),
            conv_dw(c[2], c[3], 2),
            conv_dw(c[3], c[3], 1),
            conv_dw(c[3], c[4], 2),
            *[conv_dw(c[4], c[4], 1) for _ in range(5)],
            conv_dw(c[4], c[5], 2),
            conv_dw(c[5], c[5], 1),
            nn.AdaptiveAvgPool2d(1),
        )
        self.fc = nn.Linear(c[5], num_classes)

    def forward(self, x):
        x = self.model(x)
        x = x.view(-1, 256)
        x = self.fc(x)
        return x


# --- MobileNetV1 ported from TF-slim: ZeroPad2d((0,1,0,1)) before stride-2 convs, F.hardtanh(x, 0, 6), conv logits ----
class TFConvBN(nn.Module):
    def __init__(self, cin, cout, k, stride, groups=1):
        super().__init__()
        # TF "SAME": symmetric for stride 1, pad right/bottom only for stride 2 on even inputs
        self.pad = nn.ZeroPad2d((0, 1, 0, 1)) if stride == 2 else nn.ZeroPad2d(k // 2)
        self.conv = nn.Conv2d(cin, cout, k, stride, padding=0, groups=groups, bias=False)
        self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=0.003)

    def forward(self, x):
        return F.hardtanh(self.bn(self.conv(self.pad(x))), 0.0, 6.0)


@register(
    "mobilenet_v1_tfslim",
    "TF-slim port: nn.ZeroPad2d((0,1,0,1)) + padding=0 stride-2 convs, F.hardtanh(x, 0., 6.), mean([2, 3], keepdim=True), 1x1-conv logits + squeeze(3).squeeze(2)",
    (1, 3, 64, 64),
)
class MobileNetV1TF(nn.Module):
    CONV_DEFS = [(32, 2, "conv"), (64, 1, "sep"), (128, 2, "sep"), (128, 1, "sep"), (256, 2, "sep"), (256, 1, "sep"), (512, 2, "sep"),
                 (512, 1, "sep"), (512, 1, "sep"), (512, 1, "sep"), (1024, 2, "sep"), (1024, 1, "sep")]  # fmt: skip

    def __init__(self, depth_multiplier=0.5, num_classes=100):
        super().__init__()
        layers = []
        cin = 3
        for depth, stride, kind in self.CONV_DEFS:
            cout = int(depth * depth_multiplier)
            if kind == "conv":
                layers.append(TFConvBN(cin, cout, 3, stride))
            else:
                layers.append(TFConvBN(cin, cin, 3, stride, groups=cin))
                layers.append(TFConvBN(cin, cout, 1, 1))
            cin = cout
        self.layers = nn.ModuleList(layers)
        self.dropout = nn.Dropout(0.001)
        self.logits = nn.Conv2d(cin, num_classes, 1, bias=True)

    def forward(self, x):
        for layer in self.layers:
            x = layer(x)
        x = x.mean([2, 3], keepdim=True)
        x = self.logits(self.dropout(x))
        return x.squeeze(3).squeeze(2)


# --- MobileNetV2, torchvision style -------------------------------------------------------------------------------------
class ConvBNReLU(nn.Sequential):
    def __init__(self, in_planes, out_planes, kernel_size=3, stride=1, groups=1):
        padding = (kernel_size - 1) // 2
        super().__init__(
            nn.Conv2d(in_planes, out_planes, kernel_size, stride, padding, groups=groups, bias=False),
            nn.BatchNorm2d(out_planes),
            nn.ReLU6(inplace=True),
        )


class InvertedResidual(nn.Module):
    def __init__(self, inp, oup, stride, expand_ratio):
        super().__init__()
        self.stride = stride
        hidden_dim = int(round(inp * expand_ratio))
        self.use_res_connect = self.stride == 1 and inp == oup
        layers = []
        if expand_ratio != 1:
            layers.append(ConvBNReLU(inp, hidden_dim, kernel_size=1))
        layers.extend(
            [ConvBNReLU(hidden_dim, hidden_dim, stride=stride, groups=hidden_dim), nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False), nn.BatchNorm2d(oup)]
        )
        self.conv = nn.Sequential(*layers)

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        else:
            return self.conv(x)


@register(
    "mobilenet_v2_torchvision",
    "torchvision MobileNetV2 x0.35: _make_divisible, ConvBNReLU(nn.Sequential) with nn.ReLU6, use_res_connect, adaptive_avg_pool2d(x, (1, 1)).reshape(x.shape[0], -1)",
    (1, 3, 96, 96),
)
class MobileNetV2A(nn.Module):
    def __init__(self, num_classes=1000, width_mult=0.35, round_nearest=8):
        super().__init__()
        input_channel = 32
        last_channel = 1280
        inverted_residual_setting = [[1, 16, 1, 1], [6, 24, 2, 2], [6, 32, 3, 2], [6, 64, 4, 2], [6, 96, 3, 1], [6, 160, 3, 2], [6, 320, 1, 1]]
        input_channel = _make_divisible(input_channel * width_mult, round_nearest)
        self.last_channel = _make_divisible(last_channel * max(1.0, width_mult), round_nearest)
        features: list[nn.Module] = [ConvBNReLU(3, input_channel, stride=2)]
        for t, c, n, s in inverted_residual_setting:
            output_channel = _make_divisible(c * width_mult, round_nearest)
            for i in range(n):
                stride = s if i == 0 else 1
                features.append(InvertedResidual(input_channel, output_channel, stride, expand_ratio=t))
                input_channel = output_channel
        features.append(ConvBNReLU(input_channel, self.last_channel, kernel_size=1))
        self.features = nn.Sequential(*features)
        self.classifier = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.last_channel, num_classes))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out")
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, 0.01)
                nn.init.zeros_(m.bias)

    def forward(self, x):
        x = self.features(x)
        x = nn.functional.adaptive_avg_pool2d(x, (1, 1)).reshape(x.shape[0], -1)
        x = self.classifier(x)
        return x


# --- MobileNetV2 by another hand: odd widths (no rounding), x.clamp(0, 6) / torch.clip activations, mean(3).mean(2) ----
class ClampReLU6(nn.Module):
    def forward(self, x):
        return x.clamp(0, 6)


class InvRes(nn.Module):
    def __init__(self, cin, cout, stride, t):
        super().__init__()
        hid = int(round(cin * t))
        self.cin, self.cout, self.stride = cin, cout, stride
        self.expand = nn.Conv2d(cin, hid, 1, bias=False) if t != 1 else None
        self.bn0 = nn.BatchNorm2d(hid) if t != 1 else None
        self.dw = nn.Conv2d(hid, hid, 3, stride, 1, groups=hid, bias=False)
        self.bn1 = nn.BatchNorm2d(hid)
        self.project = nn.Conv2d(hid, cout, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.act = ClampReLU6()

    def forward(self, x):
        y = x
        if self.expand is not None:
            y = self.act(self.bn0(self.expand(y)))
        y = self.act(self.bn1(self.dw(y)))
        y = self.bn2(self.project(y))
        if self.stride == 1 and self.cin == self.cout:
            y = x + y
        return y


@register(
    "mobilenet_v2_odd",
    "MobileNetV2 x0.6 without channel rounding (19, 14, 38, 57, 96 ch), 1x3x67x93 input, x.clamp(0, 6) module + torch.clip stem, x.mean(3).mean(2)",
    (1, 3, 67, 93),
)
class MobileNetV2Odd(nn.Module):
    def __init__(self, width=0.6, num_classes=37):
        super().__init__()
        setting = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 2, 2), (6, 64, 2, 2), (6, 96, 1, 1), (6, 160, 2, 2)]
        c0 = int(32 * width)
        self.stem = nn.Conv2d(3, c0, 3, 2, 1, bias=False)
        self.stem_bn = nn.BatchNorm2d(c0)
        blocks, cin = [], c0
        for t, c, n, s in setting:
            cout = int(c * width)
            for i in range(n):
                blocks.append(InvRes(cin, cout, s if i == 0 else 1, t))
                cin = cout
        self.blocks = nn.Sequential(*blocks)
        self.head = nn.Conv2d(cin, 384, 1, bias=False)
        self.head_bn = nn.BatchNorm2d(384)
        self.fc = nn.Linear(384, num_classes)

    def forward(self, x):
        x = torch.clip(self.stem_bn(self.stem(x)), 0.0, 6.0)
        x = self.blocks(x)
        x = torch.clip(self.head_bn(self.head(x)), min=0.0, max=6.0)
        x = x.mean(3).mean(2)
        return self.fc(x)


# --- MobileNetV3-small, torchvision style: nn.Hardswish, SE with nn.Hardsigmoid over 1x1 convs --------------------------
class SqueezeExcitation(nn.Module):
    def __init__(self, input_channels, squeeze_channels):
        super().__init__()
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc1 = nn.Conv2d(input_channels, squeeze_channels, 1)
        self.fc2 = nn.Conv2d(squeeze_channels, input_channels, 1)
        self.activation = nn.ReLU()
        self.scale_activation = nn.Hardsigmoid()

    def _scale(self, input):
        scale = self.avgpool(input)
        scale = self.fc1(scale)
        scale = self.activation(scale)
        scale = self.fc2(scale)
        return self.scale_activation(scale)

    def forward(self, input):
        scale = self._scale(input)
        return scale * input


class Conv2dNormActivation(nn.Sequential):
    def __init__(self, cin, cout, kernel_size=3, stride=1, groups=1, activation_layer=nn.ReLU):
        layers = [nn.Conv2d(cin, cout, kernel_size, stride, (kernel_size - 1) // 2, groups=groups, bias=False), nn.BatchNorm2d(cout, eps=0.001, momentum=0.01)]
        if activation_layer is not None:
            layers.append(activation_layer(inplace=True))
        super().__init__(*layers)


class V3Block(nn.Module):
    def __init__(self, cin, k, exp, cout, use_se, act, stride):
        super().__init__()
        self.use_res_connect = stride == 1 and cin == cout
        act_layer = nn.Hardswish if act == "HS" else nn.ReLU
        layers: list[nn.Module] = []
        if exp != cin:
            layers.append(Conv2dNormActivation(cin, exp, 1, activation_layer=act_layer))
        layers.append(Conv2dNormActivation(exp, exp, k, stride, groups=exp, activation_layer=act_layer))
        if use_se:
            layers.append(SqueezeExcitation(exp, _make_divisible(exp // 4, 8)))
        layers.append(Conv2dNormActivation(exp, cout, 1, activation_layer=None))
        self.block = nn.Sequential(*layers)

    def forward(self, input):
        result = self.block(input)
        if self.use_res_connect:
            result += input
        return result


@register(
    "mobilenet_v3_small_torchvision",
    "torchvision MobileNetV3-small: nn.Hardswish, SE = AdaptiveAvgPool2d + 1x1 convs + nn.Hardsigmoid, in-place residual +=, Linear-Hardswish-Dropout-Linear head",
    (1, 3, 96, 96),
)
class MobileNetV3SmallA(nn.Module):
    SETTING = [
        (16, 3, 16, 16, True, "RE", 2),
        (16, 3, 72, 24, False, "RE", 2),
        (24, 3, 88, 24, False, "RE", 1),
        (24, 5, 96, 40, True, "HS", 2),
        (40, 5, 240, 40, True, "HS", 1),
        (40, 5, 120, 48, True, "HS", 1),
        (48, 5, 144, 48, True, "HS", 1),
        (48, 5, 288, 96, True, "HS", 2),
        (96, 5, 576, 96, True, "HS", 1),
    ]

    def __init__(self, num_classes=1000):
        super().__init__()
        layers: list[nn.Module] = [Conv2dNormActivation(3, 16, 3, 2, activation_layer=nn.Hardswish)]
        layers += [V3Block(*cfg) for cfg in self.SETTING]
        layers.append(Conv2dNormActivation(96, 576, 1, activation_layer=nn.Hardswish))
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.classifier = nn.Sequential(nn.Linear(576, 1024), nn.Hardswish(inplace=True), nn.Dropout(p=0.2, inplace=True), nn.Linear(1024, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


# --- MobileNetV3-small, the popular standalone repo: h_sigmoid = ReLU6(x + 3) / 6, SE through nn.Linear + view(b, c) ---
class h_sigmoid(nn.Module):
    def __init__(self, inplace=True):
        super().__init__()
        self.relu = nn.ReLU6(inplace=inplace)

    def forward(self, x):
        return self.relu(x + 3) / 6


class h_swish(nn.Module):
    def __init__(self, inplace=True):
        super().__init__()
        self.sigmoid = h_sigmoid(inplace=inplace)

    def forward(self, x):
        return x * self.sigmoid(x)


class SELayer(nn.Module):
    def __init__(self, channel, reduction=4):
        super().__init__()
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Sequential(
            nn.Linear(channel, _make_divisible(channel // reduction, 8)),
            nn.ReLU(inplace=True),
            nn.Linear(_make_divisible(channel // reduction, 8), channel),
            h_sigmoid(),
        )

    def forward(self, x):
        b, c, _, _ = x.size()
        y = self.avg_pool(x).view(b, c)
        y = self.fc(y).view(b, c, 1, 1)
        return x * y


class V3ResidualB(nn.Module):
    def __init__(self, inp, hidden_dim, oup, kernel_size, stride, use_se, use_hs):
        super().__init__()
        self.identity = stride == 1 and inp == oup
        if inp == hidden_dim:
            self.conv = nn.Sequential(
                nn.Conv2d(hidden_dim, hidden_dim, kernel_size, stride, (kernel_size - 1) // 2, groups=hidden_dim, bias=False),
                nn.BatchNorm2d(hidden_dim),
                h_swish() if use_hs else nn.ReLU(inplace=True),
                SELayer(hidden_dim) if use_se else nn.Identity(),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            )
        else:
            self.conv = nn.Sequential(
                nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False),
                nn.BatchNorm2d(hidden_dim),
                h_swish() if use_hs else nn.ReLU(inplace=True),
                nn.Conv2d(hidden_dim, hidden_dim, kernel_size, stride, (kernel_size - 1) // 2, groups=hidden_dim, bias=False),
                nn.BatchNorm2d(hidden_dim),
                SELayer(hidden_dim) if use_se else nn.Identity(),
                h_swish() if use_hs else nn.ReLU(inplace=True),
                nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
                nn.BatchNorm2d(oup),
            )

    def forward(self, x):
        if self.identity:
            return x + self.conv(x)
        else:
            return self.conv(x)


@register(
    "mobilenet_v3_small_hsig",
    "standalone MobileNetV3-small x0.75: h_sigmoid = nn.ReLU6(x + 3) / 6, h_swish = x * h_sigmoid(x), SE via nn.Linear + avg_pool(x).view(b, c) ... view(b, c, 1, 1), 80x80",
    (1, 3, 80, 80),
)
class MobileNetV3SmallB(nn.Module):
    CFGS = [
        # k, t, c, SE, HS, s
        [3, 1, 16, 1, 0, 2],
        [3, 4.5, 24, 0, 0, 2],
        [3, 3.67, 24, 0, 0, 1],
        [5, 4, 40, 1, 1, 2],
        [5, 6, 40, 1, 1, 1],
        [5, 3, 48, 1, 1, 1],
        [5, 6, 96, 1, 1, 2],
        [5, 6, 96, 1, 1, 1],
    ]

    def __init__(self, num_classes=100, width_mult=0.75):
        super().__init__()
        input_channel = _make_divisible(16 * width_mult, 8)
        layers: list[nn.Module] = [
            nn.Sequential(nn.Conv2d(3, input_channel, 3, 2, 1, bias=False), nn.BatchNorm2d(input_channel), h_swish())
        ]
        exp_size = input_channel
        for k, t, c, use_se, use_hs, s in self.CFGS:
            output_channel = _make_divisible(c * width_mult, 8)
            exp_size = _make_divisible(input_channel * t, 8)
            layers.append(V3ResidualB(input_channel, exp_size, output_channel, k, s, use_se, use_hs))
            input_channel = output_channel
        self.features = nn.Sequential(*layers)
        self.conv = nn.Sequential(nn.Conv2d(input_channel, exp_size, 1, 1, 0, bias=False), nn.BatchNorm2d(exp_size), h_swish())
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(nn.Linear(exp_size, 512), h_swish(), nn.Dropout(0.2), nn.Linear(512, num_classes))

    def forward(self, x):
        x = self.features(x)
        x = self.conv(x)
        x = self.avgpool(x)
        x = x.view(x.size(0), -1)
        x = self.classifier(x)
        return x


# --- MobileNetV3-large, a third hand: hard-swish as x * (x + 3).clamp(0, 6) / 6, SE on x.mean((2, 3), keepdim=True) + F.hardsigmoid, F.hardswish head
def hswish(x):
    return x * (x + 3).clamp(0, 6) / 6


class SEModuleC(nn.Module):
    def __init__(self, c, r=4):
        super().__init__()
        self.reduce = nn.Conv2d(c, _make_divisible(c // r, 8), 1)
        self.expand = nn.Conv2d(_make_divisible(c // r, 8), c, 1)

    def forward(self, x):
        s = x.mean((2, 3), keepdim=True)
        s = F.relu(self.reduce(s), inplace=True)
        return x * F.hardsigmoid(self.expand(s), inplace=True)


class BlockC(nn.Module):
    def __init__(self, k, cin, exp, cout, act, se, s):
        super().__init__()
        self.act = hswish if act == "hs" else F.relu
        self.conv1 = nn.Conv2d(cin, exp, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(exp)
        self.conv2 = nn.Conv2d(exp, exp, k, s, k // 2, groups=exp, bias=False)
        self.bn2 = nn.BatchNorm2d(exp)
        self.se = SEModuleC(exp) if se else None
        self.conv3 = nn.Conv2d(exp, cout, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(cout)
        self.skip = s == 1 and cin == cout

    def forward(self, x):
        out = self.act(self.bn1(self.conv1(x)))
        out = self.act(self.bn2(self.conv2(out)))
        if self.se is not None:
            out = self.se(out)
        out = self.bn3(self.conv3(out))
        return out + x if self.skip else out


@register(
    "mobilenet_v3_large_clamp",
    "MobileNetV3-large x0.75: hswish as x * (x + 3).clamp(0, 6) / 6, SE on x.mean((2, 3), keepdim=True) + F.hardsigmoid, F.hardswish head, F.adaptive_avg_pool2d(x, 1)",
    (1, 3, 96, 96),
)
class MobileNetV3LargeC(nn.Module):
    CFG = [
        (3, 16, 16, 16, "re", False, 1),
        (3, 16, 64, 24, "re", False, 2),
        (3, 24, 72, 24, "re", False, 1),
        (5, 24, 72, 40, "re", True, 2),
        (5, 40, 120, 40, "re", True, 1),
        (3, 40, 240, 80, "hs", False, 2),
        (3, 80, 200, 80, "hs", False, 1),
        (3, 80, 480, 112, "hs", True, 1),
        (5, 112, 672, 160, "hs", True, 2),
        (5, 160, 960, 160, "hs", True, 1),
    ]

    def __init__(self, width=0.75, num_classes=1000):
        super().__init__()

        def w(c):
            return _make_divisible(c * width, 8)

        self.conv1 = nn.Conv2d(3, w(16), 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(w(16))
        self.blocks = nn.Sequential(*[BlockC(k, w(ci), w(e), w(co), a, se, s) for k, ci, e, co, a, se, s in self.CFG])
        self.conv2 = nn.Conv2d(w(160), w(960), 1, bias=False)
        self.bn2 = nn.BatchNorm2d(w(960))
        self.linear3 = nn.Linear(w(960), 1280)
        self.linear4 = nn.Linear(1280, num_classes)

    def forward(self, x):
        out = hswish(self.bn1(self.conv1(x)))
        out = self.blocks(out)
        out = F.hardswish(self.bn2(self.conv2(out)))
        out = F.adaptive_avg_pool2d(out, 1)
        out = out.flatten(1)
        out = F.hardswish(self.linear3(out))
        return self.linear4(out)


# --- EfficientNet-B0 (width 0.5, depth 0.5): MBConv with nn.SiLU, SE on mean + SiLU + sigmoid, drop_path, Swish module --
def drop_path(x, drop_prob: float = 0.0, training: bool = False):
    if drop_prob == 0.0 or not training:
        return x
    keep_prob = 1 - drop_prob
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)
    random_tensor = keep_prob + torch.rand(shape, dtype=x.dtype, device=x.device)
    random_tensor.floor_()
    return x.div(keep_prob) * random_tensor


class Swish(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(x)


class MBConv(nn.Module):
    def __init__(self, cin, cout, k, stride, expand, se_ratio=0.25, drop_rate=0.0):
        super().__init__()
        mid = cin * expand
        self.has_skip = stride == 1 and cin == cout
        self.drop_rate = drop_rate
        self.expand = nn.Sequential(nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.SiLU(inplace=True)) if expand != 1 else nn.Identity()
        self.dw = nn.Sequential(nn.Conv2d(mid, mid, k, stride, k // 2, groups=mid, bias=False), nn.BatchNorm2d(mid), nn.SiLU(inplace=True))
        rd = max(1, int(cin * se_ratio))
        self.se_reduce = nn.Conv2d(mid, rd, 1)
        self.se_expand = nn.Conv2d(rd, mid, 1)
        self.se_act = nn.SiLU()
        self.project = nn.Sequential(nn.Conv2d(mid, cout, 1, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        shortcut = x
        x = self.expand(x)
        x = self.dw(x)
        s = x.mean((2, 3), keepdim=True)
        s = self.se_expand(self.se_act(self.se_reduce(s)))
        x = x * s.sigmoid()
        x = self.project(x)
        if self.has_skip:
            x = drop_path(x, self.drop_rate, self.training) + shortcut
        return x


def round_filters(c, width, divisor=8):
    c *= width
    new_c = max(divisor, int(c + divisor / 2) // divisor * divisor)
    if new_c < 0.9 * c:
        new_c += divisor
    return int(new_c)


@register(
    "efficientnet_b0_half",
    "EfficientNet-B0 width/depth 0.5: MBConv with nn.SiLU, SE on x.mean + SiLU + .sigmoid(), drop_path (identity in eval), Swish head as x * torch.sigmoid(x)",
    (1, 3, 96, 96),
)
class EfficientNetB0Half(nn.Module):
    BLOCKS = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 3, 2, 3), (6, 112, 3, 1, 5), (6, 192, 4, 2, 5), (1, 320, 1, 1, 3)]

    def __init__(self, width=0.5, depth=0.5, num_classes=1000):
        super().__init__()
        stem = round_filters(32, width)
        self.stem = nn.Sequential(nn.Conv2d(3, stem, 3, 2, 1, bias=False), nn.BatchNorm2d(stem), nn.SiLU(inplace=True))
        blocks, cin = [], stem
        total = sum(math.ceil(n * depth) for _, _, n, _, _ in self.BLOCKS)
        idx = 0
        for t, c, n, s, k in self.BLOCKS:
            cout = round_filters(c, width)
            for i in range(math.ceil(n * depth)):
                blocks.append(MBConv(cin, cout, k, s if i == 0 else 1, t, drop_rate=0.2 * idx / total))
                cin = cout
                idx += 1
        self.blocks = nn.Sequential(*blocks)
        head = round_filters(1280, width)
        self.conv_head = nn.Conv2d(cin, head, 1, bias=False)
        self.bn_head = nn.BatchNorm2d(head)
        self.swish = Swish()
        self.avg_pooling = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(head, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = self.swish(self.bn_head(self.conv_head(x)))
        x = self.avg_pooling(x)
        x = x.flatten(start_dim=1)
        x = self.dropout(x)
        return self.fc(x)


# --- EfficientNet-lite with TF "SAME" padding computed from x.size() in forward (Conv2dDynamicSamePadding) ---------------
class Conv2dDynamicSamePadding(nn.Conv2d):
    def __init__(self, in_channels, out_channels, kernel_size, stride=1, dilation=1, groups=1, bias=True):
        super().__init__(in_channels, out_channels, kernel_size, stride, 0, dilation, groups, bias)
        self.stride = self.stride if len(self.stride) == 2 else [self.stride[0]] * 2

    def forward(self, x):
        ih, iw = x.size()[-2:]
        kh, kw = self.weight.size()[-2:]
        sh, sw = self.stride
        oh, ow = math.ceil(ih / sh), math.ceil(iw / sw)
        pad_h = max((oh - 1) * self.stride[0] + (kh - 1) * self.dilation[0] + 1 - ih, 0)
        pad_w = max((ow - 1) * self.stride[1] + (kw - 1) * self.dilation[1] + 1 - iw, 0)
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, self.padding, self.dilation, self.groups)


class LiteMBConv(nn.Module):
    def __init__(self, cin, cout, k, stride, expand):
        super().__init__()
        mid = cin * expand
        self.id_skip = stride == 1 and cin == cout
        self.expand_ratio = expand
        if expand != 1:
            self._expand_conv = Conv2dDynamicSamePadding(cin, mid, 1, bias=False)
            self._bn0 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._depthwise_conv = Conv2dDynamicSamePadding(mid, mid, k, stride=stride, groups=mid, bias=False)
        self._bn1 = nn.BatchNorm2d(mid, momentum=0.01, eps=1e-3)
        self._project_conv = Conv2dDynamicSamePadding(mid, cout, 1, bias=False)
        self._bn2 = nn.BatchNorm2d(cout, momentum=0.01, eps=1e-3)
        self._relu = nn.ReLU6()

    def forward(self, inputs):
        x = inputs
        if self.expand_ratio != 1:
            x = self._relu(self._bn0(self._expand_conv(inputs)))
        x = self._relu(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))
        if self.id_skip:
            x = x + inputs
        return x


@register(
    "efficientnet_lite_samepad",
    "EfficientNet-lite0 x0.5: Conv2dDynamicSamePadding (math.ceil pads from x.size() + F.pad + F.conv2d), nn.ReLU6, no SE, odd 1x3x75x75 input",
    (1, 3, 75, 75),
    dynamic="batch",
    note="the TF 'SAME' pads are computed in Python (math.ceil) from the input size: constants in the torchscript trace",
)
class EfficientNetLiteSamePad(nn.Module):
    BLOCKS = [(1, 16, 1, 1, 3), (6, 24, 2, 2, 3), (6, 40, 2, 2, 5), (6, 80, 2, 2, 3), (6, 112, 2, 1, 5), (6, 192, 2, 2, 5), (1, 320, 1, 1, 3)]

    def __init__(self, width=0.5, num_classes=1000):
        super().__init__()
        self._conv_stem = Conv2dDynamicSamePadding(3, 32, 3, stride=2, bias=False)
        self._bn0 = nn.BatchNorm2d(32, momentum=0.01, eps=1e-3)
        blocks, cin = [], 32
        for t, c, n, s, k in self.BLOCKS:
            cout = round_filters(c, width)
            for i in range(n):
                blocks.append(LiteMBConv(cin, cout, k, s if i == 0 else 1, t))
                cin = cout
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = Conv2dDynamicSamePadding(cin, 1280, 1, bias=False)
        self._bn1 = nn.BatchNorm2d(1280, momentum=0.01, eps=1e-3)
        self._avg_pooling = nn.AdaptiveAvgPool2d(1)
        self._dropout = nn.Dropout(0.2)
        self._fc = nn.Linear(1280, num_classes)
        self._relu = nn.ReLU6()

    def forward(self, inputs):
        x = self._relu(self._bn0(self._conv_stem(inputs)))
        for block in self._blocks:
            x = block(x)
        x = self._relu(self._bn1(self._conv_head(x)))
        x = self._avg_pooling(x)
        x = x.flatten(start_dim=1)
        x = self._dropout(x)
        return self._fc(x)


# --- GhostNet: ghost module = primary conv + cheap depthwise conv, cat, slice x[:, :oup]; hard_sigmoid = relu6(x + 3) / 6
def hard_sigmoid(x, inplace: bool = False):
    if inplace:
        return x.add_(3.0).clamp_(0.0, 6.0).div_(6.0)
    else:
        return F.relu6(x + 3.0) / 6.0


class GhostSqueezeExcite(nn.Module):
    def __init__(self, in_chs, se_ratio=0.25, divisor=4):
        super().__init__()
        self.gate_fn = hard_sigmoid
        reduced_chs = _make_divisible(in_chs * se_ratio, divisor)
        self.avg_pool = nn.AdaptiveAvgPool2d(1)
        self.conv_reduce = nn.Conv2d(in_chs, reduced_chs, 1, bias=True)
        self.act1 = nn.ReLU(inplace=True)
        self.conv_expand = nn.Conv2d(reduced_chs, in_chs, 1, bias=True)

    def forward(self, x):
        x_se = self.avg_pool(x)
        x_se = self.conv_reduce(x_se)
        x_se = self.act1(x_se)
        x_se = self.conv_expand(x_se)
        x = x * self.gate_fn(x_se)
        return x


class GhostModule(nn.Module):
    def __init__(self, inp, oup, kernel_size=1, ratio=2, dw_size=3, stride=1, relu=True):
        super().__init__()
        self.oup = oup
        init_channels = math.ceil(oup / ratio)
        new_channels = init_channels * (ratio - 1)
        self.primary_conv = nn.Sequential(
            nn.Conv2d(inp, init_channels, kernel_size, stride, kernel_size // 2, bias=False),
            nn.BatchNorm2d(init_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )
        self.cheap_operation = nn.Sequential(
            nn.Conv2d(init_channels, new_channels, dw_size, 1, dw_size // 2, groups=init_channels, bias=False),
            nn.BatchNorm2d(new_channels),
            nn.ReLU(inplace=True) if relu else nn.Sequential(),
        )

    def forward(self, x):
        x1 = self.primary_conv(x)
        x2 = self.cheap_operation(x1)
        out = torch.cat([x1, x2], dim=1)
        return out[:, : self.oup, :, :]


class GhostBottleneck(nn.Module):
    def __init__(self, in_chs, mid_chs, out_chs, dw_kernel_size=3, stride=1, se_ratio=0.0):
        super().__init__()
        has_se = se_ratio is not None and se_ratio > 0.0
        self.stride = stride
        self.ghost1 = GhostModule(in_chs, mid_chs, relu=True)
        if self.stride > 1:
            self.conv_dw = nn.Conv2d(mid_chs, mid_chs, dw_kernel_size, stride=stride, padding=(dw_kernel_size - 1) // 2, groups=mid_chs, bias=False)
            self.bn_dw = nn.BatchNorm2d(mid_chs)
        self.se = GhostSqueezeExcite(mid_chs, se_ratio=se_ratio) if has_se else None
        self.ghost2 = GhostModule(mid_chs, out_chs, relu=False)
        if in_chs == out_chs and self.stride == 1:
            self.shortcut = nn.Sequential()
        else:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_chs, in_chs, dw_kernel_size, stride=stride, padding=(dw_kernel_size - 1) // 2, groups=in_chs, bias=False),
                nn.BatchNorm2d(in_chs),
                nn.Conv2d(in_chs, out_chs, 1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(out_chs),
            )

    def forward(self, x):
        residual = x
        x = self.ghost1(x)
        if self.stride > 1:
            x = self.conv_dw(x)
            x = self.bn_dw(x)
        if self.se is not None:
            x = self.se(x)
        x = self.ghost2(x)
        x += self.shortcut(residual)
        return x


@register(
    "ghostnet_odd",
    "GhostNet x0.55 (odd widths 9, 13, 33, 77 ...): ghost module torch.cat([x1, x2], 1)[:, :self.oup, :, :], hard_sigmoid = F.relu6(x + 3.) / 6. SE gate, empty nn.Sequential() as identity",
    (1, 3, 96, 96),
)
class GhostNetOdd(nn.Module):
    CFGS = [
        # k, t, c, SE, s
        [3, 16, 16, 0, 1],
        [3, 48, 24, 0, 2],
        [3, 72, 24, 0, 1],
        [5, 72, 40, 0.25, 2],
        [5, 120, 40, 0.25, 1],
        [3, 240, 80, 0, 2],
        [3, 200, 80, 0, 1],
        [3, 480, 112, 0.25, 1],
        [5, 672, 160, 0.25, 2],
        [5, 960, 160, 0, 1],
    ]

    def __init__(self, num_classes=1000, width=0.55):
        super().__init__()
        output_channel = int(round(16 * width))
        self.conv_stem = nn.Conv2d(3, output_channel, 3, 2, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(output_channel)
        self.act1 = nn.ReLU(inplace=True)
        input_channel = output_channel
        stages = []
        for k, exp_size, c, se_ratio, s in self.CFGS:
            output_channel = int(round(c * width))
            hidden_channel = int(round(exp_size * width))
            stages.append(GhostBottleneck(input_channel, hidden_channel, output_channel, k, s, se_ratio=se_ratio))
            input_channel = output_channel
        self.blocks = nn.Sequential(*stages)
        self.conv_last = nn.Sequential(nn.Conv2d(input_channel, hidden_channel, 1, bias=False), nn.BatchNorm2d(hidden_channel), nn.ReLU(inplace=True))
        self.global_pool = nn.AdaptiveAvgPool2d((1, 1))
        self.conv_head = nn.Conv2d(hidden_channel, 1280, 1, 1, 0, bias=True)
        self.act2 = nn.ReLU(inplace=True)
        self.classifier = nn.Linear(1280, num_classes)

    def forward(self, x):
        x = self.act1(self.bn1(self.conv_stem(x)))
        x = self.blocks(x)
        x = self.conv_last(x)
        x = self.global_pool(x)
        x = self.act2(self.conv_head(x))
        x = x.view(x.size(0), -1)
        x = F.dropout(x, p=0.2, training=self.training)
        return self.classifier(x)


# --- MnasNet, torchvision style: _stack of _InvertedResidual, BN momentum 1 - 0.9997, x.mean([2, 3]) -----------------------
_BN_MOMENTUM = 1 - 0.9997


class _InvertedResidual(nn.Module):
    def __init__(self, in_ch, out_ch, kernel_size, stride, expansion_factor, bn_momentum=0.1):
        super().__init__()
        mid_ch = in_ch * expansion_factor
        self.apply_residual = in_ch == out_ch and stride == 1
        self.layers = nn.Sequential(
            nn.Conv2d(in_ch, mid_ch, 1, bias=False),
            nn.BatchNorm2d(mid_ch, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_ch, mid_ch, kernel_size, padding=kernel_size // 2, stride=stride, groups=mid_ch, bias=False),
            nn.BatchNorm2d(mid_ch, momentum=bn_momentum),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_ch, out_ch, 1, bias=False),
            nn.BatchNorm2d(out_ch, momentum=bn_momentum),
        )

    def forward(self, input):
        if self.apply_residual:
            return self.layers(input) + input
        else:
            return self.layers(input)


def _stack(in_ch, out_ch, kernel_size, stride, exp_factor, repeats, bn_momentum):
    first = _InvertedResidual(in_ch, out_ch, kernel_size, stride, exp_factor, bn_momentum=bn_momentum)
    remaining = [_InvertedResidual(out_ch, out_ch, kernel_size, 1, exp_factor, bn_momentum=bn_momentum) for _ in range(1, repeats)]
    return nn.Sequential(first, *remaining)


def _round_to_multiple_of(val, divisor, round_up_bias=0.9):
    new_val = max(divisor, int(val + divisor / 2) // divisor * divisor)
    return new_val if new_val >= round_up_bias * val else new_val + divisor


@register(
    "mnasnet_half",
    "torchvision MnasNet 0.5: _stack(_InvertedResidual) with 3x3/5x5 depthwise, BN momentum 1 - 0.9997, one flat nn.Sequential, x.mean([2, 3]), Dropout(inplace) + Linear",
    (1, 3, 96, 96),
)
class MnasNetHalf(nn.Module):
    def __init__(self, alpha=0.5, num_classes=1000, dropout=0.2):
        super().__init__()
        depths = [_round_to_multiple_of(d * alpha, 8) for d in [32, 16, 24, 40, 80, 96, 192, 320]]
        layers = [
            nn.Conv2d(3, depths[0], 3, padding=1, stride=2, bias=False),
            nn.BatchNorm2d(depths[0], momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(depths[0], depths[0], 3, padding=1, stride=1, groups=depths[0], bias=False),
            nn.BatchNorm2d(depths[0], momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
            nn.Conv2d(depths[0], depths[1], 1, padding=0, stride=1, bias=False),
            nn.BatchNorm2d(depths[1], momentum=_BN_MOMENTUM),
            _stack(depths[1], depths[2], 3, 2, 3, 2, _BN_MOMENTUM),
            _stack(depths[2], depths[3], 5, 2, 3, 2, _BN_MOMENTUM),
            _stack(depths[3], depths[4], 5, 2, 6, 2, _BN_MOMENTUM),
            _stack(depths[4], depths[5], 3, 1, 6, 1, _BN_MOMENTUM),
            _stack(depths[5], depths[6], 5, 2, 6, 2, _BN_MOMENTUM),
            _stack(depths[6], depths[7], 3, 1, 6, 1, _BN_MOMENTUM),
            nn.Conv2d(depths[7], 1280, 1, padding=0, stride=1, bias=False),
            nn.BatchNorm2d(1280, momentum=_BN_MOMENTUM),
            nn.ReLU(inplace=True),
        ]
        self.layers = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Dropout(p=dropout, inplace=True), nn.Linear(1280, num_classes))

    def forward(self, x):
        x = self.layers(x)
        x = x.mean([2, 3])
        return self.classifier(x)
