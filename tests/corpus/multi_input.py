"""Networks with several inputs: siamese pairs (feature concat; cosine / pairwise distance), image + metadata
vector (concat fusion; FiLM), an RGB + depth two-stream net with different input sizes, and a stereo net
building a cost volume by slice assignment into new_zeros."""

from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import CorpusNet, registry

NETS: list[CorpusNet] = []
register = registry(NETS, "multi_input")


def _cbr(cin, cout, s=1):
    return nn.Sequential(nn.Conv2d(cin, cout, 3, s, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


# --- siamese pair, shared encoder, torch.cat([f1, f2, (f1 - f2).abs(), f1 * f2], 1) ----------------------------------------
@register(
    "siamese_concat",
    "siamese change detector: one encoder applied to both images, AdaptiveAvgPool + view, torch.cat([f1, f2, (f1 - f2).abs(), f1 * f2], 1) -> MLP",
    (1, 3, 64, 64),
    (1, 3, 64, 64),
)
class SiameseConcat(nn.Module):
    def __init__(self):
        super().__init__()
        self.encoder = nn.Sequential(_cbr(3, 16, 2), _cbr(16, 32, 2), _cbr(32, 32), _cbr(32, 64, 2), _cbr(64, 64, 2), nn.AdaptiveAvgPool2d(1))
        self.head = nn.Sequential(nn.Linear(256, 64), nn.ReLU(inplace=True), nn.Dropout(0.3), nn.Linear(64, 1))

    def embed(self, x):
        x = self.encoder(x)
        return x.view(x.size(0), -1)

    def forward(self, img_a, img_b):
        f1 = self.embed(img_a)
        f2 = self.embed(img_b)
        return self.head(torch.cat([f1, f2, (f1 - f2).abs(), f1 * f2], 1))


# --- siamese embedding net on 28x28 grayscale pairs, forward_once, F.normalize, cosine similarity + pairwise distance -------
@register(
    "siamese_cosine_gray",
    "siamese net on two 1x1x28x28 grayscale images: forward_once (conv/MaxPool/PReLU, view(-1, 64 * 4 * 4), fc), F.normalize(p=2, dim=1), F.cosine_similarity and F.pairwise_distance outputs",
    (1, 1, 28, 28),
    (1, 1, 28, 28),
    dynamic="batch",
    note="view(-1, 64 * 4 * 4) hard-codes the 4x4 map of a 28x28 input",
)
class SiameseCosine(nn.Module):
    def __init__(self):
        super().__init__()
        self.convnet = nn.Sequential(nn.Conv2d(1, 32, 5), nn.PReLU(), nn.MaxPool2d(2, stride=2), nn.Conv2d(32, 64, 5), nn.PReLU(), nn.MaxPool2d(2, stride=2))
        self.fc = nn.Sequential(nn.Linear(64 * 4 * 4, 128), nn.PReLU(), nn.Linear(128, 32))

    def forward_once(self, x):
        output = self.convnet(x)
        output = output.view(-1, 64 * 4 * 4)
        output = self.fc(output)
        return F.normalize(output, p=2, dim=1)

    def forward(self, input1, input2):
        output1 = self.forward_once(input1)
        output2 = self.forward_once(input2)
        return F.cosine_similarity(output1, output2, dim=1), F.pairwise_distance(output1, output2)


# --- image + tabular metadata, late fusion by concat: CNN features ++ Linear-BatchNorm1d-ReLU(meta) -> Linear -----------------
@register(
    "image_metadata_concat",
    "image (1x3x64x64) + metadata vector (1x10): CNN -> F.adaptive_avg_pool2d + flatten, meta MLP nn.Linear + nn.BatchNorm1d + ReLU, torch.cat(dim=1) -> Linear head",
    (1, 3, 64, 64),
    (1, 10),
)
class ImageMetadataConcat(nn.Module):
    def __init__(self, n_meta=10, num_classes=9):
        super().__init__()
        self.cnn = nn.Sequential(_cbr(3, 24, 2), _cbr(24, 32, 2), _cbr(32, 48, 2), _cbr(48, 64, 2))
        # (a submodule named "meta" breaks the dynamo exporter in torch 2.13: "Node meta_0_weight target
        # meta.0.weight references nonexistent attribute 0 of meta" while decomposing)
        self.meta_mlp = nn.Sequential(nn.Linear(n_meta, 32), nn.BatchNorm1d(32), nn.ReLU(inplace=True), nn.Dropout(p=0.2), nn.Linear(32, 32), nn.BatchNorm1d(32), nn.ReLU(inplace=True))
        self.output = nn.Linear(64 + 32, num_classes)

    def forward(self, image, meta):
        cnn_features = F.adaptive_avg_pool2d(self.cnn(image), 1).flatten(1)
        meta_features = self.meta_mlp(meta)
        features = torch.cat((cnn_features, meta_features), dim=1)
        return self.output(features)


# --- image + condition vector, FiLM: gamma, beta = Linear(meta).chunk(2, 1); x * (1 + gamma[:, :, None, None]) + beta ---------
class FiLMBlock(nn.Module):
    def __init__(self, cin, cout, n_cond):
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, 2, 1)
        self.norm = nn.BatchNorm2d(cout, affine=False)
        self.film = nn.Linear(n_cond, 2 * cout)

    def forward(self, x, cond):
        x = self.norm(self.conv(x))
        gamma, beta = self.film(cond).chunk(2, dim=1)
        x = x * (1 + gamma[:, :, None, None]) + beta.unsqueeze(-1).unsqueeze(-1)
        return F.relu(x)


@register(
    "image_metadata_film",
    "FiLM conditioning: image (1x3x48x48) + vector (1x6), Linear(cond).chunk(2, dim=1), x * (1 + gamma[:, :, None, None]) + beta.unsqueeze(-1).unsqueeze(-1), BatchNorm2d(affine=False), amax((2, 3)) pool",
    (1, 3, 48, 48),
    (1, 6),
)
class ImageMetadataFiLM(nn.Module):
    def __init__(self, n_cond=6, num_classes=5):
        super().__init__()
        self.blocks = nn.ModuleList([FiLMBlock(3, 32, n_cond), FiLMBlock(32, 64, n_cond), FiLMBlock(64, 96, n_cond), FiLMBlock(96, 128, n_cond)])
        self.fc = nn.Linear(128, num_classes)

    def forward(self, x, cond):
        for block in self.blocks:
            x = block(x, cond)
        return self.fc(x.amax(dim=(2, 3)))


# --- RGB + depth two-stream net, inputs of different sizes, depth features resized to the RGB map and concatenated -------------
@register(
    "rgbd_two_stream",
    "two streams: RGB 1x3x96x96 (3 stride-2 stages) and depth 1x1x48x48 (2 stages), F.interpolate(depth, size=rgb.shape[-2:], mode='bilinear') + torch.cat, fused conv, GAP + Linear",
    (1, 3, 96, 96),
    (1, 1, 48, 48),
)
class RGBDTwoStream(nn.Module):
    def __init__(self, num_classes=12):
        super().__init__()
        self.rgb = nn.Sequential(_cbr(3, 16, 2), _cbr(16, 32, 2), _cbr(32, 32), _cbr(32, 64, 2))
        self.depth = nn.Sequential(_cbr(1, 16, 2), _cbr(16, 32, 2), _cbr(32, 32))
        self.fuse = nn.Sequential(nn.Conv2d(96, 96, 1, bias=False), nn.BatchNorm2d(96), nn.ReLU(inplace=True), _cbr(96, 96, 2))
        self.classifier = nn.Linear(96, num_classes)

    def forward(self, rgb, depth):
        r = self.rgb(rgb)
        d = self.depth(depth)
        d = F.interpolate(d, size=r.shape[-2:], mode="bilinear", align_corners=False)
        x = self.fuse(torch.cat([r, d], dim=1))
        x = torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1)
        return self.classifier(x)


