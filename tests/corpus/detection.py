"""Detection networks: YOLO v2/v3/v5/X-style (Focus slicing, reorg, SPP/SPPF, cfg-driven Darknet, grids,
in-place decode), SSD (L2Norm, several heads), SSDLite, RetinaNet, FCOS (GroupNorm towers, Scale, sigmoid)
and CenterNet (deconvs, max-pool NMS, top-k)."""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import CorpusNet, registry

NETS: list[CorpusNet] = []
register = registry(NETS, "detection")


# --- YOLOv5-style: Focus slicing, Conv-BN-SiLU, C3, SPPF, PAN neck, Detect with grid decode --------------------------------
def autopad(k, p=None):
    if p is None:
        p = k // 2 if isinstance(k, int) else [x // 2 for x in k]
    return p


class Conv(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = nn.Conv2d(c1, c2, k, s, autopad(k, p), groups=g, bias=False)
        self.bn = nn.BatchNorm2d(c2)
        self.act = nn.SiLU() if act is True else (act if isinstance(act, nn.Module) else nn.Identity())

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class Focus(nn.Module):
    def __init__(self, c1, c2, k=1, s=1, p=None, g=1, act=True):
        super().__init__()
        self.conv = Conv(c1 * 4, c2, k, s, p, g, act)

    def forward(self, x):  # x(b,c,w,h) -> y(b,4c,w/2,h/2)
        return self.conv(torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], x[..., ::2, 1::2], x[..., 1::2, 1::2]], 1))


class YBottleneck(nn.Module):
    def __init__(self, c1, c2, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_, c2, 3, 1, g=g)
        self.add = shortcut and c1 == c2

    def forward(self, x):
        return x + self.cv2(self.cv1(x)) if self.add else self.cv2(self.cv1(x))


class C3(nn.Module):
    def __init__(self, c1, c2, n=1, shortcut=True, g=1, e=0.5):
        super().__init__()
        c_ = int(c2 * e)
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c1, c_, 1, 1)
        self.cv3 = Conv(2 * c_, c2, 1)
        self.m = nn.Sequential(*(YBottleneck(c_, c_, shortcut, g, e=1.0) for _ in range(n)))

    def forward(self, x):
        return self.cv3(torch.cat((self.m(self.cv1(x)), self.cv2(x)), 1))


