"""Small vision transformers and friends: DeiT (nn.MultiheadAttention), timm-style hand-written attention,
nn.TransformerEncoderLayer, SDPA, einsum attention, MobileViT, EfficientFormer, ConvNeXt (V1 and V2/GRN),
Swin (window partition, shifted windows, relative position bias) and MLP-Mixer. All tiny: embedding dims
32-192, 2-4 blocks, 32-96 px."""

from __future__ import annotations

import itertools
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ._registry import CorpusNet, registry

NETS: list[CorpusNet] = []
register = registry(NETS, "transformer")

_FIXED_TOKENS = "learned position embedding of a fixed token count"


# --- DeiT-tiny-ish with nn.MultiheadAttention, cls + distillation tokens -------------------------------------------------------
class MHABlock(nn.Module):
    def __init__(self, dim, heads, mlp_ratio=2.0, drop=0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.MultiheadAttention(dim, heads, dropout=drop, batch_first=True)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Dropout(drop), nn.Linear(hidden, dim), nn.Dropout(drop))

    def forward(self, x):
        y = self.norm1(x)
        x = x + self.attn(y, y, y, need_weights=False)[0]
        x = x + self.mlp(self.norm2(x))
        return x


@register(
    "deit_tiny_mha",
    "DeiT-ish: Conv2d patch embed + flatten(2).transpose(1, 2), cls & dist tokens .expand(B, -1, -1) + torch.cat, + pos_embed, nn.MultiheadAttention(batch_first=True), nn.GELU(), (head(x[:, 0]) + head_dist(x[:, 1])) / 2",
    (1, 3, 32, 32),
    dynamic="batch",
    note=_FIXED_TOKENS + "; torchscript exports it through scaled_dot_product_attention (opset 14)",
    min_opset=14,
)
class DeiTTinyMHA(nn.Module):
    def __init__(self, img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3, num_classes=100):
        super().__init__()
        num_patches = (img_size // patch_size) ** 2
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.dist_token = nn.Parameter(torch.zeros(1, 1, embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, num_patches + 2, embed_dim))
        self.pos_drop = nn.Dropout(p=0.0)
        self.blocks = nn.ModuleList([MHABlock(embed_dim, num_heads) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim, eps=1e-6)
        self.head = nn.Linear(embed_dim, num_classes)
        self.head_dist = nn.Linear(embed_dim, num_classes)
        for p in (self.cls_token, self.dist_token, self.pos_embed):
            nn.init.trunc_normal_(p, std=0.02)

    def forward(self, x):
        B = x.shape[0]
        x = self.patch_embed(x).flatten(2).transpose(1, 2)
        cls_tokens = self.cls_token.expand(B, -1, -1)
        dist_token = self.dist_token.expand(B, -1, -1)
        x = torch.cat((cls_tokens, dist_token, x), dim=1)
        x = x + self.pos_embed
        x = self.pos_drop(x)
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        return (self.head(x[:, 0]) + self.head_dist(x[:, 1])) / 2


# --- timm-style ViT: hand-written attention, qkv reshape/permute/unbind, GELU(tanh), LayerScale, avg token pool -------------
class Attention(nn.Module):
    def __init__(self, dim, num_heads=8, qkv_bias=False, attn_drop=0.0, proj_drop=0.0):
        super().__init__()
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)

    def forward(self, x):
        B, N, C = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)  # make torchscript happy (cannot use tensor as tuple)
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        x = (attn @ v).transpose(1, 2).reshape(B, N, C)
        x = self.proj(x)
        x = self.proj_drop(x)
        return x


class LayerScale(nn.Module):
    def __init__(self, dim, init_values=1e-5, inplace=False):
        super().__init__()
        self.inplace = inplace
        self.gamma = nn.Parameter(init_values * torch.ones(dim))

    def forward(self, x):
        return x.mul_(self.gamma) if self.inplace else x * self.gamma


class Mlp(nn.Module):
    def __init__(self, in_features, hidden_features=None, out_features=None, act_layer=nn.GELU, drop=0.0):
        super().__init__()
        out_features = out_features or in_features
        hidden_features = hidden_features or in_features
        self.fc1 = nn.Linear(in_features, hidden_features)
        self.act = act_layer()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden_features, out_features)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x):
        x = self.fc1(x)
        x = self.act(x)
        x = self.drop1(x)
        x = self.fc2(x)
        x = self.drop2(x)
        return x


class TimmBlock(nn.Module):
    def __init__(self, dim, num_heads, mlp_ratio=4.0, qkv_bias=True, init_values=0.1):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.attn = Attention(dim, num_heads=num_heads, qkv_bias=qkv_bias)
        self.ls1 = LayerScale(dim, init_values=init_values)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio), act_layer=lambda: nn.GELU(approximate="tanh"))
        self.ls2 = LayerScale(dim, init_values=init_values)

    def forward(self, x):
        x = x + self.ls1(self.attn(self.norm1(x)))
        x = x + self.ls2(self.mlp(self.norm2(x)))
        return x