# --- stereo matching: shared feature net, correlation cost volume by slice assignment into new_zeros, soft-argmin -------------
@register(
    "stereo_cost_volume",
    "stereo pair 2x 1x3x32x64: shared features, volume = left.new_zeros(B, D, H, W) filled by volume[:, i, :, i:] = (l[..., i:] * r[..., :-i]).mean(1) slice assignment, softmax over disparities, sum(prob * torch.arange(D)), x4 bilinear",
    (1, 3, 32, 64),
    (1, 3, 32, 64),
)
class StereoCostVolume(nn.Module):
    def __init__(self, maxdisp=8):
        super().__init__()
        self.maxdisp = maxdisp
        self.feature = nn.Sequential(_cbr(3, 16, 2), _cbr(16, 32, 2), _cbr(32, 32), nn.Conv2d(32, 32, 3, 1, 1))
        self.aggregate = nn.Sequential(_cbr(maxdisp, 32), _cbr(32, 32), nn.Conv2d(32, maxdisp, 3, 1, 1))

    def forward(self, left, right):
        fl = self.feature(left)
        fr = self.feature(right)
        B, C, H, W = fl.shape
        volume = fl.new_zeros(B, self.maxdisp, H, W)
        for i in range(self.maxdisp):
            if i > 0:
                volume[:, i, :, i:] = (fl[:, :, :, i:] * fr[:, :, :, :-i]).mean(dim=1)
            else:
                volume[:, i, :, :] = (fl * fr).mean(dim=1)
        cost = self.aggregate(volume)
        prob = F.softmax(cost, dim=1)
        disp_values = torch.arange(0, self.maxdisp, dtype=prob.dtype, device=prob.device).view(1, self.maxdisp, 1, 1)
        disp = torch.sum(prob * disp_values, 1, keepdim=True)
        return F.interpolate(disp * 4, scale_factor=4, mode="bilinear", align_corners=False)
