"""Classic CNNs: VGG, ResNet (basic, bottleneck, CIFAR option-A, pre-activation), ResNeXt, DenseNet,
SqueezeNet, Inception, dilated convs, LeNet, CBAM, all-conv. Each one written as a different author would."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import CorpusNet, registry

NETS: list[CorpusNet] = []
register = registry(NETS, "cnn")


# --- torchvision-style VGG: config list, nn.Sequential, AdaptiveAvgPool2d((1, 1)) + torch.flatten ---------------------
@register(
    "vgg_style_a",
    "VGG cfg list in nn.Sequential, Conv-BN-ReLU(inplace), MaxPool2d, nn.AdaptiveAvgPool2d((1,1)) + torch.flatten + Linear/Dropout",
    (1, 3, 32, 32),
)
class VGGStyleA(nn.Module):
    cfg = [16, 16, "M", 32, 32, "M", 64, 64, "M", 128, "M"]

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_channels = 3
        for v in self.cfg:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            else:
                layers += [nn.Conv2d(in_channels, v, kernel_size=3, padding=1), nn.BatchNorm2d(v), nn.ReLU(inplace=True)]
                in_channels = v
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d((1, 1))
        self.classifier = nn.Sequential(
            nn.Linear(in_channels, 64), nn.ReLU(True), nn.Dropout(p=0.5), nn.Linear(64, num_classes)
        )

    def forward(self, x):
        x = self.features(x)
        x = self.avgpool(x)
        x = torch.flatten(x, 1)
        x = self.classifier(x)
        return x


# --- the CIFAR-tutorial way: layers as attributes, F.relu / F.max_pool2d in forward, view(x.size(0), -1) ------------------
@register(
    "vgg_style_b",
    "CIFAR-tutorial style: F.relu/F.max_pool2d in forward, no BN, x.view(x.size(0), -1) of a fixed 4x4 map, F.dropout",
    (1, 3, 32, 32),
    dynamic="batch",
    note="the classifier's Linear expects the 4x4 map of a 32x32 input",
)
class VGGStyleB(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv4 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv5 = nn.Conv2d(64, 128, 3, padding=1)
        self.fc1 = nn.Linear(128 * 4 * 4, 128)
        self.fc2 = nn.Linear(128, 10)

    def forward(self, x):
        x = F.relu(self.conv1(x))
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = F.max_pool2d(F.relu(self.conv4(x)), (2, 2))
        x = F.max_pool2d(F.relu(self.conv5(x)), 2)
        x = x.view(x.size(0), -1)
        x = F.dropout(x, p=0.5, training=self.training)
        x = F.relu(self.fc1(x))
        x = self.fc2(x)
        return x


# --- torchvision-style ResNet with BasicBlock --------------------------------------------------------------------------
def conv3x3(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=3, stride=stride, padding=1, bias=False)


def conv1x1(in_planes, out_planes, stride=1):
    return nn.Conv2d(in_planes, out_planes, kernel_size=1, stride=stride, bias=False)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = conv3x3(inplanes, planes, stride)
        self.bn1 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.conv2 = conv3x3(planes, planes)
        self.bn2 = nn.BatchNorm2d(planes)
        self.downsample = downsample

    def forward(self, x):
        identity = x
        out = self.conv1(x)
        out = self.bn1(out)
        out = self.relu(out)
        out = self.conv2(out)
        out = self.bn2(out)
        if self.downsample is not None:
            identity = self.downsample(x)
        out += identity
        out = self.relu(out)
        return out


@register(
    "resnet_basic_a",
    "torchvision ResNet-18 layout: 7x7/2 stem + MaxPool, BasicBlock, 1x1-conv+BN downsample, in-place +=, F.adaptive_avg_pool2d(x, 1) + view(size(0), -1)",
    (1, 3, 64, 64),
)
class ResNetBasicA(nn.Module):
    def __init__(self, widths=(24, 48, 96, 192), layers=(2, 2, 2, 2), num_classes=100):
        super().__init__()
        self.inplanes = widths[0]
        self.conv1 = nn.Conv2d(3, self.inplanes, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(self.inplanes)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.layer1 = self._make_layer(widths[0], layers[0])
        self.layer2 = self._make_layer(widths[1], layers[1], stride=2)
        self.layer3 = self._make_layer(widths[2], layers[2], stride=2)
        self.layer4 = self._make_layer(widths[3], layers[3], stride=2)
        self.fc = nn.Linear(widths[3], num_classes)
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")

    def _make_layer(self, planes, blocks, stride=1):
        downsample = None
        if stride != 1 or self.inplanes != planes:
            downsample = nn.Sequential(conv1x1(self.inplanes, planes, stride), nn.BatchNorm2d(planes))
        layers = [BasicBlock(self.inplanes, planes, stride, downsample)]
        self.inplanes = planes
        for _ in range(1, blocks):
            layers.append(BasicBlock(self.inplanes, planes))
        return nn.Sequential(*layers)

    def forward(self, x):
        x = self.conv1(x)
        x = self.bn1(x)
        x = self.relu(x)
        x = self.maxpool(x)
        x = self.layer1(x)
        x = self.layer2(x)
        x = self.layer3(x)
        x = self.layer4(x)
        x = F.adaptive_avg_pool2d(x, 1)
        x = x.view(x.size(0), -1)
        return self.fc(x)


# --- CIFAR ResNet (akamaster): option-A shortcut = strided slice + F.pad on the channel dim, avg_pool2d(x, x.size()[3]) ---
class LambdaLayer(nn.Module):
    def __init__(self, lambd):
        super().__init__()
        self.lambd = lambd

    def forward(self, x):
        return self.lambd(x)


class CifarBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.shortcut = nn.Sequential()
        if stride != 1 or in_planes != planes:
            pad = planes // 4
            self.shortcut = LambdaLayer(lambda x: F.pad(x[:, :, ::2, ::2], (0, 0, 0, 0, pad, pad), "constant", 0))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        out += self.shortcut(x)
        out = F.relu(out)
        return out


def _weights_init(m):
    if isinstance(m, (nn.Linear, nn.Conv2d)):
        nn.init.kaiming_normal_(m.weight)


@register(
    "resnet_cifar_option_a",
    "CIFAR ResNet: LambdaLayer shortcut x[:, :, ::2, ::2] + F.pad on channels, empty nn.Sequential shortcut, F.avg_pool2d(out, out.size()[3])",
    (1, 3, 32, 32),
    dynamic="batch",
    note="the global pool's kernel size is read from the input size in Python (a constant in the trace)",
)
class ResNetCifar(nn.Module):
    def __init__(self, num_blocks=(2, 2, 2), num_classes=10):
        super().__init__()
        self.in_planes = 16
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(16)
        self.layer1 = self._make_layer(16, num_blocks[0], stride=1)
        self.layer2 = self._make_layer(32, num_blocks[1], stride=2)
        self.layer3 = self._make_layer(64, num_blocks[2], stride=2)
        self.linear = nn.Linear(64, num_classes)
        self.apply(_weights_init)

    def _make_layer(self, planes, num_blocks, stride):
        strides = [stride] + [1] * (num_blocks - 1)
        layers = []
        for s in strides:
            layers.append(CifarBlock(self.in_planes, planes, s))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = self.layer1(out)
        out = self.layer2(out)
        out = self.layer3(out)
        out = F.avg_pool2d(out, out.size()[3])
        out = out.view(out.size(0), -1)
        out = self.linear(out)
        return out


# --- Bottleneck ResNet, mean((2, 3)) global pool, classifier written as x @ W.t() + b ----------------------------------------
class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_ch, planes, stride=1):
        super().__init__()
        out_ch = planes * self.expansion
        self.conv1 = nn.Conv2d(in_ch, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out_ch, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out_ch)
        self.shortcut = None
        if stride != 1 or in_ch != out_ch:
            self.shortcut = nn.Sequential(nn.Conv2d(in_ch, out_ch, 1, stride=stride, bias=False), nn.BatchNorm2d(out_ch))

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        out = F.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        sc = x if self.shortcut is None else self.shortcut(x)
        return F.relu(out + sc)


@register(
    "resnet_bottleneck",
    "Bottleneck 1x1-3x3(stride)-1x1 x4 blocks, x.mean((2, 3)) global pool, classifier as x @ self.weight.t() + self.bias",
    (1, 3, 64, 64),
)
class ResNetBottleneck(nn.Module):
    def __init__(self, num_classes=100):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        blocks, in_ch = [], 16
        for planes, n, stride in [(16, 1, 1), (32, 2, 2), (64, 1, 2)]:
            for i in range(n):
                blocks.append(Bottleneck(in_ch, planes, stride if i == 0 else 1))
                in_ch = planes * Bottleneck.expansion
        self.blocks = nn.Sequential(*blocks)
        self.weight = nn.Parameter(torch.randn(num_classes, in_ch) * 0.02)
        self.bias = nn.Parameter(torch.zeros(num_classes))

    def forward(self, x):
        x = self.blocks(self.stem(x))
        x = x.mean((2, 3))
        return x @ self.weight.t() + self.bias


# --- ResNeXt: grouped 3x3 conv (cardinality 8), nn.AdaptiveAvgPool2d(1) + nn.Flatten() --------------------------------------
class ResNeXtBlock(nn.Module):
    def __init__(self, in_channels, out_channels, stride, cardinality, base_width, widen_factor):
        super().__init__()
        width_ratio = out_channels / (widen_factor * 64.0)
        D = cardinality * int(base_width * width_ratio)
        self.conv_reduce = nn.Conv2d(in_channels, D, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn_reduce = nn.BatchNorm2d(D)
        self.conv_conv = nn.Conv2d(D, D, kernel_size=3, stride=stride, padding=1, groups=cardinality, bias=False)
        self.bn = nn.BatchNorm2d(D)
        self.conv_expand = nn.Conv2d(D, out_channels, kernel_size=1, stride=1, padding=0, bias=False)
        self.bn_expand = nn.BatchNorm2d(out_channels)
        self.shortcut = nn.Sequential()
        if in_channels != out_channels:
            self.shortcut.add_module("shortcut_conv", nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False))
            self.shortcut.add_module("shortcut_bn", nn.BatchNorm2d(out_channels))

    def forward(self, x):
        bottleneck = self.conv_reduce.forward(x)
        bottleneck = F.relu(self.bn_reduce.forward(bottleneck), inplace=True)
        bottleneck = self.conv_conv.forward(bottleneck)
        bottleneck = F.relu(self.bn.forward(bottleneck), inplace=True)
        bottleneck = self.conv_expand.forward(bottleneck)
        bottleneck = self.bn_expand.forward(bottleneck)
        residual = self.shortcut.forward(x)
        return F.relu(residual + bottleneck, inplace=True)


@register(
    "resnext_grouped",
    "ResNeXt blocks with groups=8 3x3 conv, shortcut built with add_module, module.forward() calls, nn.AdaptiveAvgPool2d(1) + nn.Flatten()",
    (1, 3, 64, 64),
)
class ResNeXtTiny(nn.Module):
    def __init__(self, cardinality=8, base_width=4, widen_factor=1, num_classes=100):
        super().__init__()
        self.conv_1_3x3 = nn.Conv2d(3, 32, 3, 2, 1, bias=False)
        self.bn_1 = nn.BatchNorm2d(32)
        stages = [32, 64, 128, 256]
        self.stage_1 = ResNeXtBlock(stages[0], stages[1], 1, cardinality, base_width, widen_factor)
        self.stage_2 = ResNeXtBlock(stages[1], stages[2], 2, cardinality, base_width, widen_factor)
        self.stage_3 = ResNeXtBlock(stages[2], stages[3], 2, cardinality, base_width, widen_factor)
        self.head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(stages[3], num_classes))

    def forward(self, x):
        x = self.conv_1_3x3.forward(x)
        x = F.relu(self.bn_1.forward(x), inplace=True)
        x = self.stage_1.forward(x)
        x = self.stage_2.forward(x)
        x = self.stage_3.forward(x)
        return self.head(x)


# --- DenseNet-BC: list of features concatenated in every layer, transition with AvgPool2d -------------------------------
class _DenseLayer(nn.Module):
    def __init__(self, num_input_features, growth_rate, bn_size):
        super().__init__()
        self.norm1 = nn.BatchNorm2d(num_input_features)
        self.relu1 = nn.ReLU(inplace=True)
        self.conv1 = nn.Conv2d(num_input_features, bn_size * growth_rate, kernel_size=1, stride=1, bias=False)
        self.norm2 = nn.BatchNorm2d(bn_size * growth_rate)
        self.relu2 = nn.ReLU(inplace=True)
        self.conv2 = nn.Conv2d(bn_size * growth_rate, growth_rate, kernel_size=3, stride=1, padding=1, bias=False)

    def forward(self, inputs):
        concated_features = torch.cat(inputs, 1)
        bottleneck_output = self.conv1(self.relu1(self.norm1(concated_features)))
        return self.conv2(self.relu2(self.norm2(bottleneck_output)))


class _DenseBlock(nn.ModuleDict):
    def __init__(self, num_layers, num_input_features, bn_size, growth_rate):
        super().__init__()
        for i in range(num_layers):
            self.add_module(f"denselayer{i + 1}", _DenseLayer(num_input_features + i * growth_rate, growth_rate, bn_size))

    def forward(self, init_features):
        features = [init_features]
        for _name, layer in self.items():
            new_features = layer(features)
            features.append(new_features)
        return torch.cat(features, 1)


class _Transition(nn.Sequential):
    def __init__(self, num_input_features, num_output_features):
        super().__init__()
        self.norm = nn.BatchNorm2d(num_input_features)
        self.relu = nn.ReLU(inplace=True)
        self.conv = nn.Conv2d(num_input_features, num_output_features, kernel_size=1, stride=1, bias=False)
        self.pool = nn.AvgPool2d(kernel_size=2, stride=2)


@register(
    "densenet_tiny",
    "DenseNet-BC: torch.cat(list_of_features, 1) in every layer, nn.ModuleDict block, transition AvgPool2d, F.adaptive_avg_pool2d(x, (1, 1))",
    (1, 3, 32, 32),
)
class DenseNetTiny(nn.Module):
    def __init__(self, growth_rate=8, block_config=(4, 4, 4), num_init_features=16, bn_size=4, num_classes=10):
        super().__init__()
        self.features = nn.Sequential()
        self.features.add_module("conv0", nn.Conv2d(3, num_init_features, kernel_size=3, padding=1, bias=False))
        num_features = num_init_features
        for i, num_layers in enumerate(block_config):
            self.features.add_module(f"denseblock{i + 1}", _DenseBlock(num_layers, num_features, bn_size, growth_rate))
            num_features = num_features + num_layers * growth_rate
            if i != len(block_config) - 1:
                self.features.add_module(f"transition{i + 1}", _Transition(num_features, num_features // 2))
                num_features = num_features // 2
        self.features.add_module("norm5", nn.BatchNorm2d(num_features))
        self.classifier = nn.Linear(num_features, num_classes)

    def forward(self, x):
        features = self.features(x)
        out = F.relu(features, inplace=True)
        out = F.adaptive_avg_pool2d(out, (1, 1))
        out = torch.flatten(out, 1)
        out = self.classifier(out)
        return out


# --- SqueezeNet 1.1: Fire modules, MaxPool2d(ceil_mode=True), conv classifier, squeeze(-1).squeeze(-1) -------------------
class Fire(nn.Module):
    def __init__(self, inplanes, squeeze_planes, expand1x1_planes, expand3x3_planes):
        super().__init__()
        self.squeeze = nn.Conv2d(inplanes, squeeze_planes, kernel_size=1)
        self.squeeze_activation = nn.ReLU(inplace=True)
        self.expand1x1 = nn.Conv2d(squeeze_planes, expand1x1_planes, kernel_size=1)
        self.expand1x1_activation = nn.ReLU(inplace=True)
        self.expand3x3 = nn.Conv2d(squeeze_planes, expand3x3_planes, kernel_size=3, padding=1)
        self.expand3x3_activation = nn.ReLU(inplace=True)

    def forward(self, x):
        x = self.squeeze_activation(self.squeeze(x))
        return torch.cat([self.expand1x1_activation(self.expand1x1(x)), self.expand3x3_activation(self.expand3x3(x))], 1)


@register(
    "squeezenet_fire",
    "SqueezeNet 1.1: Fire (1x1 squeeze, 1x1 & 3x3 expand, cat), MaxPool2d(ceil_mode=True), 1x1-conv classifier, AdaptiveAvgPool + squeeze(-1).squeeze(-1)",
    (1, 3, 96, 96),
)
class SqueezeNetFire(nn.Module):
    def __init__(self, num_classes=100):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 32, kernel_size=3, stride=2),
            nn.ReLU(inplace=True),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(32, 8, 32, 32),
            Fire(64, 8, 32, 32),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(64, 16, 64, 64),
            Fire(128, 16, 64, 64),
            nn.MaxPool2d(kernel_size=3, stride=2, ceil_mode=True),
            Fire(128, 24, 96, 96),
            Fire(192, 32, 128, 128),
        )
        self.classifier = nn.Sequential(
            nn.Dropout(p=0.5), nn.Conv2d(256, num_classes, kernel_size=1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d((1, 1))
        )

    def forward(self, x):
        x = self.features(x)
        x = self.classifier(x)
        return x.squeeze(-1).squeeze(-1)


# --- Inception: four branches concatenated, BN eps=0.001, mean(dim=[-1, -2], keepdim=True) + 1x1-conv classifier ------------
class BasicConv2d(nn.Module):
    def __init__(self, in_channels, out_channels, **kwargs):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x):
        x = self.conv(x)
        x = self.bn(x)
        return F.relu(x, inplace=True)


class InceptionBlock(nn.Module):
    def __init__(self, in_channels, c1, c3r, c3, c5r, c5, pool_proj, pool="avg"):
        super().__init__()
        self.branch1x1 = BasicConv2d(in_channels, c1, kernel_size=1)
        self.branch3x3_1 = BasicConv2d(in_channels, c3r, kernel_size=1)
        self.branch3x3_2 = BasicConv2d(c3r, c3, kernel_size=3, padding=1)
        self.branch5x5_1 = BasicConv2d(in_channels, c5r, kernel_size=1)
        self.branch5x5_2 = BasicConv2d(c5r, c5, kernel_size=3, padding=1)
        self.branch5x5_3 = BasicConv2d(c5, c5, kernel_size=3, padding=1)
        self.branch_pool = BasicConv2d(in_channels, pool_proj, kernel_size=1)
        self.pool = pool

    def _forward(self, x):
        branch1x1 = self.branch1x1(x)
        branch3x3 = self.branch3x3_2(self.branch3x3_1(x))
        branch5x5 = self.branch5x5_3(self.branch5x5_2(self.branch5x5_1(x)))
        if self.pool == "avg":
            branch_pool = F.avg_pool2d(x, kernel_size=3, stride=1, padding=1)
        else:
            branch_pool = F.max_pool2d(x, kernel_size=3, stride=1, padding=1)
        branch_pool = self.branch_pool(branch_pool)
        return [branch1x1, branch3x3, branch5x5, branch_pool]

    def forward(self, x):
        outputs = self._forward(x)
        return torch.cat(outputs, 1)


@register(
    "inception_mini",
    "GoogLeNet-ish: 4-branch blocks + torch.cat, F.avg_pool2d/F.max_pool2d(3, 1, 1) pool branch, x.mean(dim=[-1, -2], keepdim=True) + 1x1-conv classifier + flatten",
    (1, 3, 64, 64),
)
class InceptionMini(nn.Module):
    def __init__(self, num_classes=100):
        super().__init__()
        self.conv1 = BasicConv2d(3, 32, kernel_size=3, stride=2, padding=1)
        self.maxpool1 = nn.MaxPool2d(3, stride=2, padding=1)
        self.inc3a = InceptionBlock(32, 16, 24, 32, 8, 16, 16, pool="max")
        self.inc3b = InceptionBlock(80, 32, 32, 48, 8, 16, 16, pool="avg")
        self.maxpool2 = nn.MaxPool2d(3, stride=2, padding=1)
        self.inc4a = InceptionBlock(112, 48, 32, 64, 12, 24, 24, pool="avg")
        self.dropout = nn.Dropout(0.2)
        self.logits = nn.Conv2d(160, num_classes, kernel_size=1)

    def forward(self, x):
        x = self.maxpool1(self.conv1(x))
        x = self.inc3b(self.inc3a(x))
        x = self.inc4a(self.maxpool2(x))
        x = x.mean(dim=[-1, -2], keepdim=True)
        x = self.logits(self.dropout(x))
        return torch.flatten(x, 1)


# --- Inception-v3 style factorised convs: 1x7 / 7x1 kernels, AvgPool2d(count_include_pad=False) ------------------------
@register(
    "inception_factorized",
    "Inception-v3 factorised 1x7/7x1 and 1x3/3x1 convs with (0,3)/(3,0) padding, stride-2 valid convs, AvgPool2d(count_include_pad=False), view(x.shape[0], -1)",
    (1, 3, 50, 50),
)
class InceptionFactorized(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(BasicConv2d(3, 24, kernel_size=3, stride=2), BasicConv2d(24, 32, kernel_size=3))  # 50 -> 24 -> 22
        self.b1 = BasicConv2d(32, 24, kernel_size=1)
        self.b7 = nn.Sequential(
            BasicConv2d(32, 16, kernel_size=1),
            BasicConv2d(16, 16, kernel_size=(1, 7), padding=(0, 3)),
            BasicConv2d(16, 24, kernel_size=(7, 1), padding=(3, 0)),
        )
        self.bpool = nn.Sequential(nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False), BasicConv2d(32, 16, kernel_size=1))
        self.reduce = BasicConv2d(64, 64, kernel_size=3, stride=2)  # 22 -> 10
        self.b3_1 = BasicConv2d(64, 32, kernel_size=1)
        self.b3_2a = BasicConv2d(32, 32, kernel_size=(1, 3), padding=(0, 1))
        self.b3_2b = BasicConv2d(32, 32, kernel_size=(3, 1), padding=(1, 0))
        self.fc = nn.Linear(64, num_classes)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.b1(x), self.b7(x), self.bpool(x)], 1)
        x = self.reduce(x)
        y = self.b3_1(x)
        x = torch.cat([self.b3_2a(y), self.b3_2b(y)], 1)
        x = F.adaptive_avg_pool2d(x, (1, 1))
        x = x.view(x.shape[0], -1)
        return self.fc(x)


# --- context module of dilated convs, ELU, sum((2,3)) / (h * w), F.linear with own parameters --------------------------
@register(
    "dilated_context",
    "dilated 3x3 convs (dilation 1, 2, 4, 8, padding=dilation) at constant resolution, ELU, x.sum((2, 3)) / (h * w) pool, F.linear classifier",
    (1, 3, 48, 48),
)
class DilatedContext(nn.Module):
    def __init__(self, width=24, num_classes=10):
        super().__init__()
        self.stem = nn.Conv2d(3, width, 3, stride=2, padding=1)
        self.convs = nn.ModuleList([nn.Conv2d(width, width, 3, padding=d, dilation=d) for d in (1, 2, 4, 8)])
        self.bns = nn.ModuleList([nn.BatchNorm2d(width) for _ in range(4)])
        self.act = nn.ELU(alpha=1.0)
        self.fc_weight = nn.Parameter(torch.empty(num_classes, width))
        self.fc_bias = nn.Parameter(torch.empty(num_classes))
        nn.init.kaiming_uniform_(self.fc_weight, a=math.sqrt(5))
        nn.init.uniform_(self.fc_bias, -0.1, 0.1)

    def forward(self, x):
        x = self.act(self.stem(x))
        for conv, bn in zip(self.convs, self.bns, strict=True):
            x = self.act(bn(conv(x)))
        h, w = x.shape[-2:]
        x = x.sum((2, 3)) / (h * w)
        return F.linear(x, self.fc_weight, self.fc_bias)


# --- LeNet-5 on 28x28 grayscale: tanh, AvgPool2d, view(-1, 16 * 5 * 5) ---------------------------------------------------
@register(
    "lenet5_gray",
    "LeNet-5 on 1x1x28x28: 5x5 convs, tanh, AvgPool2d(2), x.view(-1, 16 * 5 * 5), three Linear layers",
    (1, 1, 28, 28),
    dynamic="batch",
    note="view(-1, 16 * 5 * 5) hard-codes the 5x5 map of a 28x28 input",
)
class LeNet5(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 6, 5, padding=2)
        self.conv2 = nn.Conv2d(6, 16, 5)
        self.pool = nn.AvgPool2d(2)
        self.fc1 = nn.Linear(16 * 5 * 5, 120)
        self.fc2 = nn.Linear(120, 84)
        self.fc3 = nn.Linear(84, 10)

    def forward(self, x):
        x = self.pool(torch.tanh(self.conv1(x)))
        x = self.pool(torch.tanh(self.conv2(x)))
        x = x.view(-1, 16 * 5 * 5)
        x = torch.tanh(self.fc1(x))
        x = torch.tanh(self.fc2(x))
        return self.fc3(x)


# --- pre-activation ResNet, LeakyReLU(0.1), TF "same" padding F.pad(x, (0, 1, 0, 1)) before stride-2 convs -------------
class PreActBlock(nn.Module):
    def __init__(self, in_planes, planes, stride=1):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.stride = stride
        self.conv1 = nn.Conv2d(in_planes, planes, kernel_size=3, stride=stride, padding=0 if stride == 2 else 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, kernel_size=3, stride=1, padding=1, bias=False)
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, kernel_size=1, stride=stride, bias=False)
        else:
            self.shortcut = nn.Identity()

    def forward(self, x):
        out = F.leaky_relu(self.bn1(x), 0.1)
        shortcut = self.shortcut(out) if not isinstance(self.shortcut, nn.Identity) else x
        if self.stride == 2:
            out = F.pad(out, (0, 1, 0, 1))  # TF "SAME" for an even input and stride 2
        out = self.conv1(out)
        out = self.conv2(F.leaky_relu(self.bn2(out), 0.1))
        return out + shortcut


@register(
    "preact_resnet_tfpad",
    "pre-activation ResNet: BN-LeakyReLU(0.1)-conv, nn.Identity shortcut, F.pad(x, (0, 1, 0, 1)) + padding=0 stride-2 conv, AdaptiveAvgPool2d((1,1)) + reshape(b, -1)",
    (1, 3, 64, 64),
    dynamic="batch",
    note="dynamo: with symbolic H/W, torch.export cannot solve the pad + stride-2 conv vs strided-shortcut shape equality (sympy NotImplementedError)",
)
class PreActResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 16, kernel_size=3, stride=2, padding=1, bias=False)
        self.layers = nn.Sequential(PreActBlock(16, 16), PreActBlock(16, 32, 2), PreActBlock(32, 64, 2), PreActBlock(64, 128, 2))
        self.bn = nn.BatchNorm2d(128)
        self.pool = nn.AdaptiveAvgPool2d((1, 1))
        self.linear = nn.Linear(128, num_classes)

    def forward(self, x):
        out = self.layers(self.conv1(x))
        out = F.leaky_relu(self.bn(out), negative_slope=0.1)
        out = self.pool(out)
        b = out.shape[0]
        out = out.reshape(b, -1)
        return self.linear(out)


# --- Mish written out, reflection padding (nn.ReflectionPad2d and F.pad(mode="reflect")), CSP split with chunk -----------
class Mish(nn.Module):
    def forward(self, x):
        return x * torch.tanh(F.softplus(x))


class ConvMish(nn.Module):
    def __init__(self, c_in, c_out, k=3, s=1):
        super().__init__()
        self.pad = nn.ReflectionPad2d(k // 2) if s == 1 else None
        self.conv = nn.Conv2d(c_in, c_out, k, s, 0, bias=False)
        self.bn = nn.BatchNorm2d(c_out)
        self.act = Mish()
        self.k, self.s = k, s

    def forward(self, x):
        if self.pad is not None:
            x = self.pad(x)
        elif self.k > 1:
            x = F.pad(x, (1, 1, 1, 1), mode="reflect")
        return self.act(self.bn(self.conv(x)))


class CSPBlock(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.cv1 = ConvMish(c // 2, c // 2, 1)
        self.cv2 = ConvMish(c // 2, c // 2, 3)
        self.cv3 = ConvMish(c, c, 1)

    def forward(self, x):
        x1, x2 = x.chunk(2, 1)
        x2 = x2 + self.cv2(self.cv1(x2))
        return self.cv3(torch.cat((x1, x2), dim=1))


@register(
    "csp_mish_reflect",
    "Mish as x * tanh(softplus(x)), nn.ReflectionPad2d + F.pad(mode='reflect') before padding=0 convs, CSP x.chunk(2, 1) split, odd 1x3x50x50 input",
    (1, 3, 50, 50),
)
class CSPMish(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.net = nn.Sequential(
            ConvMish(3, 16, 3, 1),
            ConvMish(16, 32, 3, 2),  # 25
            CSPBlock(32),
            ConvMish(32, 64, 3, 2),  # 13
            CSPBlock(64),
            ConvMish(64, 128, 3, 2),  # 7
            CSPBlock(128),
        )
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x):
        x = self.net(x)
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.fc(x)


# --- All-convolutional net: strided convs instead of pooling, conv classifier, Dropout2d, torch.relu -------------------
@register(
    "all_conv_net",
    "Springenberg all-conv net: stride-2 convs instead of pools, torch.relu, nn.Dropout2d, 1x1-conv class map + F.adaptive_avg_pool2d + x.flatten(1)",
    (1, 3, 32, 32),
)
class AllConvNet(nn.Module):
    def __init__(self, n_classes=10):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 32, 3, padding=1)
        self.conv2 = nn.Conv2d(32, 32, 3, padding=1)
        self.conv3 = nn.Conv2d(32, 32, 3, padding=1, stride=2)
        self.conv4 = nn.Conv2d(32, 64, 3, padding=1)
        self.conv5 = nn.Conv2d(64, 64, 3, padding=1, stride=2)
        self.conv6 = nn.Conv2d(64, 64, 3, padding=1)
        self.conv7 = nn.Conv2d(64, 64, 1)
        self.class_conv = nn.Conv2d(64, n_classes, 1)
        self.drop = nn.Dropout2d(0.2)

    def forward(self, x):
        x = self.drop(x)
        conv1_out = torch.relu(self.conv1(x))
        conv2_out = torch.relu(self.conv2(conv1_out))
        conv3_out = torch.relu(self.conv3(conv2_out))
        conv3_out_drop = self.drop(conv3_out)
        conv4_out = torch.relu(self.conv4(conv3_out_drop))
        conv5_out = torch.relu(self.conv5(conv4_out))
        conv6_out = torch.relu(self.conv6(self.drop(conv5_out)))
        conv7_out = torch.relu(self.conv7(conv6_out))
        class_out = torch.relu(self.class_conv(conv7_out))
        pool_out = F.adaptive_avg_pool2d(class_out, 1)
        return pool_out.flatten(1)


# --- CBAM: channel attention from avg- and max-pooled MLP, spatial attention from cat(mean, max) over channels ----------
class ChannelGate(nn.Module):
    def __init__(self, gate_channels, reduction_ratio=8):
        super().__init__()
        self.mlp = nn.Sequential(
            nn.Flatten(), nn.Linear(gate_channels, gate_channels // reduction_ratio), nn.ReLU(), nn.Linear(gate_channels // reduction_ratio, gate_channels)
        )

    def forward(self, x):
        avg_pool = F.avg_pool2d(x, (x.size(2), x.size(3)), stride=(x.size(2), x.size(3)))
        max_pool = F.adaptive_max_pool2d(x, 1)
        channel_att_sum = self.mlp(avg_pool) + self.mlp(max_pool)
        scale = torch.sigmoid(channel_att_sum).unsqueeze(2).unsqueeze(3).expand_as(x)
        return x * scale


class SpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial = nn.Sequential(nn.Conv2d(2, 1, 7, stride=1, padding=3, bias=False), nn.BatchNorm2d(1))

    def forward(self, x):
        x_compress = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
        x_out = self.spatial(x_compress)
        return x * torch.sigmoid(x_out)


class CBAMBlock(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride, 1, bias=False), nn.BatchNorm2d(c_out), nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, 1, 1, bias=False), nn.BatchNorm2d(c_out),
        )
        self.cg = ChannelGate(c_out)
        self.sg = SpatialGate()
        self.down = nn.Sequential(nn.Conv2d(c_in, c_out, 1, stride, bias=False), nn.BatchNorm2d(c_out))

    def forward(self, x):
        return F.relu(self.sg(self.cg(self.conv(x))) + self.down(x))


@register(
    "cbam_resnet",
    "CBAM: F.avg_pool2d(x, (x.size(2), x.size(3))) + F.adaptive_max_pool2d channel MLP, expand_as, torch.max(x, 1)[0]/torch.mean(x, 1) spatial gate",
    (1, 3, 64, 64),
    dynamic="static",
    note="F.avg_pool2d(x, (x.size(2), x.size(3))): with any dynamic_axes the torchscript exporter cannot make the kernel a constant (dynamo can)",
)
class CBAMResNet(nn.Module):
    def __init__(self, num_classes=10):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))
        self.blocks = nn.Sequential(CBAMBlock(24, 32, 2), CBAMBlock(32, 64, 2), CBAMBlock(64, 96, 2))
        self.fc = nn.Linear(96, num_classes)

    def forward(self, x):
        x = self.blocks(self.stem(x))
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))
