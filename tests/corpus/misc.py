"""Odd ones: normalisations other than BatchNorm-after-conv (InstanceNorm, GroupNorm, BatchNorm after an add
or a Linear), concatenation along H/W, unequal split/chunk, reductions over odd axes (max/amax/var/std/sum),
expand/repeat/linspace coordinates, pixel_unshuffle, softmax over channels, log_softmax, every activation
spelling in one net, odd widths and resolutions, Conv1d on audio features, a non-local block built from
x.size() arithmetic, and the PyTorch MNIST example."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import CorpusNet, registry

NETS: list[CorpusNet] = []
register = registry(NETS, "odd")


# --- fast-neural-style TransformerNet: ReflectionPad2d + conv, InstanceNorm2d(affine=True), interpolate-then-conv upsampling
class ConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride):
        super().__init__()
        reflection_padding = kernel_size // 2
        self.reflection_pad = nn.ReflectionPad2d(reflection_padding)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        out = self.reflection_pad(x)
        out = self.conv2d(out)
        return out


class ResidualBlock(nn.Module):
    def __init__(self, channels):
        super().__init__()
        self.conv1 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in1 = nn.InstanceNorm2d(channels, affine=True)
        self.conv2 = ConvLayer(channels, channels, kernel_size=3, stride=1)
        self.in2 = nn.InstanceNorm2d(channels, affine=True)
        self.relu = nn.ReLU()

    def forward(self, x):
        residual = x
        out = self.relu(self.in1(self.conv1(x)))
        out = self.in2(self.conv2(out))
        out = out + residual
        return out


class UpsampleConvLayer(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_size, stride, upsample=None):
        super().__init__()
        self.upsample = upsample
        reflection_padding = kernel_size // 2
        self.reflection_pad = nn.ReflectionPad2d(reflection_padding)
        self.conv2d = nn.Conv2d(in_channels, out_channels, kernel_size, stride)

    def forward(self, x):
        x_in = x
        if self.upsample:
            x_in = torch.nn.functional.interpolate(x_in, mode="nearest", scale_factor=self.upsample)
        out = self.reflection_pad(x_in)
        out = self.conv2d(out)
        return out


@register(
    "style_transfer_instancenorm",
    "fast-neural-style TransformerNet (x0.25): ReflectionPad2d + conv 9x9, nn.InstanceNorm2d(affine=True), residual blocks, interpolate(mode='nearest', scale_factor=2) + conv upsampling, plain nn.InstanceNorm2d, torch.tanh output",
    (1, 3, 48, 48),
)
class TransformerNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = ConvLayer(3, 8, kernel_size=9, stride=1)
        self.in1 = nn.InstanceNorm2d(8, affine=True)
        self.conv2 = ConvLayer(8, 16, kernel_size=3, stride=2)
        self.in2 = nn.InstanceNorm2d(16, affine=True)
        self.conv3 = ConvLayer(16, 32, kernel_size=3, stride=2)
        self.in3 = nn.InstanceNorm2d(32, affine=True)
        self.res1 = ResidualBlock(32)
        self.res2 = ResidualBlock(32)
        self.deconv1 = UpsampleConvLayer(32, 16, kernel_size=3, stride=1, upsample=2)
        self.in4 = nn.InstanceNorm2d(16)
        self.deconv2 = UpsampleConvLayer(16, 8, kernel_size=3, stride=1, upsample=2)
        self.in5 = nn.InstanceNorm2d(8)
        self.deconv3 = ConvLayer(8, 3, kernel_size=9, stride=1)
        self.relu = nn.ReLU()

    def forward(self, X):
        y = self.relu(self.in1(self.conv1(X)))
        y = self.relu(self.in2(self.conv2(y)))
        y = self.relu(self.in3(self.conv3(y)))
        y = self.res1(y)
        y = self.res2(y)
        y = self.relu(self.in4(self.deconv1(y)))
        y = self.relu(self.in5(self.deconv2(y)))
        y = self.deconv3(y)
        return torch.tanh(y)


# --- GroupNorm everywhere (incl. GroupNorm(1, C)), nn.Identity / Dropout / Dropout2d left in, F.log_softmax output ---------------
@register(
    "groupnorm_logsoftmax",
    "nn.GroupNorm(4, C) and nn.GroupNorm(1, C) instead of BatchNorm, nn.Identity placeholders, nn.Dropout2d / nn.Dropout, weight-standardised conv (w - mean) / std, F.log_softmax(x, dim=1)",
    (1, 3, 40, 40),
)
class GroupNormNet(nn.Module):
    class WSConv2d(nn.Conv2d):
        def forward(self, x):
            w = self.weight
            w = (w - w.mean(dim=(1, 2, 3), keepdim=True)) / (w.std(dim=(1, 2, 3), keepdim=True) + 1e-5)
            return F.conv2d(x, w, self.bias, self.stride, self.padding, self.dilation, self.groups)

    def __init__(self, num_classes=10):
        super().__init__()
        self.features = nn.Sequential(
            self.WSConv2d(3, 32, 3, 2, 1),
            nn.GroupNorm(4, 32),
            nn.ReLU(inplace=True),
            nn.Identity(),
            nn.Conv2d(32, 64, 3, 2, 1),
            nn.GroupNorm(8, 64),
            nn.ReLU(inplace=True),
            nn.Dropout2d(0.1),
            self.WSConv2d(64, 64, 3, 1, 1),
            nn.GroupNorm(1, 64),
            nn.ReLU(inplace=True),
            nn.Conv2d(64, 96, 3, 2, 1),
            nn.GroupNorm(32, 96),
            nn.ReLU(inplace=True),
        )
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.drop = nn.Dropout(0.5)
        self.neck = nn.Identity()
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x):
        x = self.pool(self.features(x)).flatten(1)
        x = self.fc(self.drop(self.neck(x)))
        return F.log_softmax(x, dim=1)


# --- BatchNorm after an add (and BatchNorm1d after Linear), two heads: per-pixel softmax over channels + log_softmax -----------
class AddThenBN(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1)
        self.bn = nn.BatchNorm2d(c)

    def forward(self, x):
        y = self.conv2(F.relu(self.conv1(x)))
        return F.relu(self.bn(x + y))


@register(
    "bn_after_add_two_heads",
    "BatchNorm2d applied to (x + conv(x)) not to a conv output, Linear + nn.BatchNorm1d, F.softmax(seg, dim=1) over channels of a map + F.log_softmax(cls, dim=-1), two outputs",
    (1, 3, 40, 40),
)
class BNAfterAdd(nn.Module):
    def __init__(self, c=32, seg_classes=4, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, c, 3, 2, 1)
        self.blocks = nn.Sequential(AddThenBN(c), AddThenBN(c))
        self.seg = nn.Conv2d(c, seg_classes, 1)
        self.fc1 = nn.Linear(c, 64)
        self.bn1d = nn.BatchNorm1d(64)
        self.fc2 = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.blocks(F.relu(self.stem(x)))
        seg = F.softmax(self.seg(x), dim=1)
        v = torch.mean(x, dim=[2, 3])
        v = F.relu(self.bn1d(self.fc1(v)))
        return seg, F.log_softmax(self.fc2(v), dim=-1)


# --- torch.split with unequal sizes, chunk(3) of 32 channels (11/11/10), cat along H and W, max/amax/min/var/std/sum ---------
@register(
    "split_cat_reductions",
    "torch.split(x, [8, 16, 8], 1), x.chunk(3, dim=1) -> 11/11/10, torch.cat(dim=2) and (dim=3), torch.max(x, dim=1) values, amax/amin, var(unbiased), std, sum(-1), on 1x3x32x48",
    (1, 3, 32, 48),
    dynamic="batch",
    note="reductions over the channel axis leave H- and W-sized vectors that feed a Linear",
)
class SplitCatReductions(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU())  # 16x24
        self.a = nn.Conv2d(8, 16, 3, 1, 1)
        self.b = nn.Conv2d(16, 16, 3, 1, 1)
        self.c = nn.Conv2d(8, 16, 3, 1, 1)
        self.mix = nn.Conv2d(32, 32, 3, 2, 1)
        self.fc = nn.Linear(156, 10)

    def forward(self, x):
        x = self.stem(x)
        a, b, c = torch.split(x, [8, 16, 8], dim=1)
        a, b, c = self.a(a), self.b(b), self.c(c)
        tall = torch.cat([a, b], dim=2)  # 16 x 32 x 24
        wide = torch.cat([b, c], dim=3)  # 16 x 16 x 48
        y = self.mix(torch.cat([tall[:, :, :16], wide[:, :, :, :24]], dim=1))  # 32 x 8 x 12
        p, q, r = y.chunk(3, dim=1)  # 11, 11, 10 channels
        feats = [
            torch.max(y, dim=1)[0].mean(dim=-1),  # 8: max over channels
            y.amax(dim=(2, 3)),  # 32
            p.amin(dim=(1, 3)),  # 8
            q.var(dim=1, keepdim=True).flatten(1)[:, :16],  # 16
            r.std(dim=(1, 2)),  # 12
            tall.sum(dim=-1).mean(dim=1),  # 32
            wide.sum(dim=(1, 2)) / 16.0,  # 48
        ]
        v = torch.cat(feats, dim=1)  # 8 + 32 + 8 + 16 + 12 + 32 + 48 = 156
        return self.fc(v)


# --- CoordConv (linspace coordinate maps expanded to b, 1, h, w), .repeat of a learned map, F.pixel_unshuffle, shape arithmetic --
class AddCoords(nn.Module):
    def forward(self, x):
        b, _, h, w = x.size()
        xx = torch.linspace(-1, 1, w, device=x.device, dtype=x.dtype).view(1, 1, 1, w).expand(b, 1, h, w)
        yy = torch.linspace(-1, 1, h, device=x.device, dtype=x.dtype).view(1, 1, h, 1).expand(b, 1, h, w)
        return torch.cat([x, xx, yy], dim=1)


@register(
    "coordconv_unshuffle",
    "CoordConv: torch.linspace(-1, 1, w).view(1, 1, 1, w).expand(b, 1, h, w) coordinate channels + cat, F.pixel_unshuffle(x, 2), learned bias map .repeat(b, 1, 1, 1), reshape(b, c, h * w) arithmetic, 1x3x36x52",
    (1, 3, 36, 52),
    dynamic="batch",
    note="the learned 9x13 bias map is added at a fixed resolution",
)
class CoordConvUnshuffle(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.coords = AddCoords()
        self.conv1 = nn.Conv2d(5, 16, 3, 1, 1)
        self.conv2 = nn.Conv2d(64, 48, 3, 1, 1)  # after pixel_unshuffle: 16 * 4
        self.conv3 = nn.Conv2d(48 + 2, 64, 3, 2, 1)
        self.bias_map = nn.Parameter(torch.randn(1, 64, 9, 13) * 0.1)
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = F.relu(self.conv1(self.coords(x)))
        x = F.pixel_unshuffle(x, 2)  # 18 x 26
        x = F.relu(self.conv2(x))
        x = F.relu(self.conv3(self.coords(x)))  # 9 x 13
        b, c, h, w = x.shape
        x = x + self.bias_map.repeat(b, 1, 1, 1)
        x = x.reshape(b, c, h * w).max(dim=2).values
        return self.fc(x)


# --- odd widths (37, 93), odd non-square input 67x93, ZeroPad2d + padding=0, 5x5 stride-2, PReLU per channel, x.squeeze() ------
@register(
    "odd_widths_squeeze",
    "widths 37/93/61, 1x3x67x93 input, nn.ZeroPad2d(2) / ZeroPad2d((1, 1, 1, 1)) + padding=0 5x5 and 3x3 stride-2 convs, nn.PReLU(num_parameters=C), F.adaptive_max_pool2d(x, 1) + x.squeeze() (drops the batch dim of 1 too)",
    (1, 3, 67, 93),
    dynamic="static",
    note="x.squeeze() removes the batch dim when it is 1: the output is (10,) and only a batch-1 graph is right",
)
class OddWidthsSqueeze(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.body = nn.Sequential(
            nn.ZeroPad2d(2),
            nn.Conv2d(3, 37, 5, 2, 0, bias=False),
            nn.BatchNorm2d(37),
            nn.PReLU(37),
            nn.ZeroPad2d(1),
            nn.Conv2d(37, 37, 3, 1, 0, groups=37, bias=False),
            nn.BatchNorm2d(37),
            nn.PReLU(37),
            nn.ZeroPad2d((1, 1, 1, 1)),
            nn.Conv2d(37, 93, 3, 2, 0, bias=False),
            nn.BatchNorm2d(93),
            nn.PReLU(93),
            nn.Conv2d(93, 61, 3, 2, 1, bias=False),
            nn.BatchNorm2d(61),
            nn.PReLU(),
        )
        self.fc = nn.Linear(61, num_classes)

    def forward(self, x):
        x = F.adaptive_max_pool2d(self.body(x), 1)
        x = x.squeeze()
        return self.fc(x)


# --- the PyTorch MNIST example, verbatim layout --------------------------------------------------------------------------------
@register(
    "mnist_example",
    "pytorch/examples MNIST Net: conv1/conv2 + F.relu, F.max_pool2d(x, 2), nn.Dropout(0.25), torch.flatten(x, 1), fc1(9216, 128), F.log_softmax(x, dim=1), 1x1x28x28",
    (1, 1, 28, 28),
    dynamic="batch",
    note="fc1 expects the 12x12 map of a 28x28 input",
)
class MNISTNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 32, 3, 1)
        self.conv2 = nn.Conv2d(32, 64, 3, 1)
        self.dropout1 = nn.Dropout(0.25)
        self.dropout2 = nn.Dropout(0.5)
        self.fc1 = nn.Linear(9216, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = self.conv1(x)
        x = F.relu(x)
        x = self.conv2(x)
        x = F.relu(x)
        x = F.max_pool2d(x, 2)
        x = self.dropout1(x)
        x = torch.flatten(x, 1)
        x = self.fc1(x)
        x = F.relu(x)
        x = self.dropout2(x)
        x = self.fc2(x)
        output = F.log_softmax(x, dim=1)
        return output


# --- every activation spelling, one after another (1x1 conv + activation each) ---------------------------------------------
def _mish(x):
    return x * torch.tanh(F.softplus(x))


ACTIVATIONS = [
    ("nn.ReLU6", nn.ReLU6()),
    ("F.hardtanh(x, 0, 6)", lambda x: F.hardtanh(x, 0.0, 6.0)),
    ("x.clamp(0, 6)", lambda x: x.clamp(0, 6)),
    ("torch.clip(x, 0, 6)", lambda x: torch.clip(x, 0.0, 6.0)),
    ("torch.clamp(x, min=0)", lambda x: torch.clamp(x, min=0.0)),
    ("x.relu()", lambda x: x.relu()),
    ("nn.Hardswish", nn.Hardswish()),
    ("F.hardswish", F.hardswish),
    ("x * F.relu6(x + 3) / 6", lambda x: x * F.relu6(x + 3.0) / 6.0),
    ("x * (x + 3).clamp(0, 6) / 6", lambda x: x * (x + 3).clamp(0, 6) / 6),
    ("x * nn.Hardsigmoid(x)", lambda x: x * nn.functional.hardsigmoid(x)),
    ("x * (F.relu6(x + 3) * 0.16666667)", lambda x: x * (F.relu6(x + 3.0) * 0.16666667)),
    ("x * (x / 6 + 0.5).clamp(0, 1)", lambda x: x * (x / 6 + 0.5).clamp(0, 1)),
    ("nn.SiLU", nn.SiLU()),
    ("x * torch.sigmoid(x)", lambda x: x * torch.sigmoid(x)),
    ("F.silu", F.silu),
    ("nn.GELU()", nn.GELU()),
    ("nn.GELU('tanh')", nn.GELU("tanh")),
    ("erf GELU", lambda x: 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))),
    ("tanh GELU written out", lambda x: 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))),
    ("quick GELU x * sigmoid(1.702 x)", lambda x: x * torch.sigmoid(1.702 * x)),
    ("nn.LeakyReLU(0.2)", nn.LeakyReLU(0.2)),
    ("F.leaky_relu(x, 0.01)", lambda x: F.leaky_relu(x, 0.01)),
    ("torch.maximum(x, 0.1 * x)", lambda x: torch.maximum(x, 0.1 * x)),
    ("torch.where(x > 0, x, 0.2 * x)", lambda x: torch.where(x > 0, x, 0.2 * x)),
    ("nn.ELU", nn.ELU()),
    ("nn.SELU", nn.SELU()),
    ("nn.CELU(0.5)", nn.CELU(0.5)),
    ("Mish written out", _mish),
    ("nn.Mish", nn.Mish()),
    ("nn.Softplus", nn.Softplus()),
    ("nn.Softsign", nn.Softsign()),
    ("nn.Tanh", nn.Tanh()),
    ("nn.Sigmoid", nn.Sigmoid()),
]


class _Act(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


@register(
    "activation_zoo",
    "34 activation spellings in a row (ReLU6/hardtanh/clamp/clip, hard-swish x4, hard-sigmoid gates x3, SiLU x3, GELU x5, Leaky x4 incl. maximum/where, ELU/SELU/CELU, Mish x2, Softplus, Softsign, PReLU, Tanh, Sigmoid)",
    (1, 3, 32, 32),
    min_opset=12,
    note="torchscript exports nn.CELU from opset 12",
)
class ActivationZoo(nn.Module):
    def __init__(self, width=16, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, 2, 1)
        self.prelu = nn.PReLU(width)
        layers = []
        for _name, fn in ACTIVATIONS:
            layers += [nn.Conv2d(width, width, 1), nn.BatchNorm2d(width), fn if isinstance(fn, nn.Module) else _Act(fn)]
        self.body = nn.Sequential(*layers)
        self.fc = nn.Linear(width, num_classes)

    def forward(self, x):
        x = self.prelu(self.stem(x))
        x = self.body(x)
        return self.fc(x.mean((2, 3)))


# --- keyword spotting on MFCC frames: Conv1d + BatchNorm1d, dilated temporal residual blocks, x.mean(-1) --------------------------
class TemporalBlock(nn.Module):
    def __init__(self, cin, cout, stride, dilation=1):
        super().__init__()
        self.conv1 = nn.Conv1d(cin, cout, 9, stride, padding=4 * dilation, dilation=dilation, bias=False)
        self.bn1 = nn.BatchNorm1d(cout)
        self.conv2 = nn.Conv1d(cout, cout, 9, 1, padding=4, bias=False)
        self.bn2 = nn.BatchNorm1d(cout)
        self.down = nn.Sequential(nn.Conv1d(cin, cout, 1, stride, bias=False), nn.BatchNorm1d(cout), nn.ReLU()) if stride != 1 or cin != cout else None

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return F.relu(out + (x if self.down is None else self.down(x)))


@register(
    "conv1d_kws",
    "TC-ResNet-ish keyword spotting on 1x40x98 MFCCs: nn.Conv1d(k=9) + nn.BatchNorm1d, stride-2 and dilated temporal blocks with 1x1 Conv1d shortcuts, x.mean(-1), Linear",
    (1, 40, 98),
)
class Conv1dKWS(nn.Module):
    def __init__(self, n_mfcc=40, num_classes=12):
        super().__init__()
        self.conv0 = nn.Conv1d(n_mfcc, 32, 3, 1, 1, bias=False)
        self.blocks = nn.Sequential(TemporalBlock(32, 48, 2), TemporalBlock(48, 48, 1, 2), TemporalBlock(48, 64, 2), TemporalBlock(64, 96, 2))
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x):
        x = self.blocks(self.conv0(x))
        return self.fc(x.mean(-1))


# --- non-local block (embedded Gaussian): view(b, c', -1).permute(0, 2, 1), matmul, softmax, view(b, c', *x.size()[2:]) --------
class NonLocalBlock(nn.Module):
    def __init__(self, in_channels, inter_channels=None, sub_sample=True):
        super().__init__()
        self.in_channels = in_channels
        self.inter_channels = inter_channels or max(in_channels // 2, 1)
        self.g = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.theta = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.phi = nn.Conv2d(in_channels, self.inter_channels, 1)
        self.W = nn.Sequential(nn.Conv2d(self.inter_channels, in_channels, 1), nn.BatchNorm2d(in_channels))
        if sub_sample:
            self.g = nn.Sequential(self.g, nn.MaxPool2d(kernel_size=(2, 2)))
            self.phi = nn.Sequential(self.phi, nn.MaxPool2d(kernel_size=(2, 2)))

    def forward(self, x):
        batch_size = x.size(0)
        g_x = self.g(x).view(batch_size, self.inter_channels, -1)
        g_x = g_x.permute(0, 2, 1)
        theta_x = self.theta(x).view(batch_size, self.inter_channels, -1)
        theta_x = theta_x.permute(0, 2, 1)
        phi_x = self.phi(x).view(batch_size, self.inter_channels, -1)
        f = torch.matmul(theta_x, phi_x)
        f_div_C = F.softmax(f, dim=-1)
        y = torch.matmul(f_div_C, g_x)
        y = y.permute(0, 2, 1).contiguous()
        y = y.view(batch_size, self.inter_channels, *x.size()[2:])
        W_y = self.W(y)
        z = W_y + x
        return z


@register(
    "nonlocal_shape_arith",
    "non-local block: conv(x).view(batch_size, c', -1).permute(0, 2, 1), sub-sampled phi/g with MaxPool2d, torch.matmul + F.softmax(dim=-1), y.view(batch_size, c', *x.size()[2:]), residual",
    (1, 3, 48, 48),
)
class NonLocalNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 32, 3, 2, 1), nn.BatchNorm2d(32), nn.ReLU(), nn.Conv2d(32, 64, 3, 2, 1), nn.BatchNorm2d(64), nn.ReLU())
        self.nl = NonLocalBlock(64)
        self.tail = nn.Sequential(nn.Conv2d(64, 96, 3, 2, 1), nn.BatchNorm2d(96), nn.ReLU())
        self.nl2 = NonLocalBlock(96, sub_sample=False)
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x):
        x = self.nl(self.stem(x))
        x = self.nl2(self.tail(x))
        return self.fc(F.adaptive_avg_pool2d(x, 1).view(x.size(0), -1))