class SPPF(nn.Module):
    def __init__(self, c1, c2, k=5):
        super().__init__()
        c_ = c1 // 2
        self.cv1 = Conv(c1, c_, 1, 1)
        self.cv2 = Conv(c_ * 4, c2, 1, 1)
        self.m = nn.MaxPool2d(kernel_size=k, stride=1, padding=k // 2)

    def forward(self, x):
        x = self.cv1(x)
        y1 = self.m(x)
        y2 = self.m(y1)
        return self.cv2(torch.cat((x, y1, y2, self.m(y2)), 1))


class Detect(nn.Module):
    def __init__(self, nc=80, anchors=(), ch=(), strides=(8, 16, 32)):
        super().__init__()
        self.nc = nc
        self.no = nc + 5
        self.nl = len(anchors)
        self.na = len(anchors[0]) // 2
        self.register_buffer("anchors", torch.tensor(anchors).float().view(self.nl, -1, 2))
        self.m = nn.ModuleList(nn.Conv2d(x, self.no * self.na, 1) for x in ch)
        self.stride = strides

    def forward(self, x):
        z = []
        for i in range(self.nl):
            x[i] = self.m[i](x[i])
            bs, _, ny, nx = x[i].shape
            x[i] = x[i].view(bs, self.na, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
            grid, anchor_grid = self._make_grid(nx, ny, i)
            y = x[i].sigmoid()
            xy = (y[..., 0:2] * 2 - 0.5 + grid) * self.stride[i]
            wh = (y[..., 2:4] * 2) ** 2 * anchor_grid
            y = torch.cat((xy, wh, y[..., 4:]), -1)
            z.append(y.view(bs, -1, self.no))
        return torch.cat(z, 1)

    def _make_grid(self, nx=20, ny=20, i=0):
        d = self.anchors[i].device
        yv, xv = torch.meshgrid(torch.arange(ny, device=d), torch.arange(nx, device=d), indexing="ij")
        grid = torch.stack((xv, yv), 2).expand((1, self.na, ny, nx, 2)).float()
        anchor_grid = self.anchors[i].clone().view((1, self.na, 1, 1, 2)).expand((1, self.na, ny, nx, 2)).float()
        return grid, anchor_grid


@register(
    "yolov5_nano",
    "YOLOv5-style: Focus torch.cat([x[..., ::2, ::2], x[..., 1::2, ::2], ...]), Conv-BN-SiLU, C3, SPPF (3 chained MaxPool2d(5, 1, 2) + cat), PAN with nn.Upsample, Detect view/permute + meshgrid grid decode, cat over levels",
    (1, 3, 96, 96),
)
class YOLOv5Nano(nn.Module):
    def __init__(self, nc=20):
        super().__init__()
        self.b0 = Focus(3, 16, 3)
        self.b1 = Conv(16, 32, 3, 2)
        self.b2 = C3(32, 32, 1)
        self.b3 = Conv(32, 64, 3, 2)  # P3/8
        self.b4 = C3(64, 64, 1)
        self.b5 = Conv(64, 128, 3, 2)  # P4/16
        self.b6 = C3(128, 128, 1)
        self.b7 = Conv(128, 256, 3, 2)  # P5/32
        self.b8 = C3(256, 256, 1)
        self.b9 = SPPF(256, 256, 5)
        self.h10 = Conv(256, 128, 1, 1)
        self.up = nn.Upsample(None, 2, "nearest")
        self.h13 = C3(256, 128, 1, False)
        self.h14 = Conv(128, 64, 1, 1)
        self.h17 = C3(128, 64, 1, False)
        self.h18 = Conv(64, 64, 3, 2)
        self.h20 = C3(128, 128, 1, False)
        self.h21 = Conv(128, 128, 3, 2)
        self.h23 = C3(256, 256, 1, False)
        anchors = [[10, 13, 16, 30, 33, 23], [30, 61, 62, 45, 59, 119], [116, 90, 156, 198, 373, 326]]
        self.detect = Detect(nc, anchors, (64, 128, 256))

    def forward(self, x):
        x = self.b2(self.b1(self.b0(x)))
        p3 = self.b4(self.b3(x))
        p4 = self.b6(self.b5(p3))
        p5 = self.b9(self.b8(self.b7(p4)))
        h10 = self.h10(p5)
        x = self.h13(torch.cat([self.up(h10), p4], 1))
        h14 = self.h14(x)
        out3 = self.h17(torch.cat([self.up(h14), p3], 1))
        out4 = self.h20(torch.cat([self.h18(out3), h14], 1))
        out5 = self.h23(torch.cat([self.h21(out4), h10], 1))
        return self.detect([out3, out4, out5])


# --- YOLOv3-tiny, built from a parsed Darknet cfg (list of dicts), route/upsample by layer index, in-place decode -------
YOLOV3_TINY_CFG = [
    {"type": "convolutional", "filters": 8, "size": 3, "stride": 1},
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "convolutional", "filters": 16, "size": 3, "stride": 1},
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "convolutional", "filters": 32, "size": 3, "stride": 1},
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "convolutional", "filters": 64, "size": 3, "stride": 1},
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "convolutional", "filters": 128, "size": 3, "stride": 1},  # 8: route target
    {"type": "maxpool", "size": 2, "stride": 2},
    {"type": "convolutional", "filters": 192, "size": 3, "stride": 1},
    {"type": "maxpool", "size": 2, "stride": 1},  # ZeroPad2d((0, 1, 0, 1)) + MaxPool2d(2, 1)
    {"type": "convolutional", "filters": 256, "size": 3, "stride": 1},
    {"type": "convolutional", "filters": 64, "size": 1, "stride": 1},
    {"type": "convolutional", "filters": 128, "size": 3, "stride": 1},
    {"type": "convolutional", "filters": 75, "size": 1, "stride": 1, "batch_normalize": 0, "activation": "linear"},
    {"type": "yolo", "mask": "3,4,5", "stride": 32},
    {"type": "route", "layers": "-4"},
    {"type": "convolutional", "filters": 32, "size": 1, "stride": 1},
    {"type": "upsample", "stride": 2},
    {"type": "route", "layers": "-1, 8"},
    {"type": "convolutional", "filters": 64, "size": 3, "stride": 1},
    {"type": "convolutional", "filters": 75, "size": 1, "stride": 1, "batch_normalize": 0, "activation": "linear"},
    {"type": "yolo", "mask": "0,1,2", "stride": 16},
]
ANCHORS = [(10, 14), (23, 27), (37, 58), (81, 82), (135, 169), (344, 319)]


class Upsample(nn.Module):
    def __init__(self, scale_factor, mode="nearest"):
        super().__init__()
        self.scale_factor = scale_factor
        self.mode = mode

    def forward(self, x):
        x = F.interpolate(x, scale_factor=self.scale_factor, mode=self.mode)
        return x


class YOLOLayer(nn.Module):
    def __init__(self, anchors, num_classes, stride):
        super().__init__()
        self.num_anchors = len(anchors)
        self.no = num_classes + 5
        self.stride = stride
        self.register_buffer("anchor_grid", torch.tensor(anchors).float().view(1, -1, 1, 1, 2))

    def forward(self, x):
        bs, _, ny, nx = x.shape
        x = x.view(bs, self.num_anchors, self.no, ny, nx).permute(0, 1, 3, 4, 2).contiguous()
        if not self.training:
            yv, xv = torch.meshgrid([torch.arange(ny), torch.arange(nx)], indexing="ij")
            grid = torch.stack((xv, yv), 2).view((1, 1, ny, nx, 2)).float()
            x[..., 0:2] = (x[..., 0:2].sigmoid() + grid) * self.stride  # xy
            x[..., 2:4] = torch.exp(x[..., 2:4]) * self.anchor_grid  # wh
            x[..., 4:] = x[..., 4:].sigmoid()
            x = x.view(bs, -1, self.no)
        return x


