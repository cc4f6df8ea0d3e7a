"""Channel-shuffle networks: ShuffleNet V1 and V2 written the ways different repos write the shuffle
(view/transpose/contiguous/view, reshape/permute/reshape returning two halves, chunk vs split, sizes from
x.size() / x.shape / x.data.size(), and one author who hard-coded every size)."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import CorpusNet, registry

NETS: list[CorpusNet] = []
register = registry(NETS, "shuffle")


# --- ShuffleNet V1: grouped 1x1 convs, shuffle via x.data.size() + view/transpose/contiguous/view, avg-pool concat unit --
def channel_shuffle_v1(x, groups):
    batchsize, num_channels, height, width = x.data.size()
    channels_per_group = num_channels // groups
    # reshape
    x = x.view(batchsize, groups, channels_per_group, height, width)
    # transpose
    x = torch.transpose(x, 1, 2).contiguous()
    # flatten
    x = x.view(batchsize, -1, height, width)
    return x


class ShuffleUnit(nn.Module):
    def __init__(self, in_channels, out_channels, groups=3, grouped_conv=True, combine="add"):
        super().__init__()
        self.combine = combine
        self.groups = groups
        self.bottleneck_channels = out_channels // 4
        if self.combine == "concat":
            out_channels -= in_channels
            self.depthwise_stride = 2
        else:
            self.depthwise_stride = 1
        self.first_1x1_groups = self.groups if grouped_conv else 1
        self.g_conv_1x1_compress = nn.Sequential(
            nn.Conv2d(in_channels, self.bottleneck_channels, 1, groups=self.first_1x1_groups, bias=False),
            nn.BatchNorm2d(self.bottleneck_channels),
            nn.ReLU(inplace=True),
        )
        self.depthwise_conv3x3 = nn.Conv2d(
            self.bottleneck_channels, self.bottleneck_channels, 3, stride=self.depthwise_stride, padding=1, groups=self.bottleneck_channels, bias=False
        )
        self.bn_after_depthwise = nn.BatchNorm2d(self.bottleneck_channels)
        self.g_conv_1x1_expand = nn.Sequential(
            nn.Conv2d(self.bottleneck_channels, out_channels, 1, groups=self.groups, bias=False), nn.BatchNorm2d(out_channels)
        )

    @staticmethod
    def _add(x, out):
        return x + out

    @staticmethod
    def _concat(x, out):
        return torch.cat((x, out), 1)

    def forward(self, x):
        residual = x
        if self.combine == "concat":
            residual = F.avg_pool2d(residual, kernel_size=3, stride=2, padding=1)
        out = self.g_conv_1x1_compress(x)
        out = channel_shuffle_v1(out, self.groups)
        out = self.depthwise_conv3x3(out)
        out = self.bn_after_depthwise(out)
        out = self.g_conv_1x1_expand(out)
        out = self._concat(residual, out) if self.combine == "concat" else self._add(residual, out)
        return F.relu(out)


@register(
    "shufflenet_v1_g3",
    "ShuffleNet V1 g=3 x0.5: grouped 1x1 convs, channel_shuffle from x.data.size() with view/torch.transpose/contiguous/view, avg_pool2d residual + torch.cat unit",
    (1, 3, 96, 96),
    dynamic="static",
    note="x.data.size() leaves the trace: torchscript bakes batch and H/W into the reshapes; dynamo specializes H/W (pool kernel) silently",
)
class ShuffleNetV1(nn.Module):
    def __init__(self, groups=3, num_classes=1000):
        super().__init__()
        self.groups = groups
        self.stage_out_channels = [-1, 24, 120, 240, 480]
        self.conv1 = nn.Conv2d(3, self.stage_out_channels[1], 3, stride=2, padding=1, bias=False)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.stage2 = self._make_stage(2, repeats=2)
        self.stage3 = self._make_stage(3, repeats=3)
        self.stage4 = self._make_stage(4, repeats=2)
        self.fc = nn.Linear(self.stage_out_channels[-1], num_classes)

    def _make_stage(self, stage, repeats):
        modules = []
        grouped_conv = stage > 2
        modules.append(ShuffleUnit(self.stage_out_channels[stage - 1], self.stage_out_channels[stage], self.groups, grouped_conv, "concat"))
        for _ in range(repeats - 1):
            modules.append(ShuffleUnit(self.stage_out_channels[stage], self.stage_out_channels[stage], self.groups, True, "add"))
        return nn.Sequential(*modules)

    def forward(self, x):
        x = self.maxpool(self.conv1(x))
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = F.avg_pool2d(x, x.data.size()[-2:])
        x = x.view(x.size(0), -1)
        return self.fc(x)


# --- ShuffleNet V2, torchvision style: x.chunk(2, dim=1), cat, then channel_shuffle(x.size(), view/transpose/view) ------
def channel_shuffle(x, groups: int):
    batchsize, num_channels, height, width = x.size()
    channels_per_group = num_channels // groups
    x = x.view(batchsize, groups, channels_per_group, height, width)
    x = torch.transpose(x, 1, 2).contiguous()
    x = x.view(batchsize, -1, height, width)
    return x


class InvertedResidualV2(nn.Module):
    def __init__(self, inp, oup, stride):
        super().__init__()
        self.stride = stride
        branch_features = oup // 2
        if self.stride > 1:
            self.branch1 = nn.Sequential(
                self.depthwise_conv(inp, inp, kernel_size=3, stride=self.stride, padding=1),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
                nn.BatchNorm2d(branch_features),
                nn.ReLU(inplace=True),
            )
        else:
            self.branch1 = nn.Sequential()
        self.branch2 = nn.Sequential(
            nn.Conv2d(inp if (self.stride > 1) else branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
            self.depthwise_conv(branch_features, branch_features, kernel_size=3, stride=self.stride, padding=1),
            nn.BatchNorm2d(branch_features),
            nn.Conv2d(branch_features, branch_features, kernel_size=1, stride=1, padding=0, bias=False),
            nn.BatchNorm2d(branch_features),
            nn.ReLU(inplace=True),
        )

    @staticmethod
    def depthwise_conv(i, o, kernel_size, stride=1, padding=0, bias=False):
        return nn.Conv2d(i, o, kernel_size, stride, padding, bias=bias, groups=i)

    def forward(self, x):
        if self.stride == 1:
            x1, x2 = x.chunk(2, dim=1)
            out = torch.cat((x1, self.branch2(x2)), dim=1)
        else:
            out = torch.cat((self.branch1(x), self.branch2(x)), dim=1)
        out = channel_shuffle(out, 2)
        return out


@register(
    "shufflenet_v2_torchvision",
    "torchvision ShuffleNetV2 x0.5: x.chunk(2, dim=1) + torch.cat then channel_shuffle(x.size(), view/transpose/contiguous/view), x.mean([2, 3])",
    (1, 3, 96, 96),
)
class ShuffleNetV2A(nn.Module):
    def __init__(self, stages_repeats=(2, 3, 2), stages_out_channels=(24, 48, 96, 192, 1024), num_classes=1000):
        super().__init__()
        input_channels = 3
        output_channels = stages_out_channels[0]
        self.conv1 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 3, 2, 1, bias=False), nn.BatchNorm2d(output_channels), nn.ReLU(inplace=True)
        )
        input_channels = output_channels
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        stage_names = [f"stage{i}" for i in [2, 3, 4]]
        for name, repeats, output_channels in zip(stage_names, stages_repeats, stages_out_channels[1:], strict=False):
            seq = [InvertedResidualV2(input_channels, output_channels, 2)]
            for _ in range(repeats - 1):
                seq.append(InvertedResidualV2(output_channels, output_channels, 1))
            setattr(self, name, nn.Sequential(*seq))
            input_channels = output_channels
        output_channels = stages_out_channels[-1]
        self.conv5 = nn.Sequential(
            nn.Conv2d(input_channels, output_channels, 1, 1, 0, bias=False), nn.BatchNorm2d(output_channels), nn.ReLU(inplace=True)
        )
        self.fc = nn.Linear(output_channels, num_classes)

    def forward(self, x):
        x = self.conv1(x)
        x = self.maxpool(x)
        x = self.stage2(x)
        x = self.stage3(x)
        x = self.stage4(x)
        x = self.conv5(x)
        x = x.mean([2, 3])  # globalpool
        x = self.fc(x)
        return x


# --- ShuffleNet V2, the official Megvii repo: shuffle = reshape(b*c//2, 2, h*w).permute(1, 0, 2) -> two halves -------------
class ShuffleV2Block(nn.Module):
    def __init__(self, inp, oup, mid_channels, *, ksize, stride):
        super().__init__()
        self.stride = stride
        assert stride in [1, 2]
        self.mid_channels = mid_channels
        self.ksize = ksize
        pad = ksize // 2
        self.pad = pad
        self.inp = inp
        outputs = oup - inp
        branch_main = [
            nn.Conv2d(inp, mid_channels, 1, 1, 0, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, mid_channels, ksize, stride, pad, groups=mid_channels, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.Conv2d(mid_channels, outputs, 1, 1, 0, bias=False),
            nn.BatchNorm2d(outputs),
            nn.ReLU(inplace=True),
        ]
        self.branch_main = nn.Sequential(*branch_main)
        if stride == 2:
            branch_proj = [
                nn.Conv2d(inp, inp, ksize, stride, pad, groups=inp, bias=False),
                nn.BatchNorm2d(inp),
                nn.Conv2d(inp, inp, 1, 1, 0, bias=False),
                nn.BatchNorm2d(inp),
                nn.ReLU(inplace=True),
            ]
            self.branch_proj = nn.Sequential(*branch_proj)
        else:
            self.branch_proj = None

    def forward(self, old_x):
        if self.stride == 1:
            x_proj, x = self.channel_shuffle(old_x)
            return torch.cat((x_proj, self.branch_main(x)), 1)
        elif self.stride == 2:
            x_proj = old_x
            x = old_x
            return torch.cat((self.branch_proj(x_proj), self.branch_main(x)), 1)

    def channel_shuffle(self, x):
        batchsize, num_channels, height, width = x.data.size()
        assert num_channels % 4 == 0
        x = x.reshape(batchsize * num_channels // 2, 2, height * width)
        x = x.permute(1, 0, 2)
        x = x.reshape(2, -1, num_channels // 2, height, width)
        return x[0], x[1]


@register(
    "shufflenet_v2_megvii",
    "Megvii ShuffleNetV2 x0.5: shuffle at block input via reshape(b*c//2, 2, h*w).permute(1, 0, 2).reshape(2, -1, c//2, h, w) -> x[0], x[1]; nn.AvgPool2d(2) + contiguous().view(-1, C)",
    (1, 3, 64, 64),
    dynamic="static",
    note="x.data.size() leaves the trace: torchscript bakes batch and H/W into the reshapes (dynamo exports it fully dynamic)",
)
class ShuffleNetV2Megvii(nn.Module):
    def __init__(self, n_class=1000):
        super().__init__()
        self.stage_repeats = [2, 4, 2]
        self.stage_out_channels = [-1, 24, 48, 96, 192, 512]
        input_channel = self.stage_out_channels[1]
        self.first_conv = nn.Sequential(nn.Conv2d(3, input_channel, 3, 2, 1, bias=False), nn.BatchNorm2d(input_channel), nn.ReLU(inplace=True))
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)
        self.features = []
        for idxstage in range(len(self.stage_repeats)):
            numrepeat = self.stage_repeats[idxstage]
            output_channel = self.stage_out_channels[idxstage + 2]
            for i in range(numrepeat):
                if i == 0:
                    self.features.append(ShuffleV2Block(input_channel, output_channel, mid_channels=output_channel // 2, ksize=3, stride=2))
                else:
                    self.features.append(ShuffleV2Block(input_channel // 2, output_channel, mid_channels=output_channel // 2, ksize=3, stride=1))
                input_channel = output_channel
        self.features = nn.Sequential(*self.features)
        self.conv_last = nn.Sequential(
            nn.Conv2d(input_channel, self.stage_out_channels[-1], 1, 1, 0, bias=False), nn.BatchNorm2d(self.stage_out_channels[-1]), nn.ReLU(inplace=True)
        )
        self.globalpool = nn.AvgPool2d(2)
        self.dropout = nn.Dropout(0.2)
        self.classifier = nn.Sequential(nn.Linear(self.stage_out_channels[-1], n_class, bias=False))

    def forward(self, x):
        x = self.first_conv(x)
        x = self.maxpool(x)
        x = self.features(x)
        x = self.conv_last(x)
        x = self.globalpool(x)
        x = self.dropout(x)
        x = x.contiguous().view(-1, self.stage_out_channels[-1])
        x = self.classifier(x)
        return x


# --- ShuffleNet V2 by a third hand: torch.split(x, c // 2, dim=1), shuffle via x.shape + reshape/permute/reshape, SE, hswish
class ShuffleBlockC(nn.Module):
    def __init__(self, cin, cout, stride, use_se):
        super().__init__()
        self.stride = stride
        mid = cout // 2
        if stride == 2:
            self.left = nn.Sequential(
                nn.Conv2d(cin, cin, 3, 2, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.Conv2d(cin, mid, 1, bias=False), nn.BatchNorm2d(mid), nn.Hardswish()
            )
            rin = cin
        else:
            rin = cin // 2
        self.right = nn.Sequential(
            nn.Conv2d(rin, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.Hardswish(),
            nn.Conv2d(mid, mid, 5, stride, 2, groups=mid, bias=False),
            nn.BatchNorm2d(mid),
            nn.Conv2d(mid, mid, 1, bias=False),
            nn.BatchNorm2d(mid),
            nn.Hardswish(),
        )
        self.se = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(mid, mid // 4, 1), nn.ReLU(), nn.Conv2d(mid // 4, mid, 1), nn.Hardsigmoid()) if use_se else None

    @staticmethod
    def shuffle(x):
        b, c, h, w = x.shape
        return x.reshape(b, 2, c // 2, h, w).permute(0, 2, 1, 3, 4).reshape(b, c, h, w)

    def forward(self, x):
        if self.stride == 1:
            left, right = torch.split(x, x.shape[1] // 2, dim=1)
        else:
            left, right = self.left(x), x
        right = self.right(right)
        if self.se is not None:
            right = right * self.se(right)
        return self.shuffle(torch.cat([left, right], dim=1))


@register(
    "shufflenet_v2_plus",
    "ShuffleNetV2+-ish: torch.split(x, x.shape[1] // 2, dim=1), shuffle with b, c, h, w = x.shape + reshape/permute(0, 2, 1, 3, 4)/reshape, 5x5 dw, nn.Hardswish, SE, 1x3x80x80",
    (1, 3, 80, 80),
)
class ShuffleNetV2Plus(nn.Module):
    def __init__(self, num_classes=100):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        cfg = [(16, 48, 2, False), (48, 48, 1, False), (48, 96, 2, True), (96, 96, 1, True), (96, 96, 1, True), (96, 192, 2, True), (192, 192, 1, True)]
        self.blocks = nn.Sequential(*[ShuffleBlockC(*c) for c in cfg])
        self.head = nn.Sequential(nn.Conv2d(192, 512, 1, bias=False), nn.BatchNorm2d(512), nn.Hardswish())
        self.fc = nn.Linear(512, num_classes)

    def forward(self, x):
        x = self.head(self.blocks(self.stem(x)))
        x = F.adaptive_avg_pool2d(x, 1)
        x = torch.flatten(x, start_dim=1)
        return self.fc(x)


# --- someone who hard-coded every size: view(1, 2, 58, 12, 12), AvgPool2d(6), view(1, -1) ---------------------------------
class FixedShuffleUnit(nn.Module):
    def __init__(self):
        super().__init__()
        self.branch = nn.Sequential(
            nn.Conv2d(58, 58, 1, bias=False),
            nn.BatchNorm2d(58),
            nn.ReLU(inplace=True),
            nn.Conv2d(58, 58, 3, 1, 1, groups=58, bias=False),
            nn.BatchNorm2d(58),
            nn.Conv2d(58, 58, 1, bias=False),
            nn.BatchNorm2d(58),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        a = x[:, :58]
        b = x[:, 58:]
        x = torch.cat([a, self.branch(b)], 1)
        x = x.view(1, 2, 58, 12, 12).transpose(1, 2).reshape(1, 116, 12, 12)
        return x


@register(
    "shuffle_fixed_sizes",
    "hard-coded sizes everywhere: x[:, :58] / x[:, 58:] halves, x.view(1, 2, 58, 12, 12).transpose(1, 2).reshape(1, 116, 12, 12), nn.AvgPool2d(6), x.view(1, -1)",
    (1, 3, 48, 48),
    dynamic="static",
    note="the batch size 1 and the 12x12 map are written into the view/reshape calls",
)
class ShuffleFixedSizes(nn.Module):
    def __init__(self):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 24, 3, 2, 1, bias=False), nn.BatchNorm2d(24), nn.ReLU(inplace=True))  # 24x24
        self.down = nn.Sequential(nn.Conv2d(24, 116, 3, 2, 1, bias=False), nn.BatchNorm2d(116), nn.ReLU(inplace=True))  # 12x12
        self.units = nn.Sequential(FixedShuffleUnit(), FixedShuffleUnit(), FixedShuffleUnit())
        self.pool = nn.AvgPool2d(6)
        self.fc = nn.Linear(116 * 2 * 2, 10)

    def forward(self, x):
        x = self.units(self.down(self.stem(x)))
        x = self.pool(x)
        x = x.view(1, -1)
        return self.fc(x)
