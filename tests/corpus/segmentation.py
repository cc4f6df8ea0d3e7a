"""Segmentation / dense-prediction networks: UNets (nearest, bilinear + pad, transposed conv + resize to the
skip), FPN, DeepLab ASPP, BiSeNet, HRNet-style fusion, FCN with crops, SegNet unpooling, LR-ASPP, and a
PixelShuffle super-resolution net."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import CorpusNet, registry

NETS: list[CorpusNet] = []
register = registry(NETS, "segmentation")


def conv_bn_relu(cin, cout, k=3, s=1, d=1):
    return nn.Sequential(nn.Conv2d(cin, cout, k, s, d * (k // 2), dilation=d, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


# --- UNet with F.interpolate(scale_factor=2, mode="nearest") and skip concat ---------------------------------------------
class DoubleConv(nn.Module):
    """(convolution => [BN] => ReLU) * 2"""

    def __init__(self, in_channels, out_channels, mid_channels=None):
        super().__init__()
        if not mid_channels:
            mid_channels = out_channels
        self.double_conv = nn.Sequential(
            nn.Conv2d(in_channels, mid_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(mid_channels),
            nn.ReLU(inplace=True),
            nn.Conv2d(mid_channels, out_channels, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
            nn.ReLU(inplace=True),
        )

    def forward(self, x):
        return self.double_conv(x)


@register(
    "unet_nearest",
    "UNet depth 3: DoubleConv, nn.MaxPool2d(2), F.interpolate(x, scale_factor=2, mode='nearest') + torch.cat([x, skip], dim=1), 1x1 out conv",
    (1, 3, 48, 48),
)
class UNetNearest(nn.Module):
    def __init__(self, n_classes=2, base=8):
        super().__init__()
        c = [base, base * 2, base * 4, base * 8]
        self.inc = DoubleConv(3, c[0])
        self.down1 = DoubleConv(c[0], c[1])
        self.down2 = DoubleConv(c[1], c[2])
        self.bottom = DoubleConv(c[2], c[3])
        self.up2 = DoubleConv(c[3] + c[2], c[2])
        self.up1 = DoubleConv(c[2] + c[1], c[1])
        self.up0 = DoubleConv(c[1] + c[0], c[0])
        self.pool = nn.MaxPool2d(2)
        self.outc = nn.Conv2d(c[0], n_classes, kernel_size=1)

    def forward(self, x):
        x0 = self.inc(x)
        x1 = self.down1(self.pool(x0))
        x2 = self.down2(self.pool(x1))
        x3 = self.bottom(self.pool(x2))
        x = self.up2(torch.cat([F.interpolate(x3, scale_factor=2, mode="nearest"), x2], dim=1))
        x = self.up1(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), x1], dim=1))
        x = self.up0(torch.cat([F.interpolate(x, scale_factor=2, mode="nearest"), x0], dim=1))
        return self.outc(x)


# --- milesial/Pytorch-UNet: nn.Upsample(bilinear, align_corners=True) then F.pad by the size difference ----------------
class Down(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.maxpool_conv = nn.Sequential(nn.MaxPool2d(2), DoubleConv(in_channels, out_channels))

    def forward(self, x):
        return self.maxpool_conv(x)


class Up(nn.Module):
    def __init__(self, in_channels, out_channels):
        super().__init__()
        self.up = nn.Upsample(scale_factor=2, mode="bilinear", align_corners=True)
        self.conv = DoubleConv(in_channels, out_channels, in_channels // 2)

    def forward(self, x1, x2):
        x1 = self.up(x1)
        # input is CHW
        diffY = x2.size()[2] - x1.size()[2]
        diffX = x2.size()[3] - x1.size()[3]
        x1 = F.pad(x1, [diffX // 2, diffX - diffX // 2, diffY // 2, diffY - diffY // 2])
        x = torch.cat([x2, x1], dim=1)
        return self.conv(x)


@register(
    "unet_bilinear_pad",
    "milesial Pytorch-UNet: nn.Upsample(scale_factor=2, mode='bilinear', align_corners=True), F.pad by diffY/diffX from x.size() (odd 50x50 input: 25 -> 12 -> 24 + pad)",
    (1, 3, 50, 50),
)
class UNetBilinearPad(nn.Module):
    def __init__(self, n_channels=3, n_classes=3, base=8):
        super().__init__()
        self.inc = DoubleConv(n_channels, base)
        self.down1 = Down(base, base * 2)
        self.down2 = Down(base * 2, base * 4)
        self.down3 = Down(base * 4, base * 4)
        self.up1 = Up(base * 8, base * 2)
        self.up2 = Up(base * 4, base)
        self.up3 = Up(base * 2, base)
        self.outc = nn.Conv2d(base, n_classes, kernel_size=1)

    def forward(self, x):
        x1 = self.inc(x)
        x2 = self.down1(x1)
        x3 = self.down2(x2)
        x4 = self.down3(x3)
        x = self.up1(x4, x3)
        x = self.up2(x, x2)
        x = self.up3(x, x1)
        logits = self.outc(x)
        return logits


# --- UNet with nn.ConvTranspose2d(k=2, s=2) and F.interpolate(size=skip.shape[-2:]) to fix odd sizes -------------------
class UpTConv(nn.Module):
    def __init__(self, cin, cskip, cout):
        super().__init__()
        self.up = nn.ConvTranspose2d(cin, cin // 2, kernel_size=2, stride=2)
        self.conv = nn.Sequential(conv_bn_relu(cin // 2 + cskip, cout), conv_bn_relu(cout, cout))

    def forward(self, x, skip):
        x = self.up(x)
        if x.shape[-2:] != skip.shape[-2:]:
            x = F.interpolate(x, size=skip.shape[-2:], mode="bilinear", align_corners=False)
        return self.conv(torch.cat((skip, x), 1))


@register(
    "unet_transposed",
    "UNet on 1x3x67x93: nn.ConvTranspose2d(k=2, s=2) up, F.interpolate(size=skip.shape[-2:], mode='bilinear', align_corners=False) when sizes differ, stride-2 conv down",
    (1, 3, 67, 93),
    dynamic="batch",
    note="'if x.shape[-2:] != skip.shape[-2:]' is decided for the example size (resize present or not in the graph)",
)
class UNetTransposed(nn.Module):
    def __init__(self, n_classes=4):
        super().__init__()
        self.enc0 = nn.Sequential(conv_bn_relu(3, 8), conv_bn_relu(8, 8))  # 67x93
        self.enc1 = nn.Sequential(conv_bn_relu(8, 16, s=2), conv_bn_relu(16, 16))  # 34x47
        self.enc2 = nn.Sequential(conv_bn_relu(16, 32, s=2), conv_bn_relu(32, 32))  # 17x24
        self.enc3 = nn.Sequential(conv_bn_relu(32, 64, s=2), conv_bn_relu(64, 64))  # 9x12
        self.dec2 = UpTConv(64, 32, 32)
        self.dec1 = UpTConv(32, 16, 16)
        self.dec0 = UpTConv(16, 8, 8)
        self.head = nn.Conv2d(8, n_classes, 1)

    def forward(self, x):
        e0 = self.enc0(x)
        e1 = self.enc1(e0)
        e2 = self.enc2(e1)
        e3 = self.enc3(e2)
        d = self.dec2(e3, e2)
        d = self.dec1(d, e1)
        d = self.dec0(d, e0)
        return self.head(d)


# --- FPN top-down (nearest to the lateral's size) + panoptic-FPN semantic head (GroupNorm, bilinear x2 steps) ------------
@register(
    "fpn_semantic",
    "FPN: 1x1 laterals, F.interpolate(p, size=c.shape[-2:], mode='nearest') + add, 3x3 smoothing; semantic head GroupNorm + bilinear x2 upsampling steps summed, x4 bilinear out",
    (1, 3, 64, 64),
)
class FPNSemantic(nn.Module):
    def __init__(self, num_classes=5, fpn=32):
        super().__init__()
        self.stem = conv_bn_relu(3, 16, s=2)  # 1/2
        self.c2 = nn.Sequential(conv_bn_relu(16, 24, s=2), conv_bn_relu(24, 24))  # 1/4
        self.c3 = nn.Sequential(conv_bn_relu(24, 48, s=2), conv_bn_relu(48, 48))  # 1/8
        self.c4 = nn.Sequential(conv_bn_relu(48, 96, s=2), conv_bn_relu(96, 96))  # 1/16
        self.lateral = nn.ModuleList([nn.Conv2d(c, fpn, 1) for c in (24, 48, 96)])
        self.smooth = nn.ModuleList([nn.Conv2d(fpn, fpn, 3, padding=1) for _ in range(3)])
        self.sem = nn.ModuleList()
        for level in range(3):
            layers: list[nn.Module] = []
            cin = fpn
            for _ in range(max(level, 1)):
                layers += [nn.Conv2d(cin, 16, 3, padding=1, bias=False), nn.GroupNorm(4, 16), nn.ReLU(inplace=True)]
                cin = 16
                if level > 0:
                    layers.append(nn.Upsample(scale_factor=2, mode="bilinear", align_corners=False))
            self.sem.append(nn.Sequential(*layers))
        self.predictor = nn.Conv2d(16, num_classes, 1)

    def forward(self, x):
        c2 = self.c2(self.stem(x))
        c3 = self.c3(c2)
        c4 = self.c4(c3)
        feats = [c2, c3, c4]
        last = self.lateral[2](c4)
        results = [self.smooth[2](last)]
        for idx in (1, 0):
            inner_top_down = F.interpolate(last, size=feats[idx].shape[-2:], mode="nearest")
            last = self.lateral[idx](feats[idx]) + inner_top_down
            results.insert(0, self.smooth[idx](last))
        out = self.sem[0](results[0])
        for level in (1, 2):
            out = out + self.sem[level](results[level])
        out = self.predictor(out)
        return F.interpolate(out, scale_factor=4, mode="bilinear", align_corners=False)


# --- DeepLabV3: dilated backbone (output stride 8), ASPP with image-pooling branch resized back ---------------------------
class ASPPConv(nn.Sequential):
    def __init__(self, in_channels, out_channels, dilation):
        modules = [nn.Conv2d(in_channels, out_channels, 3, padding=dilation, dilation=dilation, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU()]
        super().__init__(*modules)


class ASPPPooling(nn.Sequential):
    def __init__(self, in_channels, out_channels):
        super().__init__(nn.AdaptiveAvgPool2d(1), nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())

    def forward(self, x):
        size = x.shape[-2:]
        for mod in self:
            x = mod(x)
        return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


class ASPP(nn.Module):
    def __init__(self, in_channels, atrous_rates, out_channels=48):
        super().__init__()
        modules = [nn.Sequential(nn.Conv2d(in_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU())]
        for rate in atrous_rates:
            modules.append(ASPPConv(in_channels, out_channels, rate))
        modules.append(ASPPPooling(in_channels, out_channels))
        self.convs = nn.ModuleList(modules)
        self.project = nn.Sequential(
            nn.Conv2d(len(self.convs) * out_channels, out_channels, 1, bias=False), nn.BatchNorm2d(out_channels), nn.ReLU(), nn.Dropout(0.5)
        )

    def forward(self, x):
        _res = []
        for conv in self.convs:
            _res.append(conv(x))
        res = torch.cat(_res, dim=1)
        return self.project(res)


@register(
    "deeplabv3_aspp",
    "DeepLabV3: dilated backbone (dilation 2, 4), ASPP 1x1 + rates (2, 4, 6) + AdaptiveAvgPool2d(1) branch F.interpolate(size=x.shape[-2:]), concat, final bilinear align_corners=True to input size",
    (1, 3, 64, 64),
)
class DeepLabV3ASPP(nn.Module):
    def __init__(self, num_classes=6):
        super().__init__()
        self.backbone = nn.Sequential(
            conv_bn_relu(3, 16, s=2),
            conv_bn_relu(16, 32, s=2),
            conv_bn_relu(32, 32),
            conv_bn_relu(32, 64, s=2),
            conv_bn_relu(64, 96, d=2),
            conv_bn_relu(96, 96, d=4),
        )
        self.aspp = ASPP(96, [2, 4, 6])
        self.head = nn.Sequential(nn.Conv2d(48, 48, 3, padding=1, bias=False), nn.BatchNorm2d(48), nn.ReLU(), nn.Conv2d(48, num_classes, 1))

    def forward(self, x):
        input_shape = x.shape[-2:]
        features = self.backbone(x)
        x = self.aspp(features)
        x = self.head(x)
        x = F.interpolate(x, size=input_shape, mode="bilinear", align_corners=True)
        return x


# --- EDSR-lite super-resolution: MeanShift 1x1 conv with frozen weights, res scaling, PixelShuffle, bicubic skip ---------
class MeanShift(nn.Conv2d):
    def __init__(self, rgb_range=1.0, rgb_mean=(0.4488, 0.4371, 0.4040), rgb_std=(1.0, 1.0, 1.0), sign=-1):
        super().__init__(3, 3, kernel_size=1)
        std = torch.Tensor(rgb_std)
        self.weight.data = torch.eye(3).view(3, 3, 1, 1) / std.view(3, 1, 1, 1)
        self.bias.data = sign * rgb_range * torch.Tensor(rgb_mean) / std
        for p in self.parameters():
            p.requires_grad = False


class ResBlock(nn.Module):
    def __init__(self, n_feats, kernel_size=3, res_scale=0.1):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(n_feats, n_feats, kernel_size, padding=kernel_size // 2), nn.ReLU(True), nn.Conv2d(n_feats, n_feats, kernel_size, padding=kernel_size // 2))
        self.res_scale = res_scale

    def forward(self, x):
        res = self.body(x).mul(self.res_scale)
        res += x
        return res


@register(
    "edsr_pixelshuffle",
    "EDSR-lite x2 SR: MeanShift as frozen 1x1 conv, ResBlock body(x).mul(0.1) += x, conv + nn.PixelShuffle(2), + F.interpolate(x, scale_factor=2, mode='bicubic')",
    (1, 3, 32, 32),
)
class EDSRLite(nn.Module):
    def __init__(self, n_feats=16, n_resblocks=3, scale=2):
        super().__init__()
        self.sub_mean = MeanShift(sign=-1)
        self.add_mean = MeanShift(sign=1)
        self.head = nn.Conv2d(3, n_feats, 3, padding=1)
        self.body = nn.Sequential(*[ResBlock(n_feats) for _ in range(n_resblocks)], nn.Conv2d(n_feats, n_feats, 3, padding=1))
        self.upsample = nn.Sequential(nn.Conv2d(n_feats, 4 * n_feats, 3, padding=1), nn.PixelShuffle(2))
        self.tail = nn.Conv2d(n_feats, 3, 3, padding=1)
        self.scale = scale

    def forward(self, x):
        base = F.interpolate(x, scale_factor=self.scale, mode="bicubic", align_corners=False)
        x = self.sub_mean(x)
        x = self.head(x)
        res = self.body(x)
        res += x
        x = self.tail(self.upsample(res))
        x = self.add_mean(x)
        return x + base


# --- SegNet-ish decoder whose author wrote nearest upsampling by hand: expand + reshape, and repeat_interleave ----------------
# (the original SegNet MaxUnpool2d does not export with the torchscript exporter in torch 2.13: F.max_unpool2d's
# output-size check fails while tracing; the dynamo exporter lowers it to ScatterND)
def upsample2x_expand(x):
    b, c, h, w = x.shape
    return x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, h * 2, w * 2)


@register(
    "segnet_manual_upsample",
    "SegNet-ish encoder/decoder, nearest x2 upsampling written by hand: x[:, :, :, None, :, None].expand(b, c, h, 2, w, 2).reshape(b, c, 2h, 2w) and x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)",
    (1, 3, 48, 48),
)
class SegNetManualUpsample(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        self.enc1 = nn.Sequential(conv_bn_relu(3, 16), conv_bn_relu(16, 16))
        self.enc2 = nn.Sequential(conv_bn_relu(16, 32), conv_bn_relu(32, 32))
        self.enc3 = conv_bn_relu(32, 64)
        self.pool = nn.MaxPool2d(2, 2)
        self.dec3 = conv_bn_relu(64, 32)
        self.dec2 = nn.Sequential(conv_bn_relu(32, 32), conv_bn_relu(32, 16))
        self.dec1 = nn.Sequential(conv_bn_relu(16, 16), nn.Conv2d(16, num_classes, 3, padding=1))

    def forward(self, x):
        x = self.pool(self.enc1(x))
        x = self.pool(self.enc2(x))
        x = self.pool(self.enc3(x))
        x = self.dec3(upsample2x_expand(x))
        x = self.dec2(x.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3))
        x = self.dec1(upsample2x_expand(x))
        return x


# --- BiSeNet: spatial path + context path with attention refinement (mean -> conv -> sigmoid -> mul), FFM --------------------
class AttentionRefinementModule(nn.Module):
    def __init__(self, in_chan, out_chan):
        super().__init__()
        self.conv = conv_bn_relu(in_chan, out_chan)
        self.conv_atten = nn.Conv2d(out_chan, out_chan, kernel_size=1, bias=False)
        self.bn_atten = nn.BatchNorm2d(out_chan)

    def forward(self, x):
        feat = self.conv(x)
        atten = torch.mean(feat, dim=(2, 3), keepdim=True)
        atten = self.conv_atten(atten)
        atten = self.bn_atten(atten)
        atten = atten.sigmoid()
        out = torch.mul(feat, atten)
        return out


class FeatureFusionModule(nn.Module):
    def __init__(self, in_chan, out_chan):
        super().__init__()
        self.convblk = conv_bn_relu(in_chan, out_chan, k=1)
        self.conv1 = nn.Conv2d(out_chan, out_chan // 4, 1, bias=False)
        self.conv2 = nn.Conv2d(out_chan // 4, out_chan, 1, bias=False)
        self.relu = nn.ReLU(inplace=True)
        self.sigmoid = nn.Sigmoid()

    def forward(self, fsp, fcp):
        fcat = torch.cat([fsp, fcp], dim=1)
        feat = self.convblk(fcat)
        atten = F.adaptive_avg_pool2d(feat, 1)
        atten = self.sigmoid(self.conv2(self.relu(self.conv1(atten))))
        feat_atten = torch.mul(feat, atten)
        feat_out = feat_atten + feat
        return feat_out


@register(
    "bisenet_lite",
    "BiSeNet on 1x3x64x96: spatial path + context path, ARM (torch.mean(dim=(2, 3), keepdim=True) -> conv -> .sigmoid() -> torch.mul), global context add, FFM, x8 bilinear align_corners=True",
    (1, 3, 64, 96),
)
class BiSeNetLite(nn.Module):
    def __init__(self, n_classes=5):
        super().__init__()
        self.sp = nn.Sequential(conv_bn_relu(3, 16, 7, 2), conv_bn_relu(16, 32, s=2), conv_bn_relu(32, 64, s=2))
        self.cp8 = nn.Sequential(conv_bn_relu(3, 16, s=2), conv_bn_relu(16, 24, s=2), conv_bn_relu(24, 32, s=2))
        self.cp16 = nn.Sequential(conv_bn_relu(32, 64, s=2), conv_bn_relu(64, 64))
        self.cp32 = nn.Sequential(conv_bn_relu(64, 96, s=2), conv_bn_relu(96, 96))
        self.arm16 = AttentionRefinementModule(64, 64)
        self.arm32 = AttentionRefinementModule(96, 64)
        self.conv_head32 = conv_bn_relu(64, 64)
        self.conv_head16 = conv_bn_relu(64, 64)
        self.conv_avg = conv_bn_relu(96, 64, k=1)
        self.ffm = FeatureFusionModule(128, 64)
        self.out = nn.Sequential(conv_bn_relu(64, 32), nn.Conv2d(32, n_classes, 1))

    def forward(self, x):
        feat_sp = self.sp(x)
        feat8 = self.cp8(x)
        feat16 = self.cp16(feat8)
        feat32 = self.cp32(feat16)
        avg = F.adaptive_avg_pool2d(feat32, 1)
        avg = self.conv_avg(avg)
        avg_up = F.interpolate(avg, size=feat32.shape[2:], mode="nearest")
        feat32_sum = self.arm32(feat32) + avg_up
        feat32_up = F.interpolate(feat32_sum, scale_factor=2.0, mode="nearest")
        feat32_up = self.conv_head32(feat32_up)
        feat16_sum = self.arm16(feat16) + feat32_up
        feat16_up = F.interpolate(feat16_sum, size=feat8.shape[2:], mode="nearest")
        feat_cp8 = self.conv_head16(feat16_up)
        feat_fuse = self.ffm(feat_sp, feat_cp8)
        out = self.out(feat_fuse)
        return F.interpolate(out, scale_factor=8, mode="bilinear", align_corners=True)


# --- HRNet-style: parallel branches exchanged through nn.Upsample(nearest) and strided convs, bilinear concat head -----------
class BasicRes(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        out = F.relu(self.bn1(self.conv1(x)))
        return F.relu(self.bn2(self.conv2(out)) + x)


class FuseLayer(nn.Module):
    """out[i] = relu(sum_j f_ij(x[j])): j > i upsample (1x1 conv + nn.Upsample), j < i strided 3x3 convs."""

    def __init__(self, channels):
        super().__init__()
        n = len(channels)
        self.fuse = nn.ModuleList()
        for i in range(n):
            row = nn.ModuleList()
            for j in range(n):
                if j > i:
                    row.append(
                        nn.Sequential(
                            nn.Conv2d(channels[j], channels[i], 1, bias=False), nn.BatchNorm2d(channels[i]), nn.Upsample(scale_factor=2 ** (j - i), mode="nearest")
                        )
                    )
                elif j == i:
                    row.append(nn.Identity())
                else:
                    steps = []
                    for k in range(i - j):
                        cout = channels[i] if k == i - j - 1 else channels[j]
                        steps += [nn.Conv2d(channels[j], cout, 3, 2, 1, bias=False), nn.BatchNorm2d(cout)]
                        if k != i - j - 1:
                            steps.append(nn.ReLU(True))
                    row.append(nn.Sequential(*steps))
            self.fuse.append(row)

    def forward(self, xs):
        outs = []
        for i, row in enumerate(self.fuse):
            y = xs[0] if i == 0 else row[0](xs[0])
            for j in range(1, len(xs)):
                y = y + row[j](xs[j])
            outs.append(F.relu(y))
        return outs


@register(
    "hrnet_lite",
    "HRNet-style 3 parallel branches, fuse layers with 1x1 conv + nn.Upsample(scale_factor=2**k, nearest) and stride-2 conv chains, head F.interpolate(size=(h, w), bilinear) + cat",
    (1, 3, 64, 64),
)
class HRNetLite(nn.Module):
    def __init__(self, num_classes=4):
        super().__init__()
        c = [16, 32, 64]
        self.stem = nn.Sequential(conv_bn_relu(3, 32, s=2), conv_bn_relu(32, 32, s=2))  # 1/4
        self.trans1 = nn.ModuleList([conv_bn_relu(32, c[0]), conv_bn_relu(32, c[1], s=2)])
        self.stage2 = nn.ModuleList([BasicRes(c[0]), BasicRes(c[1])])
        self.fuse2 = FuseLayer(c[:2])
        self.trans2 = conv_bn_relu(c[1], c[2], s=2)
        self.stage3 = nn.ModuleList([BasicRes(c[0]), BasicRes(c[1]), BasicRes(c[2])])
        self.fuse3 = FuseLayer(c)
        self.last_layer = nn.Sequential(conv_bn_relu(sum(c), 32, k=1), nn.Conv2d(32, num_classes, 1))

    def forward(self, x):
        x = self.stem(x)
        xs = [t(x) for t in self.trans1]
        xs = self.fuse2([b(v) for b, v in zip(self.stage2, xs, strict=True)])
        xs = xs + [self.trans2(xs[-1])]
        xs = self.fuse3([b(v) for b, v in zip(self.stage3, xs, strict=True)])
        x0_h, x0_w = xs[0].size(2), xs[0].size(3)
        x1 = F.interpolate(xs[1], size=(x0_h, x0_w), mode="bilinear", align_corners=False)
        x2 = F.interpolate(xs[2], size=(x0_h, x0_w), mode="bilinear", align_corners=False)
        x = torch.cat([xs[0], x1, x2], 1)
        return self.last_layer(x)


# --- FCN-8s: transposed-conv upscoring (no padding) and crops by slicing with the skip's size ---------------------------
@register(
    "fcn8s_crop",
    "FCN-8s: score layers, nn.ConvTranspose2d(k=4, s=2) / (k=16, s=8) without padding, crops up[:, :, 1:1 + skip.size(2), 1:1 + skip.size(3)] and [..., 4:4 + H, 4:4 + W]",
    (1, 3, 64, 64),
)
class FCN8s(nn.Module):
    def __init__(self, n_class=4):
        super().__init__()

        def block(cin, cout, n):
            layers = []
            for i in range(n):
                layers += [nn.Conv2d(cin if i == 0 else cout, cout, 3, padding=1), nn.ReLU(inplace=True)]
            layers.append(nn.MaxPool2d(2, stride=2, ceil_mode=True))
            return nn.Sequential(*layers)

        self.to_pool3 = nn.Sequential(block(3, 8, 1), block(8, 16, 1), block(16, 32, 2))  # 1/8
        self.to_pool4 = block(32, 64, 2)  # 1/16
        self.to_pool5 = block(64, 64, 1)  # 1/32
        self.fc6 = nn.Sequential(nn.Conv2d(64, 128, 3, padding=1), nn.ReLU(inplace=True), nn.Dropout2d())
        self.score_fr = nn.Conv2d(128, n_class, 1)
        self.score_pool3 = nn.Conv2d(32, n_class, 1)
        self.score_pool4 = nn.Conv2d(64, n_class, 1)
        self.upscore2 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore_pool4 = nn.ConvTranspose2d(n_class, n_class, 4, stride=2, bias=False)
        self.upscore8 = nn.ConvTranspose2d(n_class, n_class, 16, stride=8, bias=False)

    def forward(self, x):
        pool3 = self.to_pool3(x)
        pool4 = self.to_pool4(pool3)
        pool5 = self.to_pool5(pool4)
        h = self.score_fr(self.fc6(pool5))
        upscore2 = self.upscore2(h)
        score_pool4c = self.score_pool4(pool4)
        h = upscore2[:, :, 1 : 1 + score_pool4c.size(2), 1 : 1 + score_pool4c.size(3)] + score_pool4c
        upscore_pool4 = self.upscore_pool4(h)
        score_pool3c = self.score_pool3(pool3)
        h = upscore_pool4[:, :, 1 : 1 + score_pool3c.size()[2], 1 : 1 + score_pool3c.size()[3]] + score_pool3c
        h = self.upscore8(h)
        h = h[:, :, 4 : 4 + x.size()[2], 4 : 4 + x.size()[3]].contiguous()
        return h


# --- LR-ASPP on a small MobileNetV3-ish backbone, torchvision style (dict of features in, dict out) -----------------------
class LRASPPHead(nn.Module):
    def __init__(self, low_channels, high_channels, num_classes, inter_channels):
        super().__init__()
        self.cbr = nn.Sequential(nn.Conv2d(high_channels, inter_channels, 1, bias=False), nn.BatchNorm2d(inter_channels), nn.ReLU(inplace=True))
        self.scale = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(high_channels, inter_channels, 1, bias=False), nn.Sigmoid())
        self.low_classifier = nn.Conv2d(low_channels, num_classes, 1)
        self.high_classifier = nn.Conv2d(inter_channels, num_classes, 1)

    def forward(self, input):
        low = input["low"]
        high = input["high"]
        x = self.cbr(high)
        s = self.scale(high)
        x = x * s
        x = F.interpolate(x, size=low.shape[-2:], mode="bilinear", align_corners=False)
        return self.low_classifier(low) + self.high_classifier(x)


@register(
    "lraspp_dict",
    "LR-ASPP: backbone returns a dict {'low', 'high'}, head = 1x1 cbr * (AdaptiveAvgPool2d(1) -> conv -> nn.Sigmoid), bilinear to low.shape[-2:], returns a dict {'out': ...}",
    (1, 3, 96, 96),
)
class LRASPPDict(nn.Module):
    def __init__(self, num_classes=3):
        super().__init__()
        from .mobile import V3Block

        self.stem = nn.Sequential(nn.Conv2d(3, 16, 3, 2, 1, bias=False), nn.BatchNorm2d(16), nn.Hardswish())
        self.low_blocks = nn.Sequential(V3Block(16, 3, 16, 16, True, "RE", 2), V3Block(16, 3, 72, 24, False, "RE", 2))  # 1/8
        self.high_blocks = nn.Sequential(V3Block(24, 5, 96, 40, True, "HS", 2), V3Block(40, 5, 240, 40, True, "HS", 1), V3Block(40, 5, 144, 48, True, "HS", 1))
        self.classifier = LRASPPHead(24, 48, num_classes, 64)

    def backbone(self, x):
        low = self.low_blocks(self.stem(x))
        high = self.high_blocks(low)
        return {"low": low, "high": high}

    def forward(self, input):
        features = self.backbone(input)
        out = self.classifier(features)
        out = F.interpolate(out, size=input.shape[-2:], mode="bilinear", align_corners=False)
        result = {}
        result["out"] = out
        return result