@register(
    "vit_timm_attention",
    "timm ViT: qkv(x).reshape(B, N, 3, H, C // H).permute(2, 0, 3, 1, 4).unbind(0), (q @ k.transpose(-2, -1)) * scale, .softmax(dim=-1), nn.GELU(approximate='tanh'), LayerScale, x[:, 1:].mean(dim=1) pooling",
    (1, 3, 32, 32),
    dynamic="batch",
    note=_FIXED_TOKENS,
)
class ViTTimm(nn.Module):
    def __init__(self, img_size=32, patch_size=4, embed_dim=96, depth=4, num_heads=3, num_classes=10):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, embed_dim, patch_size, patch_size)
        num_patches = (img_size // patch_size) ** 2
        self.cls_token = nn.Parameter(torch.randn(1, 1, embed_dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, num_patches + 1, embed_dim) * 0.02)
        self.blocks = nn.Sequential(*[TimmBlock(embed_dim, num_heads, mlp_ratio=2.0) for _ in range(depth)])
        self.norm = nn.LayerNorm(embed_dim)
        self.fc_norm = nn.Identity()
        self.head = nn.Linear(embed_dim, num_classes)

    def forward_features(self, x):
        x = self.patch_embed(x)
        x = x.flatten(2).transpose(1, 2)  # NCHW -> NLC
        x = torch.cat((self.cls_token.expand(x.shape[0], -1, -1), x), dim=1)
        x = x + self.pos_embed
        x = self.blocks(x)
        x = self.norm(x)
        return x

    def forward(self, x):
        x = self.forward_features(x)
        x = x[:, 1:].mean(dim=1)
        x = self.fc_norm(x)
        return self.head(x)


# --- nn.TransformerEncoder(nn.TransformerEncoderLayer(norm_first=True, gelu)), patches via Tensor.unfold -------------------------
@register(
    "vit_encoder_layer",
    "nn.TransformerEncoder of nn.TransformerEncoderLayer(batch_first=True, norm_first=True, activation='gelu'), patches via x.unfold(2, p, p).unfold(3, p, p).permute.reshape + nn.Linear, x.mean(dim=1)",
    (1, 3, 32, 32),
    dynamic="batch",
    note=_FIXED_TOKENS + "; torchscript exports it through scaled_dot_product_attention (opset 14)",
    min_opset=14,
)
class ViTEncoderLayer(nn.Module):
    def __init__(self, img_size=32, patch=4, d_model=64, nhead=4, num_layers=3, num_classes=10):
        super().__init__()
        self.patch = patch
        self.proj = nn.Linear(3 * patch * patch, d_model)
        self.pos = nn.Parameter(torch.randn(1, (img_size // patch) ** 2, d_model) * 0.02)
        layer = nn.TransformerEncoderLayer(d_model=d_model, nhead=nhead, dim_feedforward=2 * d_model, dropout=0.1, activation="gelu", batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, num_layers=num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(d_model)
        self.fc = nn.Linear(d_model, num_classes)

    def forward(self, x):
        B, C, H, W = x.shape
        p = self.patch
        patches = x.unfold(2, p, p).unfold(3, p, p)  # B, C, H/p, W/p, p, p
        patches = patches.permute(0, 2, 3, 1, 4, 5).reshape(B, -1, C * p * p)
        x = self.proj(patches) + self.pos
        x = self.encoder(x)
        return self.fc(self.norm(x).mean(dim=1))


# --- ViT with F.scaled_dot_product_attention, separate q/k/v projections, erf GELU, F.layer_norm, repeat() cls token -------
def gelu_erf(x):
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


class SDPABlock(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.dim = dim
        self.ln1_w = nn.Parameter(torch.ones(dim))
        self.ln1_b = nn.Parameter(torch.zeros(dim))
        self.ln2_w = nn.Parameter(torch.ones(dim))
        self.ln2_b = nn.Parameter(torch.zeros(dim))
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.fc1 = nn.Linear(dim, 2 * dim)
        self.fc2 = nn.Linear(2 * dim, dim)
        for p in (self.ln1_w, self.ln2_w):
            nn.init.uniform_(p, 0.5, 1.5)

    def forward(self, x):
        B, N, D = x.shape
        # (D,) from x.shape here would stop the torchscript exporter as soon as any axis is dynamic
        h = F.layer_norm(x, (self.dim,), self.ln1_w, self.ln1_b, 1e-5)
        q = self.q_proj(h).view(B, N, self.heads, D // self.heads).transpose(1, 2)
        k = self.k_proj(h).view(B, N, self.heads, D // self.heads).transpose(1, 2)
        v = self.v_proj(h).view(B, N, self.heads, D // self.heads).transpose(1, 2)
        a = F.scaled_dot_product_attention(q, k, v)
        x = x + self.out_proj(a.transpose(1, 2).reshape(B, N, D))
        h = F.layer_norm(x, (self.dim,), self.ln2_w, self.ln2_b, 1e-5)
        return x + self.fc2(gelu_erf(self.fc1(h)))


@register(
    "vit_sdpa_erf",
    "ViT with F.scaled_dot_product_attention, separate q/k/v nn.Linear + view/transpose(1, 2), GELU written as 0.5 * x * (1 + erf(x / sqrt(2))), F.layer_norm with own params, cls via .repeat(B, 1, 1), 48x48 / patch 6",
    (1, 3, 48, 48),
    dynamic="batch",
    min_opset=14,
    note=_FIXED_TOKENS + "; torchscript exports scaled_dot_product_attention from opset 14",
)
class ViTSDPA(nn.Module):
    def __init__(self, img=48, patch=6, dim=128, depth=2, heads=4, num_classes=10):
        super().__init__()
        self.to_patch = nn.Conv2d(3, dim, patch, patch)
        self.cls = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos = nn.Parameter(torch.randn(1, (img // patch) ** 2 + 1, dim) * 0.02)
        self.blocks = nn.ModuleList([SDPABlock(dim, heads) for _ in range(depth)])
        self.head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, img):
        x = self.to_patch(img)
        B = x.size(0)
        x = x.reshape(B, x.size(1), -1).permute(0, 2, 1)
        x = torch.cat([self.cls.repeat(B, 1, 1), x], dim=1) + self.pos
        for blk in self.blocks:
            x = blk(x)
        return self.head(x[:, 0])


# --- lucidrains vit-pytorch style with the einops parts written out: PreNorm, chunk(3, dim=-1), torch.einsum attention ----------
class PreNorm(nn.Module):
    def __init__(self, dim, fn):
        super().__init__()
        self.norm = nn.LayerNorm(dim)
        self.fn = fn

    def forward(self, x, **kwargs):
        return self.fn(self.norm(x), **kwargs)


class FeedForward(nn.Module):
    def __init__(self, dim, hidden_dim, dropout=0.0):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim, hidden_dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(hidden_dim, dim), nn.Dropout(dropout))

    def forward(self, x):
        return self.net(x)


class EinsumAttention(nn.Module):
    def __init__(self, dim, heads=8, dim_head=64, dropout=0.0):
        super().__init__()
        inner_dim = dim_head * heads
        project_out = not (heads == 1 and dim_head == dim)
        self.heads = heads
        self.scale = dim_head**-0.5
        self.attend = nn.Softmax(dim=-1)
        self.to_qkv = nn.Linear(dim, inner_dim * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner_dim, dim), nn.Dropout(dropout)) if project_out else nn.Identity()

    def forward(self, x):
        b, n, _ = x.shape
        h = self.heads
        qkv = self.to_qkv(x).chunk(3, dim=-1)
        q, k, v = (t.reshape(b, n, h, -1).transpose(1, 2) for t in qkv)  # rearrange 'b n (h d) -> b h n d'
        dots = torch.einsum("bhid,bhjd->bhij", q, k) * self.scale
        attn = self.attend(dots)
        out = torch.einsum("bhij,bhjd->bhid", attn, v)
        out = out.transpose(1, 2).reshape(b, n, -1)  # rearrange 'b h n d -> b n (h d)'
        return self.to_out(out)


@register(
    "vit_einsum",
    "vit-pytorch style: patchify by reshape/permute + LayerNorm-Linear-LayerNorm, PreNorm wrapper, to_qkv(x).chunk(3, dim=-1), torch.einsum('bhid,bhjd->bhij') attention, pos_embedding[:, :(n + 1)] slice, x[:, 0] pooling",
    (1, 3, 32, 32),
    dynamic="batch",
    min_opset=12,
    note=_FIXED_TOKENS + "; torchscript exports einsum from opset 12",
)
class ViTEinsum(nn.Module):
    def __init__(self, image_size=32, patch_size=4, num_classes=10, dim=64, depth=3, heads=4, dim_head=16, mlp_dim=128):
        super().__init__()
        num_patches = (image_size // patch_size) ** 2
        patch_dim = 3 * patch_size * patch_size
        self.p = patch_size
        self.patch_norm1 = nn.LayerNorm(patch_dim)
        self.patch_linear = nn.Linear(patch_dim, dim)
        self.patch_norm2 = nn.LayerNorm(dim)
        self.pos_embedding = nn.Parameter(torch.randn(1, num_patches + 1, dim))
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim))
        self.layers = nn.ModuleList(
            [nn.ModuleList([PreNorm(dim, EinsumAttention(dim, heads=heads, dim_head=dim_head)), PreNorm(dim, FeedForward(dim, mlp_dim))]) for _ in range(depth)]
        )
        self.mlp_head = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, num_classes))

    def forward(self, img):
        b, c, hh, ww = img.shape
        p = self.p
        # rearrange 'b c (h p1) (w p2) -> b (h w) (p1 p2 c)'
        x = img.reshape(b, c, hh // p, p, ww // p, p).permute(0, 2, 4, 3, 5, 1).reshape(b, (hh // p) * (ww // p), p * p * c)
        x = self.patch_norm2(self.patch_linear(self.patch_norm1(x)))
        b, n, _ = x.shape
        cls_tokens = self.cls_token.expand(b, -1, -1)
        x = torch.cat((cls_tokens, x), dim=1)
        x += self.pos_embedding[:, : (n + 1)]
        for attn, ff in self.layers:
            x = attn(x) + x
            x = ff(x) + x
        return self.mlp_head(x[:, 0])


# --- MobileViT: MV2 blocks + local conv, unfold to patches with reshape/permute, transformer on 4-D tensors, fold back, concat -----
class MV2Block(nn.Module):
    def __init__(self, inp, oup, stride=1, expansion=2):
        super().__init__()
        hidden_dim = int(inp * expansion)
        self.use_res_connect = stride == 1 and inp == oup
        self.conv = nn.Sequential(
            nn.Conv2d(inp, hidden_dim, 1, 1, 0, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.SiLU(),
            nn.Conv2d(hidden_dim, hidden_dim, 3, stride, 1, groups=hidden_dim, bias=False),
            nn.BatchNorm2d(hidden_dim),
            nn.SiLU(),
            nn.Conv2d(hidden_dim, oup, 1, 1, 0, bias=False),
            nn.BatchNorm2d(oup),
        )

    def forward(self, x):
        if self.use_res_connect:
            return x + self.conv(x)
        return self.conv(x)


class Attention4D(nn.Module):
    """Attention over the last two dims of a (b, patch_pixels, n, d) tensor: 5-D matmuls."""

    def __init__(self, dim, heads=4, dim_head=8):
        super().__init__()
        inner = heads * dim_head
        self.heads = heads
        self.scale = dim_head**-0.5
        self.attend = nn.Softmax(dim=-1)
        self.to_qkv = nn.Linear(dim, inner * 3, bias=False)
        self.to_out = nn.Sequential(nn.Linear(inner, dim), nn.Dropout(0.0))

    def forward(self, x):
        b, p, n, _ = x.shape
        q, k, v = (t.reshape(b, p, n, self.heads, -1).transpose(2, 3) for t in self.to_qkv(x).chunk(3, dim=-1))
        dots = torch.matmul(q, k.transpose(-1, -2)) * self.scale
        attn = self.attend(dots)
        out = torch.matmul(attn, v)
        out = out.transpose(2, 3).reshape(b, p, n, -1)
        return self.to_out(out)


class MobileViTBlock(nn.Module):
    def __init__(self, dim, depth, channel, kernel_size, patch_size, mlp_dim):
        super().__init__()
        self.ph, self.pw = patch_size
        self.conv1 = nn.Sequential(nn.Conv2d(channel, channel, kernel_size, 1, kernel_size // 2, bias=False), nn.BatchNorm2d(channel), nn.SiLU())
        self.conv2 = nn.Sequential(nn.Conv2d(channel, dim, 1, 1, 0, bias=False), nn.BatchNorm2d(dim), nn.SiLU())
        self.transformer = nn.ModuleList(
            [nn.ModuleList([PreNorm(dim, Attention4D(dim, 4, 8)), PreNorm(dim, FeedForward(dim, mlp_dim))]) for _ in range(depth)]
        )
        self.conv3 = nn.Sequential(nn.Conv2d(dim, channel, 1, 1, 0, bias=False), nn.BatchNorm2d(channel), nn.SiLU())
        self.conv4 = nn.Sequential(nn.Conv2d(2 * channel, channel, kernel_size, 1, kernel_size // 2, bias=False), nn.BatchNorm2d(channel), nn.SiLU())

    def forward(self, x):
        y = x.clone()
        x = self.conv1(x)
        x = self.conv2(x)
        # global representations: 'b d (h ph) (w pw) -> b (ph pw) (h w) d'
        b, d, h, w = x.shape
        ph, pw = self.ph, self.pw
        x = x.reshape(b, d, h // ph, ph, w // pw, pw).permute(0, 3, 5, 2, 4, 1).reshape(b, ph * pw, (h // ph) * (w // pw), d)
        for attn, ff in self.transformer:
            x = attn(x) + x
            x = ff(x) + x
        # 'b (ph pw) (h w) d -> b d (h ph) (w pw)'
        x = x.reshape(b, ph, pw, h // ph, w // pw, d).permute(0, 5, 3, 1, 4, 2).reshape(b, d, h, w)
        x = self.conv3(x)
        x = torch.cat((x, y), 1)
        x = self.conv4(x)
        return x


@register(
    "mobilevit_xxs_lite",
    "MobileViT: MV2 blocks (nn.SiLU), local 3x3 + 1x1 convs, unfold 'b d (h ph) (w pw) -> b (ph pw) (h w) d' via reshape/permute from x.shape, attention with 5-D torch.matmul, fold back, x.clone() + cat, nn.AvgPool2d(kernel of last map)",
    (1, 3, 64, 64),
    dynamic="batch",
    note="nn.AvgPool2d(2) global pool sized for the 64x64 input (like the reference code's AvgPool2d(ih // 32))",
)
class MobileViTLite(nn.Module):
    def __init__(self, image_size=64, num_classes=100):
        super().__init__()
        dims, channels = [48, 64], [16, 16, 24, 24, 48, 64, 256]
        self.conv1 = nn.Sequential(nn.Conv2d(3, channels[0], 3, 2, 1, bias=False), nn.BatchNorm2d(channels[0]), nn.SiLU())
        self.mv2 = nn.ModuleList(
            [
                MV2Block(channels[0], channels[1], 1),
                MV2Block(channels[1], channels[2], 2),
                MV2Block(channels[2], channels[3], 1),
                MV2Block(channels[3], channels[4], 2),
                MV2Block(channels[4], channels[5], 2),
            ]
        )
        self.mvit = nn.ModuleList([MobileViTBlock(dims[0], 2, channels[4], 3, (2, 2), dims[0] * 2), MobileViTBlock(dims[1], 2, channels[5], 3, (2, 2), dims[1] * 2)])
        self.conv2 = nn.Sequential(nn.Conv2d(channels[5], channels[6], 1, 1, 0, bias=False), nn.BatchNorm2d(channels[6]), nn.SiLU())
        self.pool = nn.AvgPool2d(image_size // 32, 1)
        self.fc = nn.Linear(channels[6], num_classes, bias=False)

    def forward(self, x):
        x = self.conv1(x)
        x = self.mv2[0](x)
        x = self.mv2[1](x)
        x = self.mv2[2](x)
        x = self.mv2[3](x)  # 8x8
        x = self.mvit[0](x)
        x = self.mv2[4](x)  # 4x4
        x = self.mvit[1](x)
        x = self.conv2(x)
        x = self.pool(x).view(-1, x.shape[1])
        x = self.fc(x)
        return x


# --- EfficientFormer: Meta4D (pool(x) - x token mixer, 1x1-conv MLP with BN), then Flat + Meta3D with attention biases ---------
class Pooling(nn.Module):
    def __init__(self, pool_size=3):
        super().__init__()
        self.pool = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2, count_include_pad=False)

    def forward(self, x):
        return self.pool(x) - x


class ConvMlp(nn.Module):
    def __init__(self, in_features, hidden_features):
        super().__init__()
        self.fc1 = nn.Conv2d(in_features, hidden_features, 1)
        self.act = nn.GELU()
        self.fc2 = nn.Conv2d(hidden_features, in_features, 1)
        self.norm1 = nn.BatchNorm2d(hidden_features)
        self.norm2 = nn.BatchNorm2d(in_features)

    def forward(self, x):
        x = self.act(self.norm1(self.fc1(x)))
        return self.norm2(self.fc2(x))


class Meta4D(nn.Module):
    def __init__(self, dim, pool_size=3, mlp_ratio=4.0, layer_scale_init_value=0.1):
        super().__init__()
        self.token_mixer = Pooling(pool_size=pool_size)
        self.mlp = ConvMlp(dim, int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim), requires_grad=True)
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim), requires_grad=True)

    def forward(self, x):
        x = x + self.layer_scale_1.unsqueeze(-1).unsqueeze(-1) * self.token_mixer(x)
        x = x + self.layer_scale_2.unsqueeze(-1).unsqueeze(-1) * self.mlp(x)
        return x


class BiasAttention(nn.Module):
    def __init__(self, dim=96, key_dim=16, num_heads=4, attn_ratio=2, resolution=4):
        super().__init__()
        self.num_heads = num_heads
        self.scale = key_dim**-0.5
        self.key_dim = key_dim
        self.nh_kd = nh_kd = key_dim * num_heads
        self.d = int(attn_ratio * key_dim)
        self.dh = int(attn_ratio * key_dim) * num_heads
        h = self.dh + nh_kd * 2
        self.qkv = nn.Linear(dim, h)
        self.proj = nn.Linear(self.dh, dim)
        points = list(itertools.product(range(resolution), range(resolution)))
        N = len(points)
        attention_offsets: dict[tuple[int, int], int] = {}
        idxs = []
        for p1 in points:
            for p2 in points:
                offset = (abs(p1[0] - p2[0]), abs(p1[1] - p2[1]))
                if offset not in attention_offsets:
                    attention_offsets[offset] = len(attention_offsets)
                idxs.append(attention_offsets[offset])
        self.attention_biases = nn.Parameter(torch.randn(num_heads, len(attention_offsets)) * 0.5)
        self.register_buffer("attention_bias_idxs", torch.LongTensor(idxs).view(N, N))

    def forward(self, x):  # x (B,N,C)
        B, N, C = x.shape
        qkv = self.qkv(x)
        q, k, v = qkv.reshape(B, N, self.num_heads, -1).permute(0, 2, 1, 3).split([self.key_dim, self.key_dim, self.d], dim=3)
        attn = (q @ k.transpose(-2, -1)) * self.scale + self.attention_biases[:, self.attention_bias_idxs]
        attn = attn.softmax(dim=-1)
        x = (attn @ v).transpose(1, 2).reshape(B, N, self.dh)
        x = self.proj(x)
        return x


class Meta3D(nn.Module):
    def __init__(self, dim, mlp_ratio=4.0, layer_scale_init_value=0.1, resolution=4):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim)
        self.token_mixer = BiasAttention(dim, resolution=resolution)
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))
        self.layer_scale_1 = nn.Parameter(layer_scale_init_value * torch.ones(dim), requires_grad=True)
        self.layer_scale_2 = nn.Parameter(layer_scale_init_value * torch.ones(dim), requires_grad=True)

    def forward(self, x):
        x = x + self.layer_scale_1 * self.token_mixer(self.norm1(x))
        x = x + self.layer_scale_2 * self.mlp(self.norm2(x))
        return x


class Flat(nn.Module):
    def forward(self, x):
        x = x.flatten(2).transpose(1, 2)
        return x


@register(
    "efficientformer_lite",
    "EfficientFormer: Meta4D blocks (AvgPool2d(3, 1, 1, count_include_pad=False)(x) - x mixer, 1x1-conv+BN MLP, layer_scale.unsqueeze(-1).unsqueeze(-1)), Flat, Meta3D attention with split([kd, kd, d]) and attention_biases[:, idxs] gather",
    (1, 3, 64, 64),
    dynamic="batch",
    note="attention biases are indexed for a 4x4 token grid",
)
class EfficientFormerLite(nn.Module):
    def __init__(self, dims=(24, 48, 96), num_classes=100):
        super().__init__()
        self.stem = nn.Sequential(
            nn.Conv2d(3, dims[0] // 2, 3, 2, 1), nn.BatchNorm2d(dims[0] // 2), nn.ReLU(), nn.Conv2d(dims[0] // 2, dims[0], 3, 2, 1), nn.BatchNorm2d(dims[0]), nn.ReLU()
        )  # 16x16
        self.network = nn.ModuleList(
            [
                nn.Sequential(Meta4D(dims[0]), Meta4D(dims[0])),
                nn.Sequential(nn.Conv2d(dims[0], dims[1], 3, 2, 1), nn.BatchNorm2d(dims[1])),  # Embedding, 8x8
                Meta4D(dims[1]),
                nn.Sequential(nn.Conv2d(dims[1], dims[2], 3, 2, 1), nn.BatchNorm2d(dims[2])),  # 4x4
                Meta4D(dims[2]),
                Flat(),
                Meta3D(dims[2]),
                Meta3D(dims[2]),
            ]
        )
        self.norm = nn.LayerNorm(dims[2])
        self.head = nn.Linear(dims[2], num_classes)

    def forward(self, x):
        x = self.stem(x)
        for block in self.network:
            x = block(x)
        x = self.norm(x)
        return self.head(x.mean(-2))


# --- ConvNeXt (official code): dwconv 7x7, permute to channels-last LayerNorm + Linear MLP, gamma, custom channels_first LN ----
class LayerNorm(nn.Module):
    r"""LayerNorm that supports two data formats: channels_last (default) or channels_first."""

    def __init__(self, normalized_shape, eps=1e-6, data_format="channels_last"):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(normalized_shape))
        self.bias = nn.Parameter(torch.zeros(normalized_shape))
        self.eps = eps
        self.data_format = data_format
        if self.data_format not in ["channels_last", "channels_first"]:
            raise NotImplementedError
        self.normalized_shape = (normalized_shape,)

    def forward(self, x):
        if self.data_format == "channels_last":
            return F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        elif self.data_format == "channels_first":
            u = x.mean(1, keepdim=True)
            s = (x - u).pow(2).mean(1, keepdim=True)
            x = (x - u) / torch.sqrt(s + self.eps)
            x = self.weight[:, None, None] * x + self.bias[:, None, None]
            return x


class ConvNeXtBlock(nn.Module):
    def __init__(self, dim, layer_scale_init_value=0.1):
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.gamma = nn.Parameter(layer_scale_init_value * torch.ones(dim), requires_grad=True) if layer_scale_init_value > 0 else None
        self.drop_path = nn.Identity()

    def forward(self, x):
        input = x
        x = self.dwconv(x)
        x = x.permute(0, 2, 3, 1)  # (N, C, H, W) -> (N, H, W, C)
        x = self.norm(x)
        x = self.pwconv1(x)
        x = self.act(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = self.gamma * x
        x = x.permute(0, 3, 1, 2)  # (N, H, W, C) -> (N, C, H, W)
        x = input + self.drop_path(x)
        return x


@register(
    "convnext_lite",
    "ConvNeXt: 4x4/4 stem + channels_first LayerNorm written out (mean, (x - u).pow(2).mean, / torch.sqrt(s + eps), weight[:, None, None]), dwconv 7x7, permute(0, 2, 3, 1) + F.layer_norm + Linear MLP + gamma, x.mean([-2, -1])",
    (1, 3, 96, 96),
)
class ConvNeXtLite(nn.Module):
    def __init__(self, in_chans=3, num_classes=100, depths=(1, 1, 2, 1), dims=(24, 48, 96, 192)):
        super().__init__()
        self.downsample_layers = nn.ModuleList()
        stem = nn.Sequential(nn.Conv2d(in_chans, dims[0], kernel_size=4, stride=4), LayerNorm(dims[0], eps=1e-6, data_format="channels_first"))
        self.downsample_layers.append(stem)
        for i in range(3):
            downsample_layer = nn.Sequential(
                LayerNorm(dims[i], eps=1e-6, data_format="channels_first"), nn.Conv2d(dims[i], dims[i + 1], kernel_size=2, stride=2)
            )
            self.downsample_layers.append(downsample_layer)
        self.stages = nn.ModuleList()
        for i in range(4):
            self.stages.append(nn.Sequential(*[ConvNeXtBlock(dim=dims[i]) for _ in range(depths[i])]))
        self.norm = nn.LayerNorm(dims[-1], eps=1e-6)
        self.head = nn.Linear(dims[-1], num_classes)
        for lnf in self.modules():
            if isinstance(lnf, LayerNorm):
                with torch.no_grad():
                    lnf.weight.uniform_(0.5, 1.5)
                    lnf.bias.normal_(0.0, 0.1)

    def forward_features(self, x):
        for i in range(4):
            x = self.downsample_layers[i](x)
            x = self.stages[i](x)
        return self.norm(x.mean([-2, -1]))  # global average pooling, (N, C, H, W) -> (N, C)

    def forward(self, x):
        x = self.forward_features(x)
        x = self.head(x)
        return x


# --- ConvNeXt-V2-ish, channels-first throughout: LayerNorm2d via permute + F.layer_norm + permute, 1x1-conv MLP, GRN with torch.norm
class LayerNorm2d(nn.LayerNorm):
    def forward(self, x):
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)
        x = x.permute(0, 3, 1, 2)
        return x


class GRN(nn.Module):
    """Global response normalization, channels-first."""

    def __init__(self, dim):
        super().__init__()
        self.gamma = nn.Parameter(torch.randn(1, dim, 1, 1) * 0.2)
        self.beta = nn.Parameter(torch.randn(1, dim, 1, 1) * 0.1)

    def forward(self, x):
        Gx = torch.norm(x, p=2, dim=(2, 3), keepdim=True)
        Nx = Gx / (Gx.mean(dim=1, keepdim=True) + 1e-6)
        return self.gamma * (x * Nx) + self.beta + x


class ConvNeXtV2Block(nn.Module):
    def __init__(self, dim):
        super().__init__()
        self.conv_dw = nn.Conv2d(dim, dim, 7, padding=3, groups=dim)
        self.norm = LayerNorm2d(dim, eps=1e-6)
        self.fc1 = nn.Conv2d(dim, 4 * dim, 1)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim)
        self.fc2 = nn.Conv2d(4 * dim, dim, 1)

    def forward(self, x):
        shortcut = x
        x = self.fc2(self.grn(self.act(self.fc1(self.norm(self.conv_dw(x))))))
        return x + shortcut


@register(
    "convnextv2_grn",
    "ConvNeXt-V2-ish channels-first: LayerNorm2d(nn.LayerNorm) = permute + F.layer_norm + permute, 1x1-conv MLP, GRN with torch.norm(x, p=2, dim=(2, 3), keepdim=True), F.adaptive_avg_pool2d(x, 1).flatten(1)",
    (1, 3, 64, 64),
)
class ConvNeXtV2GRN(nn.Module):
    def __init__(self, dims=(32, 64, 128), depths=(1, 2, 1), num_classes=100):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, dims[0], 4, 4), LayerNorm2d(dims[0], eps=1e-6))
        stages = []
        for i, (d, n) in enumerate(zip(dims, depths, strict=True)):
            if i > 0:
                stages.append(nn.Sequential(LayerNorm2d(dims[i - 1], eps=1e-6), nn.Conv2d(dims[i - 1], d, 2, 2)))
            stages += [ConvNeXtV2Block(d) for _ in range(n)]
        self.stages = nn.Sequential(*stages)
        self.head_norm = nn.LayerNorm(dims[-1])
        self.head = nn.Linear(dims[-1], num_classes)

    def forward(self, x):
        x = self.stages(self.stem(x))
        x = F.adaptive_avg_pool2d(x, 1).flatten(1)
        return self.head(self.head_norm(x))


# --- Swin-lite: window partition/reverse via view/permute, torch.roll shifted windows + mask, relative position bias table -------
def window_partition(x, window_size):
    B, H, W, C = x.shape
    x = x.view(B, H // window_size, window_size, W // window_size, window_size, C)
    windows = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(-1, window_size, window_size, C)
    return windows


def window_reverse(windows, window_size, H, W):
    B = windows.shape[0] // ((H // window_size) * (W // window_size))
    x = windows.view(B, H // window_size, W // window_size, window_size, window_size, -1)
    x = x.permute(0, 1, 3, 2, 4, 5).contiguous().view(B, H, W, -1)
    return x


class WindowAttention(nn.Module):
    def __init__(self, dim, window_size, num_heads, qkv_bias=True):
        super().__init__()
        self.dim = dim
        self.window_size = window_size  # Wh, Ww
        self.num_heads = num_heads
        head_dim = dim // num_heads
        self.scale = head_dim**-0.5
        self.relative_position_bias_table = nn.Parameter(torch.zeros((2 * window_size[0] - 1) * (2 * window_size[1] - 1), num_heads))
        coords_h = torch.arange(self.window_size[0])
        coords_w = torch.arange(self.window_size[1])
        coords = torch.stack(torch.meshgrid([coords_h, coords_w], indexing="ij"))  # 2, Wh, Ww
        coords_flatten = torch.flatten(coords, 1)  # 2, Wh*Ww
        relative_coords = coords_flatten[:, :, None] - coords_flatten[:, None, :]  # 2, Wh*Ww, Wh*Ww
        relative_coords = relative_coords.permute(1, 2, 0).contiguous()  # Wh*Ww, Wh*Ww, 2
        relative_coords[:, :, 0] += self.window_size[0] - 1  # shift to start from 0
        relative_coords[:, :, 1] += self.window_size[1] - 1
        relative_coords[:, :, 0] *= 2 * self.window_size[1] - 1
        relative_position_index = relative_coords.sum(-1)  # Wh*Ww, Wh*Ww
        self.register_buffer("relative_position_index", relative_position_index)
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.5)
        self.softmax = nn.Softmax(dim=-1)

    def forward(self, x, mask=None):
        B_, N, C = x.shape
        qkv = self.qkv(x).reshape(B_, N, 3, self.num_heads, C // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]  # make torchscript happy (cannot use tensor as tuple)
        q = q * self.scale
        attn = q @ k.transpose(-2, -1)
        relative_position_bias = self.relative_position_bias_table[self.relative_position_index.view(-1)].view(
            self.window_size[0] * self.window_size[1], self.window_size[0] * self.window_size[1], -1
        )  # Wh*Ww,Wh*Ww,nH
        relative_position_bias = relative_position_bias.permute(2, 0, 1).contiguous()  # nH, Wh*Ww, Wh*Ww
        attn = attn + relative_position_bias.unsqueeze(0)
        if mask is not None:
            nW = mask.shape[0]
            attn = attn.view(B_ // nW, nW, self.num_heads, N, N) + mask.unsqueeze(1).unsqueeze(0)
            attn = attn.view(-1, self.num_heads, N, N)
            attn = self.softmax(attn)
        else:
            attn = self.softmax(attn)
        x = (attn @ v).transpose(1, 2).reshape(B_, N, C)
        x = self.proj(x)
        return x


class SwinTransformerBlock(nn.Module):
    def __init__(self, dim, input_resolution, num_heads, window_size=4, shift_size=0, mlp_ratio=4.0):
        super().__init__()
        self.dim = dim
        self.input_resolution = input_resolution
        self.num_heads = num_heads
        self.window_size = window_size
        self.shift_size = shift_size
        self.norm1 = nn.LayerNorm(dim)
        self.attn = WindowAttention(dim, window_size=(self.window_size, self.window_size), num_heads=num_heads)
        self.drop_path = nn.Identity()
        self.norm2 = nn.LayerNorm(dim)
        self.mlp = Mlp(in_features=dim, hidden_features=int(dim * mlp_ratio))
        if self.shift_size > 0:
            # calculate attention mask for SW-MSA
            H, W = self.input_resolution
            img_mask = torch.zeros((1, H, W, 1))  # 1 H W 1
            h_slices = (slice(0, -self.window_size), slice(-self.window_size, -self.shift_size), slice(-self.shift_size, None))
            w_slices = (slice(0, -self.window_size), slice(-self.window_size, -self.shift_size), slice(-self.shift_size, None))
            cnt = 0
            for h in h_slices:
                for w in w_slices:
                    img_mask[:, h, w, :] = cnt
                    cnt += 1
            mask_windows = window_partition(img_mask, self.window_size)  # nW, window_size, window_size, 1
            mask_windows = mask_windows.view(-1, self.window_size * self.window_size)
            attn_mask = mask_windows.unsqueeze(1) - mask_windows.unsqueeze(2)
            attn_mask = attn_mask.masked_fill(attn_mask != 0, -100.0).masked_fill(attn_mask == 0, 0.0)
        else:
            attn_mask = None
        self.register_buffer("attn_mask", attn_mask)

    def forward(self, x):
        H, W = self.input_resolution
        B, L, C = x.shape
        assert L == H * W, "input feature has wrong size"
        shortcut = x
        x = self.norm1(x)
        x = x.view(B, H, W, C)
        if self.shift_size > 0:
            shifted_x = torch.roll(x, shifts=(-self.shift_size, -self.shift_size), dims=(1, 2))
        else:
            shifted_x = x
        x_windows = window_partition(shifted_x, self.window_size)  # nW*B, window_size, window_size, C
        x_windows = x_windows.view(-1, self.window_size * self.window_size, C)  # nW*B, window_size*window_size, C
        attn_windows = self.attn(x_windows, mask=self.attn_mask)  # nW*B, window_size*window_size, C
        attn_windows = attn_windows.view(-1, self.window_size, self.window_size, C)
        shifted_x = window_reverse(attn_windows, self.window_size, H, W)  # B H' W' C
        if self.shift_size > 0:
            x = torch.roll(shifted_x, shifts=(self.shift_size, self.shift_size), dims=(1, 2))
        else:
            x = shifted_x
        x = x.view(B, H * W, C)
        x = shortcut + self.drop_path(x)
        x = x + self.drop_path(self.mlp(self.norm2(x)))
        return x


class PatchMerging(nn.Module):
    def __init__(self, input_resolution, dim):
        super().__init__()
        self.input_resolution = input_resolution
        self.dim = dim
        self.reduction = nn.Linear(4 * dim, 2 * dim, bias=False)
        self.norm = nn.LayerNorm(4 * dim)

    def forward(self, x):
        H, W = self.input_resolution
        B, L, C = x.shape
        x = x.view(B, H, W, C)
        x0 = x[:, 0::2, 0::2, :]  # B H/2 W/2 C
        x1 = x[:, 1::2, 0::2, :]  # B H/2 W/2 C
        x2 = x[:, 0::2, 1::2, :]  # B H/2 W/2 C
        x3 = x[:, 1::2, 1::2, :]  # B H/2 W/2 C
        x = torch.cat([x0, x1, x2, x3], -1)  # B H/2 W/2 4*C
        x = x.view(B, -1, 4 * C)  # B H/2*W/2 4*C
        x = self.norm(x)
        x = self.reduction(x)
        return x


@register(
    "swin_lite",
    "Swin: conv patch embed + LayerNorm, window_partition/window_reverse via view/permute/contiguous, torch.roll shifted windows + -100 attention mask buffer, relative_position_bias_table[index.view(-1)], PatchMerging x[:, 0::2, 0::2, :] + cat(-1), nn.AdaptiveAvgPool1d(1)",
    (1, 3, 64, 64),
    dynamic="batch",
    note="input_resolution and the shifted-window mask are fixed at construction",
)
class SwinLite(nn.Module):
    def __init__(self, img_size=64, patch_size=4, embed_dim=32, depths=(2, 2), num_heads=(2, 4), window_size=4, num_classes=100):
        super().__init__()
        self.patch_embed = nn.Conv2d(3, embed_dim, kernel_size=patch_size, stride=patch_size)
        self.patch_norm = nn.LayerNorm(embed_dim)
        res = img_size // patch_size
        self.layers = nn.ModuleList()
        dim = embed_dim
        for i_layer, (depth, heads) in enumerate(zip(depths, num_heads, strict=True)):
            blocks = [
                SwinTransformerBlock(dim, (res, res), heads, window_size=window_size, shift_size=0 if (i % 2 == 0) else window_size // 2)
                for i in range(depth)
            ]
            if i_layer < len(depths) - 1:
                blocks.append(PatchMerging((res, res), dim))
                dim *= 2
                res //= 2
            self.layers.append(nn.Sequential(*blocks))
        self.norm = nn.LayerNorm(dim)
        self.avgpool = nn.AdaptiveAvgPool1d(1)
        self.head = nn.Linear(dim, num_classes)

    def forward(self, x):
        x = self.patch_embed(x).flatten(2).transpose(1, 2)  # B Ph*Pw C
        x = self.patch_norm(x)
        for layer in self.layers:
            x = layer(x)
        x = self.norm(x)  # B L C
        x = self.avgpool(x.transpose(1, 2))  # B C 1
        x = torch.flatten(x, 1)
        return self.head(x)


# --- MLP-Mixer: token mixing as Linear on x.transpose(1, 2), channel mixing MLP, patches via conv + permute/reshape -----------
class Transpose(nn.Module):
    def forward(self, x):
        return x.transpose(1, 2)


class MixerBlock(nn.Module):
    def __init__(self, dim, num_patch, token_dim, channel_dim, dropout=0.0):
        super().__init__()
        self.token_mix = nn.Sequential(nn.LayerNorm(dim), Transpose(), FeedForward(num_patch, token_dim, dropout), Transpose())
        self.channel_mix = nn.Sequential(nn.LayerNorm(dim), FeedForward(dim, channel_dim, dropout))

    def forward(self, x):
        x = x + self.token_mix(x)
        x = x + self.channel_mix(x)
        return x


@register(
    "mlp_mixer_tiny",
    "MLP-Mixer: conv patch embed + permute(0, 2, 3, 1).reshape(b, -1, c), token-mixing MLP as nn.Linear between two x.transpose(1, 2) modules, channel MLP, x.mean(dim=1)",
    (1, 3, 32, 32),
    dynamic="batch",
    note="token-mixing Linear layers are sized for 64 patches",
)
class MLPMixerTiny(nn.Module):
    def __init__(self, in_channels=3, dim=64, num_classes=10, patch_size=4, image_size=32, depth=4, token_dim=32, channel_dim=256):
        super().__init__()
        self.num_patch = (image_size // patch_size) ** 2
        self.to_patch_embedding = nn.Conv2d(in_channels, dim, patch_size, patch_size)
        self.mixer_blocks = nn.ModuleList([MixerBlock(dim, self.num_patch, token_dim, channel_dim) for _ in range(depth)])
        self.layer_norm = nn.LayerNorm(dim)
        self.mlp_head = nn.Sequential(nn.Linear(dim, num_classes))

    def forward(self, x):
        x = self.to_patch_embedding(x)
        b, c, _, _ = x.shape
        x = x.permute(0, 2, 3, 1).reshape(b, -1, c)
        for mixer_block in self.mixer_blocks:
            x = mixer_block(x)
        x = self.layer_norm(x)
        x = x.mean(dim=1)
        return self.mlp_head(x)