@register(
    "yolov3_tiny_cfg",
    "YOLOv3-tiny from a parsed Darknet cfg: nn.ModuleList of add_module'd Sequentials, LeakyReLU(0.1), ZeroPad2d((0,1,0,1)) + MaxPool2d(2, 1), route cat by layer index, in-place x[..., 0:2] = ... decode",
    (1, 3, 96, 96),
)
class YOLOv3TinyCfg(nn.Module):
    def __init__(self, num_classes=20):
        super().__init__()
        self.module_defs = YOLOV3_TINY_CFG
        self.module_list = nn.ModuleList()
        output_filters = [3]
        for module_i, module_def in enumerate(self.module_defs):
            modules = nn.Sequential()
            filters = output_filters[-1]
            if module_def["type"] == "convolutional":
                bn = module_def.get("batch_normalize", 1)
                filters = module_def["filters"]
                kernel_size = module_def["size"]
                pad = (kernel_size - 1) // 2
                modules.add_module(
                    f"conv_{module_i}",
                    nn.Conv2d(output_filters[-1], filters, kernel_size, stride=module_def["stride"], padding=pad, bias=not bn),
                )
                if bn:
                    modules.add_module(f"batch_norm_{module_i}", nn.BatchNorm2d(filters, momentum=0.1, eps=1e-5))
                if module_def.get("activation", "leaky") == "leaky":
                    modules.add_module(f"leaky_{module_i}", nn.LeakyReLU(0.1))
            elif module_def["type"] == "maxpool":
                kernel_size, stride = module_def["size"], module_def["stride"]
                if kernel_size == 2 and stride == 1:
                    modules.add_module(f"_debug_padding_{module_i}", nn.ZeroPad2d((0, 1, 0, 1)))
                modules.add_module(f"maxpool_{module_i}", nn.MaxPool2d(kernel_size=kernel_size, stride=stride, padding=int((kernel_size - 1) // 2)))
            elif module_def["type"] == "upsample":
                modules.add_module(f"upsample_{module_i}", Upsample(scale_factor=module_def["stride"], mode="nearest"))
            elif module_def["type"] == "route":
                layers = [int(x) for x in module_def["layers"].split(",")]
                filters = sum(output_filters[1:][i] for i in layers)
                modules.add_module(f"route_{module_i}", nn.Sequential())
            elif module_def["type"] == "yolo":
                anchor_idxs = [int(x) for x in module_def["mask"].split(",")]
                modules.add_module(f"yolo_{module_i}", YOLOLayer([ANCHORS[i] for i in anchor_idxs], num_classes, module_def["stride"]))
            self.module_list.append(modules)
            output_filters.append(filters)

    def forward(self, x):
        layer_outputs, yolo_outputs = [], []
        for module_def, module in zip(self.module_defs, self.module_list, strict=True):
            if module_def["type"] in ["convolutional", "upsample", "maxpool"]:
                x = module(x)
            elif module_def["type"] == "route":
                x = torch.cat([layer_outputs[int(layer_i)] for layer_i in module_def["layers"].split(",")], 1)
            elif module_def["type"] == "yolo":
                x = module[0](x)
                yolo_outputs.append(x)
            layer_outputs.append(x)
        return yolo_outputs if self.training else torch.cat(yolo_outputs, 1)


# --- YOLOX-style: SPP (parallel MaxPool 5/9/13 + cat), SiLU written as x * sigmoid(x), decoupled head, flatten(2) + cat + permute
class SiLU(nn.Module):
    """export-friendly version of nn.SiLU()"""

    @staticmethod
    def forward(x):
        return x * torch.sigmoid(x)


class BaseConv(nn.Module):
    def __init__(self, in_channels, out_channels, ksize, stride, groups=1, bias=False):
        super().__init__()
        pad = (ksize - 1) // 2
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size=ksize, stride=stride, padding=pad, groups=groups, bias=bias)
        self.bn = nn.BatchNorm2d(out_channels, eps=1e-3, momentum=0.03)
        self.act = SiLU()

    def forward(self, x):
        return self.act(self.bn(self.conv(x)))


class SPPBottleneck(nn.Module):
    def __init__(self, in_channels, out_channels, kernel_sizes=(5, 9, 13)):
        super().__init__()
        hidden_channels = in_channels // 2
        self.conv1 = BaseConv(in_channels, hidden_channels, 1, stride=1)
        self.m = nn.ModuleList([nn.MaxPool2d(kernel_size=ks, stride=1, padding=ks // 2) for ks in kernel_sizes])
        conv2_channels = hidden_channels * (len(kernel_sizes) + 1)
        self.conv2 = BaseConv(conv2_channels, out_channels, 1, stride=1)

    def forward(self, x):
        x = self.conv1(x)
        x = torch.cat([x] + [m(x) for m in self.m], dim=1)
        x = self.conv2(x)
        return x


@register(
    "yolox_decoupled",
    "YOLOX-style on 1x3x64x96: SPP torch.cat([x] + [m(x) for m in MaxPool(5/9/13)]), SiLU as x * torch.sigmoid(x), decoupled cls/reg/obj heads, cat([reg, obj.sigmoid(), cls.sigmoid()], 1), flatten(start_dim=2) + cat + permute",
    (1, 3, 64, 96),
)
class YOLOXDecoupled(nn.Module):
    def __init__(self, num_classes=10, width=32):
        super().__init__()
        self.stem = nn.Sequential(BaseConv(3, 16, 3, 2), BaseConv(16, 32, 3, 2))  # 1/4
        self.dark3 = nn.Sequential(BaseConv(32, 48, 3, 2), BaseConv(48, 48, 3, 1))  # 1/8
        self.dark4 = nn.Sequential(BaseConv(48, 96, 3, 2), BaseConv(96, 96, 3, 1))  # 1/16
        self.dark5 = nn.Sequential(BaseConv(96, 128, 3, 2), SPPBottleneck(128, 128))  # 1/32
        self.lateral5 = BaseConv(128, 96, 1, 1)
        self.upsample = nn.Upsample(scale_factor=2, mode="nearest")
        self.fuse4 = BaseConv(192, 96, 3, 1)
        self.lateral4 = BaseConv(96, 48, 1, 1)
        self.fuse3 = BaseConv(96, 48, 3, 1)
        self.stems = nn.ModuleList([BaseConv(c, width, 1, 1) for c in (48, 96, 96)])
        self.cls_convs = nn.ModuleList([nn.Sequential(BaseConv(width, width, 3, 1), BaseConv(width, width, 3, 1)) for _ in range(3)])
        self.reg_convs = nn.ModuleList([nn.Sequential(BaseConv(width, width, 3, 1), BaseConv(width, width, 3, 1)) for _ in range(3)])
        self.cls_preds = nn.ModuleList([nn.Conv2d(width, num_classes, 1) for _ in range(3)])
        self.reg_preds = nn.ModuleList([nn.Conv2d(width, 4, 1) for _ in range(3)])
        self.obj_preds = nn.ModuleList([nn.Conv2d(width, 1, 1) for _ in range(3)])
        prior_prob = 1e-2
        for conv in list(self.cls_preds) + list(self.obj_preds):
            b = conv.bias.view(1, -1)
            b.data.fill_(-math.log((1 - prior_prob) / prior_prob))
            conv.bias = torch.nn.Parameter(b.view(-1), requires_grad=True)

    def forward(self, x):
        x = self.stem(x)
        c3 = self.dark3(x)
        c4 = self.dark4(c3)
        c5 = self.dark5(c4)
        f5 = self.lateral5(c5)
        p4 = self.fuse4(torch.cat([self.upsample(f5), c4], 1))
        f4 = self.lateral4(p4)
        p3 = self.fuse3(torch.cat([self.upsample(f4), c3], 1))
        outputs = []
        for k, (cls_conv, reg_conv, x) in enumerate(zip(self.cls_convs, self.reg_convs, [p3, p4, f5], strict=True)):
            x = self.stems[k](x)
            cls_x = x
            reg_x = x
            cls_feat = cls_conv(cls_x)
            cls_output = self.cls_preds[k](cls_feat)
            reg_feat = reg_conv(reg_x)
            reg_output = self.reg_preds[k](reg_feat)
            obj_output = self.obj_preds[k](reg_feat)
            output = torch.cat([reg_output, obj_output.sigmoid(), cls_output.sigmoid()], 1)
            outputs.append(output)
        outputs = torch.cat([x.flatten(start_dim=2) for x in outputs], dim=2).permute(0, 2, 1)
        return outputs


# --- YOLOv2 with the passthrough "reorg" layer written as a chain of 6-D view/transpose/contiguous ------------------------
class Reorg(nn.Module):
    def __init__(self, stride=2):
        super().__init__()
        self.stride = stride

    def forward(self, x):
        stride = self.stride
        assert x.dim() == 4
        B = x.size(0)
        C = x.size(1)
        H = x.size(2)
        W = x.size(3)
        ws = stride
        hs = stride
        x = x.view(B, C, H // hs, hs, W // ws, ws).transpose(3, 4).contiguous()
        x = x.view(B, C, H // hs * W // ws, hs * ws).transpose(2, 3).contiguous()
        x = x.view(B, C, hs * ws, H // hs, W // ws).transpose(1, 2).contiguous()
        x = x.view(B, hs * ws * C, H // hs, W // ws)
        return x


@register(
    "yolov2_reorg",
    "YOLOv2 passthrough: Reorg via x.size(i) + 6-D view/transpose/contiguous chain, cat with deep features, output view(B, A, 5 + C, H * W) + sigmoid/exp/softmax(dim=2) decode",
    (1, 3, 96, 96),
)
class YOLOv2Reorg(nn.Module):
    def __init__(self, num_classes=20, num_anchors=5):
        super().__init__()

        def cbl(cin, cout, k=3):
            return nn.Sequential(nn.Conv2d(cin, cout, k, 1, k // 2, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.1, inplace=True))

        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.part1 = nn.Sequential(
            cbl(3, 16), nn.MaxPool2d(2, 2), cbl(16, 32), nn.MaxPool2d(2, 2), cbl(32, 64), cbl(64, 32, 1), cbl(32, 64), nn.MaxPool2d(2, 2), cbl(64, 96), nn.MaxPool2d(2, 2), cbl(96, 128)
        )  # 1/16
        self.part2 = nn.Sequential(nn.MaxPool2d(2, 2), cbl(128, 192), cbl(192, 96, 1), cbl(96, 192))  # 1/32
        self.passthrough = nn.Sequential(cbl(128, 16, 1), Reorg(2))
        self.final = nn.Sequential(cbl(192 + 64, 128), nn.Conv2d(128, num_anchors * (5 + num_classes), 1))

    def forward(self, x):
        x = self.part1(x)
        route = self.passthrough(x)
        x = self.part2(x)
        x = self.final(torch.cat([route, x], 1))
        B, _, H, W = x.size()
        out = x.view(B, self.num_anchors, 5 + self.num_classes, H * W)
        xy = torch.sigmoid(out[:, :, :2])
        wh = torch.exp(out[:, :, 2:4])
        conf = torch.sigmoid(out[:, :, 4:5])
        cls = F.softmax(out[:, :, 5:], dim=2)
        return torch.cat([xy, wh, conf, cls], 2)


# --- SSD: VGG-lite with L2Norm on conv4_3, dilated fc6, extras, multibox loc/conf heads, view(b, -1) + cat + softmax -----
class L2Norm(nn.Module):
    def __init__(self, n_channels, scale):
        super().__init__()
        self.n_channels = n_channels
        self.gamma = scale or None
        self.eps = 1e-10
        self.weight = nn.Parameter(torch.Tensor(self.n_channels))
        nn.init.constant_(self.weight, self.gamma)

    def forward(self, x):
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps
        x = torch.div(x, norm)
        out = self.weight.unsqueeze(0).unsqueeze(2).unsqueeze(3).expand_as(x) * x
        return out


@register(
    "ssd_vgg_l2norm",
    "SSD: VGG-lite base, L2Norm = x.pow(2).sum(1, keepdim=True).sqrt() + eps, torch.div, weight.unsqueeze(0).unsqueeze(2).unsqueeze(3).expand_as(x); dilated fc6, 4 loc/conf heads, permute + view(b, -1) + cat, softmax(-1)",
    (1, 3, 96, 96),
    dynamic="batch",
    note="dynamo: torch.export's guards (ceil-mode pool, valid 3x3 extra conv) pin H/W to 96 and the ONNX exporter applies that 'suggested fix' silently",
)
class SSDVGG(nn.Module):
    def __init__(self, num_classes=11):
        super().__init__()
        self.num_classes = num_classes
        cfg = [8, "M", 16, 16, "M", 32, 32, "C", 64, 64]
        layers, c = [], 3
        for v in cfg:
            if v == "M":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2)]
            elif v == "C":
                layers += [nn.MaxPool2d(kernel_size=2, stride=2, ceil_mode=True)]
            else:
                layers += [nn.Conv2d(c, v, kernel_size=3, padding=1), nn.ReLU(inplace=True)]
                c = v
        self.vgg_a = nn.ModuleList(layers)  # up to conv4_3 (12x12)
        self.L2Norm = L2Norm(64, 20)
        self.vgg_b = nn.ModuleList(
            [
                nn.MaxPool2d(kernel_size=2, stride=2),
                nn.Conv2d(64, 64, 3, padding=1),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(kernel_size=3, stride=1, padding=1),
                nn.Conv2d(64, 128, kernel_size=3, padding=6, dilation=6),
                nn.ReLU(inplace=True),
                nn.Conv2d(128, 128, kernel_size=1),
                nn.ReLU(inplace=True),
            ]
        )
        self.extras = nn.ModuleList([nn.Conv2d(128, 32, 1), nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.Conv2d(64, 32, 1), nn.Conv2d(32, 64, 3)])
        mbox = [4, 6, 6, 4]
        src_channels = [64, 128, 64, 64]
        self.loc = nn.ModuleList([nn.Conv2d(c, m * 4, 3, padding=1) for c, m in zip(src_channels, mbox, strict=True)])
        self.conf = nn.ModuleList([nn.Conv2d(c, m * num_classes, 3, padding=1) for c, m in zip(src_channels, mbox, strict=True)])
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x):
        sources, loc, conf = [], [], []
        for layer in self.vgg_a:
            x = layer(x)
        s = self.L2Norm(x)
        sources.append(s)
        for layer in self.vgg_b:
            x = layer(x)
        sources.append(x)
        for k, v in enumerate(self.extras):
            x = F.relu(v(x), inplace=True)
            if k % 2 == 1:
                sources.append(x)
        for x, lh, c in zip(sources, self.loc, self.conf, strict=True):
            loc.append(lh(x).permute(0, 2, 3, 1).contiguous())
            conf.append(c(x).permute(0, 2, 3, 1).contiguous())
        loc = torch.cat([o.view(o.size(0), -1) for o in loc], 1)
        conf = torch.cat([o.view(o.size(0), -1) for o in conf], 1)
        return loc.view(loc.size(0), -1, 4), self.softmax(conf.view(conf.size(0), -1, self.num_classes))


# --- SSDLite on a MobileNetV2 backbone: separable-conv heads, torchvision's view(N, -1, K, H, W).permute(0, 3, 4, 1, 2).reshape
def _separable(cin, cout, stride=1):
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU6(inplace=True), nn.Conv2d(cin, cout, 1)
    )


class SSDLiteHead(nn.Module):
    def __init__(self, in_channels, num_anchors, num_columns):
        super().__init__()
        self.module_list = nn.ModuleList([_separable(c, a * num_columns) for c, a in zip(in_channels, num_anchors, strict=True)])
        self.num_columns = num_columns

    def forward(self, x):
        all_results = []
        for i, features in enumerate(x):
            results = self.module_list[i](features)
            N, _, H, W = results.shape
            results = results.view(N, -1, self.num_columns, H, W)
            results = results.permute(0, 3, 4, 1, 2)
            results = results.reshape(N, -1, self.num_columns)  # Size=(N, HWA, K)
            all_results.append(results)
        return torch.cat(all_results, dim=1)


@register(
    "ssdlite_mobilenet_v2",
    "SSDLite: MobileNetV2 x0.35 trunk (ReLU6), extra blocks with stride-2 depthwise, depthwise-separable heads, results.view(N, -1, K, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, K), 128x128",
    (1, 3, 128, 128),
    dynamic="batch",
    note="dynamo: with symbolic H/W the exported graph is wrong at other sizes (the 1x1 last extra map gets baked into a reshape: Concat fails in ORT)",
)
class SSDLiteMobileNetV2(nn.Module):
    def __init__(self, num_classes=11):
        super().__init__()
        from .mobile import ConvBNReLU, InvertedResidual

        setting = [(1, 8, 1, 1), (6, 8, 2, 2), (6, 16, 2, 2), (6, 24, 2, 2), (6, 32, 2, 1), (6, 56, 2, 2), (6, 112, 1, 1)]
        layers: list[nn.Module] = [ConvBNReLU(3, 16, stride=2)]
        cin = 16
        for t, c, n, s in setting:
            for i in range(n):
                layers.append(InvertedResidual(cin, c, s if i == 0 else 1, t))
                cin = c
        self.c4 = nn.Sequential(*layers[:10])  # 1/16, 32 ch
        self.c5 = nn.Sequential(*layers[10:], ConvBNReLU(112, 256, kernel_size=1))  # 1/32
        self.extra = nn.ModuleList(
            [nn.Sequential(ConvBNReLU(256, 64, kernel_size=1), ConvBNReLU(64, 64, stride=2, groups=64), ConvBNReLU(64, 128, kernel_size=1)) for _ in range(1)]
            + [nn.Sequential(ConvBNReLU(128, 32, kernel_size=1), ConvBNReLU(32, 32, stride=2, groups=32), ConvBNReLU(32, 64, kernel_size=1))]
        )
        channels, anchors = [32, 256, 128, 64], [4, 6, 6, 6]
        self.regression_head = SSDLiteHead(channels, anchors, 4)
        self.classification_head = SSDLiteHead(channels, anchors, num_classes)

    def forward(self, images):
        c4 = self.c4(images)
        x = self.c5(c4)
        features = [c4, x]
        for block in self.extra:
            x = block(x)
            features.append(x)
        bbox_regression = self.regression_head(features)
        cls_logits = self.classification_head(features)
        return bbox_regression, F.softmax(cls_logits, dim=-1)


# --- RetinaNet: FPN P3-P7 (P6 from C5, P7 = conv(relu(P6))), shared cls/box towers, torchvision head reshapes -----------------
@register(
    "retinanet_lite",
    "RetinaNet: FPN with P6/P7 (conv s2, F.relu), shared 2-conv towers over 5 levels, cls view(N, -1, K, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, K) + torch.cat(dim=1), sigmoid",
    (1, 3, 64, 64),
)
class RetinaNetLite(nn.Module):
    def __init__(self, num_classes=8, num_anchors=9, fpn=32):
        super().__init__()
        from .segmentation import conv_bn_relu

        self.num_classes, self.num_anchors = num_classes, num_anchors
        self.body = nn.ModuleList(
            [
                nn.Sequential(conv_bn_relu(3, 16, s=2), conv_bn_relu(16, 24, s=2), conv_bn_relu(24, 32, s=2)),  # C3 1/8
                nn.Sequential(conv_bn_relu(32, 48, s=2), conv_bn_relu(48, 48)),  # C4 1/16
                nn.Sequential(conv_bn_relu(48, 64, s=2), conv_bn_relu(64, 64)),  # C5 1/32
            ]
        )
        self.inner = nn.ModuleList([nn.Conv2d(c, fpn, 1) for c in (32, 48, 64)])
        self.layer = nn.ModuleList([nn.Conv2d(fpn, fpn, 3, padding=1) for _ in range(3)])
        self.p6 = nn.Conv2d(64, fpn, 3, 2, 1)
        self.p7 = nn.Conv2d(fpn, fpn, 3, 2, 1)
        self.cls_tower = nn.Sequential(*[m for _ in range(2) for m in (nn.Conv2d(fpn, fpn, 3, padding=1), nn.ReLU())])
        self.box_tower = nn.Sequential(*[m for _ in range(2) for m in (nn.Conv2d(fpn, fpn, 3, padding=1), nn.ReLU())])
        self.cls_logits = nn.Conv2d(fpn, num_anchors * num_classes, 3, padding=1)
        self.bbox_reg = nn.Conv2d(fpn, num_anchors * 4, 3, padding=1)
        nn.init.constant_(self.cls_logits.bias, -math.log((1 - 0.01) / 0.01))

    def forward(self, x):
        cs = []
        for stage in self.body:
            x = stage(x)
            cs.append(x)
        last_inner = self.inner[2](cs[2])
        results = [self.layer[2](last_inner)]
        for idx in (1, 0):
            inner_lateral = self.inner[idx](cs[idx])
            inner_top_down = F.interpolate(last_inner, size=inner_lateral.shape[-2:], mode="nearest")
            last_inner = inner_lateral + inner_top_down
            results.insert(0, self.layer[idx](last_inner))
        p6 = self.p6(cs[2])
        p7 = self.p7(F.relu(p6))
        results += [p6, p7]
        all_cls, all_box = [], []
        for features in results:
            cls_logits = self.cls_logits(self.cls_tower(features))
            N, _, H, W = cls_logits.shape
            cls_logits = cls_logits.view(N, -1, self.num_classes, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, self.num_classes)
            all_cls.append(cls_logits)
            bbox = self.bbox_reg(self.box_tower(features))
            bbox = bbox.view(N, -1, 4, H, W).permute(0, 3, 4, 1, 2).reshape(N, -1, 4)
            all_box.append(bbox)
        return torch.cat(all_cls, dim=1).sigmoid(), torch.cat(all_box, dim=1)


# --- FCOS: GroupNorm towers shared over levels, learnable Scale, exp(), centerness, sqrt(cls * ctr) ----------------------------
class Scale(nn.Module):
    def __init__(self, init_value=1.0):
        super().__init__()
        self.scale = nn.Parameter(torch.FloatTensor([init_value]))

    def forward(self, input):
        return input * self.scale


@register(
    "fcos_lite",
    "FCOS: FPN P3-P5, shared towers Conv + nn.GroupNorm(8, 32) + ReLU, per-level learnable Scale (1-element Parameter) + torch.exp, centerness, scores = torch.sqrt(cls.sigmoid() * ctr.sigmoid())",
    (1, 3, 64, 64),
)
class FCOSLite(nn.Module):
    def __init__(self, num_classes=6, fpn=32):
        super().__init__()
        from .segmentation import conv_bn_relu

        self.num_classes = num_classes
        self.c3 = nn.Sequential(conv_bn_relu(3, 16, s=2), conv_bn_relu(16, 32, s=2), conv_bn_relu(32, 48, s=2))
        self.c4 = nn.Sequential(conv_bn_relu(48, 64, s=2))
        self.c5 = nn.Sequential(conv_bn_relu(64, 96, s=2))
        self.lat = nn.ModuleList([nn.Conv2d(c, fpn, 1) for c in (48, 64, 96)])
        self.out = nn.ModuleList([nn.Conv2d(fpn, fpn, 3, padding=1) for _ in range(3)])
        cls_tower, bbox_tower = [], []
        for _ in range(2):
            cls_tower += [nn.Conv2d(fpn, fpn, 3, 1, 1, bias=True), nn.GroupNorm(8, fpn), nn.ReLU()]
            bbox_tower += [nn.Conv2d(fpn, fpn, 3, 1, 1, bias=True), nn.GroupNorm(8, fpn), nn.ReLU()]
        self.add_module("cls_tower", nn.Sequential(*cls_tower))
        self.add_module("bbox_tower", nn.Sequential(*bbox_tower))
        self.cls_logits = nn.Conv2d(fpn, num_classes, 3, 1, 1)
        self.bbox_pred = nn.Conv2d(fpn, 4, 3, 1, 1)
        self.centerness = nn.Conv2d(fpn, 1, 3, 1, 1)
        self.scales = nn.ModuleList([Scale(init_value=1.0) for _ in range(3)])

    def forward(self, x):
        c3 = self.c3(x)
        c4 = self.c4(c3)
        c5 = self.c5(c4)
        p5 = self.lat[2](c5)
        p4 = self.lat[1](c4) + F.interpolate(p5, scale_factor=2, mode="nearest")
        p3 = self.lat[0](c3) + F.interpolate(p4, scale_factor=2, mode="nearest")
        features = [self.out[0](p3), self.out[1](p4), self.out[2](p5)]
        scores, boxes = [], []
        for lvl, feature in enumerate(features):
            cls_tower = self.cls_tower(feature)
            box_tower = self.bbox_tower(feature)
            logits = self.cls_logits(cls_tower)
            ctr = self.centerness(box_tower)
            bbox_reg = torch.exp(self.scales[lvl](self.bbox_pred(box_tower)))
            n = logits.shape[0]
            logits = logits.permute(0, 2, 3, 1).reshape(n, -1, self.num_classes).sigmoid()
            ctr = ctr.permute(0, 2, 3, 1).reshape(n, -1, 1).sigmoid()
            scores.append(torch.sqrt(logits * ctr))
            boxes.append(bbox_reg.permute(0, 2, 3, 1).reshape(n, -1, 4))
        return torch.cat(scores, dim=1), torch.cat(boxes, dim=1)


# --- CenterNet: ConvTranspose2d(4, 2, 1) deconv head, sigmoid heatmap, 3x3 max-pool NMS with ==, top-k decode ----------------
@register(
    "centernet_topk",
    "CenterNet: stride-2 backbone, nn.ConvTranspose2d(k=4, s=2, p=1) + BN + ReLU x2, heads, torch.sigmoid heatmap, F.max_pool2d(3, 1, 1) NMS via (hmax == heat).float(), torch.topk over view(b, -1), // and % index math",
    (1, 3, 96, 96),
    dynamic="batch",
    note="dynamo: topk_inds % (height * width) with symbolic H/W fails in ONNX translation (aten.remainder.Scalar on a SymInt)",
)
class CenterNetTopK(nn.Module):
    def __init__(self, num_classes=4, K=20):
        super().__init__()
        from .segmentation import conv_bn_relu

        self.K = K
        self.backbone = nn.Sequential(
            conv_bn_relu(3, 16, s=2), conv_bn_relu(16, 32, s=2), conv_bn_relu(32, 64, s=2), conv_bn_relu(64, 64), conv_bn_relu(64, 96, s=2)
        )  # 1/16
        deconvs = []
        cin = 96
        for cout in (64, 32):
            deconvs += [
                nn.ConvTranspose2d(cin, cout, kernel_size=4, stride=2, padding=1, output_padding=0, bias=False),
                nn.BatchNorm2d(cout, momentum=0.1),
                nn.ReLU(inplace=True),
            ]
            cin = cout
        self.deconv_layers = nn.Sequential(*deconvs)  # 1/4
        self.heads = {"hm": num_classes, "wh": 2, "reg": 2}
        for head, classes in self.heads.items():
            fc = nn.Sequential(nn.Conv2d(32, 32, 3, padding=1, bias=True), nn.ReLU(inplace=True), nn.Conv2d(32, classes, 1))
            if "hm" in head:
                fc[-1].bias.data.fill_(-2.19)
            self.__setattr__(head, fc)

    def forward(self, x):
        x = self.deconv_layers(self.backbone(x))
        heat = torch.sigmoid(self.hm(x))
        wh = self.wh(x)
        reg = self.reg(x)
        hmax = F.max_pool2d(heat, (3, 3), stride=1, padding=1)
        keep = (hmax == heat).float()
        heat = heat * keep
        batch, cat, height, width = heat.size()
        topk_scores, topk_inds = torch.topk(heat.view(batch, -1), self.K)
        topk_inds = topk_inds % (height * width)
        topk_ys = (topk_inds // width).float()
        topk_xs = (topk_inds % width).float()
        return topk_scores, torch.stack([topk_xs, topk_ys], dim=2), wh, reg
