"""2-D convolutions (dense, grouped and depthwise), NCHW, with their fused epilogues."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tvm
from tvm.relax import op as R

from edgelat.ops._common import (
    BN,
    CONV_EPILOGUES,
    SPATIAL,
    Config,
    choice,
    log_uniform_int,
    loop_features,
    perturb,
    pick_seed,
    size_features,
    twos,
)
from edgelat.ops.epilogue import EpilogueBuilder, match_epilogue, rescale_broadcast
from edgelat.ops.lowering import FusedGroup
from edgelat.ops.registry import OpSpec, register_op

# Untuned TVM runs a few GFLOP/s on a CPU: cap what sampling draws so a kernel stays under a
# second or so. Neighbours of real-network kernels may go higher (VGG's convs are ~2 GFLOP),
# since trees do not extrapolate beyond what they were trained on.
MAX_SAMPLED_FLOPS = 6e8
MAX_SEEDED_FLOPS = 3e9


def out_size(size: int, k: int, stride: int, pad: int, dilation: int) -> int:
    return (size + 2 * pad - dilation * (k - 1) - 1) // stride + 1


@register_op("conv2d", depthwise=False, sample_weight=4.0, description="2-D convolution (dense or grouped), NCHW, + fused epilogue")
@register_op("dwconv2d", depthwise=True, sample_weight=3.0, description="depthwise 2-D convolution, NCHW, + fused epilogue")
class Conv2d(OpSpec):
    params = ("n", "cin", "h", "w", "cout", "k", "stride", "pad", "groups", "dilation", "epilogue")
    epilogues = tuple(dict.fromkeys(CONV_EPILOGUES))
    depthwise: bool = False

    def adapt_group(self, cfg: Mapping[str, Any]) -> str:
        """By kernel size and grouping (``conv2d_k1``, ``conv2d_k3_g``, ``dwconv2d_k5``): devices differ most there."""
        return f"{self.name}_k{cfg.get('k')}" + ("_g" if not self.depthwise and cfg.get("groups", 1) > 1 else "")

    def pruned(self, cfg: Mapping[str, Any], out_removed: int, in_removed: int) -> Config:
        new = dict(cfg)
        if self.depthwise:  # one channel in, one out: a removed channel goes from all three
            n = max(out_removed, in_removed)
            new.update(cin=cfg["cin"] - n, cout=cfg["cout"] - n, groups=cfg["groups"] - n)
        else:
            new.update(cout=cfg["cout"] - out_removed, cin=cfg["cin"] - in_removed)
        return new

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        for _ in range(100):
            seed = pick_seed(rng, seeds)
            cfg = self._draw(rng, seed)
            cap = MAX_SAMPLED_FLOPS if seed is None else MAX_SEEDED_FLOPS
            if self.features(cfg)["flops"] <= cap and out_size(cfg["h"], cfg["k"], cfg["stride"], cfg["pad"], cfg["dilation"]) >= 1:
                return cfg
        raise RuntimeError("could not draw a conv configuration under the FLOPs cap")  # pragma: no cover

    def _draw(self, rng: np.random.Generator, seed: Config | None) -> Config:
        if seed is not None:
            hw = perturb(rng, seed["h"], spread=0.3, lo=max(seed["k"], 2))
            if seed["h"] == seed["w"] == 1 and not self.depthwise:
                # A squeeze-excite conv runs on one pixel, and its gate (``.xN``) scales a whole map: perturb
                # the map's side, not the pixel.
                hw = 1
                seed = {**seed, "epilogue": rescale_broadcast(seed["epilogue"], lambda n: perturb(rng, math.isqrt(n), spread=0.3) ** 2)}
            if self.depthwise:
                c = perturb(rng, seed["cin"], multiple=8 if seed["cin"] >= 16 else 1)
                return {**seed, "h": hw, "w": hw, "cin": c, "cout": c, "groups": c}
            g = seed["groups"]
            cin = perturb(rng, seed["cin"] // g, multiple=8 if seed["cin"] // g >= 16 else 1) * g if seed["cin"] > 4 else seed["cin"]
            cout = perturb(rng, seed["cout"] // g, multiple=8 if seed["cout"] // g >= 16 else 1) * g
            return {**seed, "h": hw, "w": hw, "cin": cin, "cout": cout}
        hw = choice(rng, SPATIAL)
        k = choice(rng, (3, 5, 7) if self.depthwise else (1, 1, 1, 3, 3, 5, 7))
        stride = choice(rng, (1, 1, 2))
        epilogue = choice(rng, CONV_EPILOGUES)
        if self.depthwise:
            c = log_uniform_int(rng, 8, 960, 8)
            return {
                "n": 1,
                "cin": c,
                "h": hw,
                "w": hw,
                "cout": c,
                "k": k,
                "stride": stride,
                "pad": k // 2,
                "groups": c,
                "dilation": 1,
                "epilogue": epilogue,
            }
        groups = choice(rng, (1, 1, 1, 1, 2, 4))
        cin = 3 if rng.random() < 0.05 else log_uniform_int(rng, 8, 512, 8 * groups)
        cout = log_uniform_int(rng, 8, 1024, 8 * groups)
        if cin % groups:
            groups = 1
        return {
            "n": 1,
            "cin": cin,
            "h": hw,
            "w": hw,
            "cout": cout,
            "k": k,
            "stride": stride,
            "pad": k // 2,
            "groups": groups,
            "dilation": 1,
            "epilogue": epilogue,
        }

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["n"], cfg["cin"], cfg["h"], cfg["w"]), "x")
            w = b.input((cfg["cout"], cfg["cin"] // cfg["groups"], cfg["k"], cfg["k"]), "w")
            y = b.emit(R.nn.conv2d(x, w, strides=cfg["stride"], padding=cfg["pad"], dilation=cfg["dilation"], groups=cfg["groups"]))
            return b.epilogue(y, cfg["epilogue"], x_shape=(cfg["n"], cfg["cout"], *self._out_hw(cfg)), anchor_input=x)

        return EpilogueBuilder().build(body)

    @staticmethod
    def _out_hw(cfg: Mapping[str, Any]) -> tuple[int, int]:
        return (
            out_size(cfg["h"], cfg["k"], cfg["stride"], cfg["pad"], cfg["dilation"]),
            out_size(cfg["w"], cfg["k"], cfg["stride"], cfg["pad"], cfg["dilation"]),
        )

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        oh, ow = self._out_hw(cfg)
        n, cin, cout, k, g = cfg["n"], cfg["cin"], cfg["cout"], cfg["k"], cfg["groups"]
        macs = n * cout * oh * ow * (cin // g) * k * k
        out_elems = n * cout * oh * ow
        feats = size_features(
            2.0 * macs, 4.0 * n * cin * cfg["h"] * cfg["w"], 4.0 * cout * (cin // g) * k * k, 4.0 * out_elems, cfg["epilogue"], out_elems
        )
        feats.update(
            {
                "cin": cin,
                "cout": cout,
                "h": cfg["h"],
                "oh": oh,
                "k": k,
                "stride": cfg["stride"],
                "groups": g,
                "cin_per_group": cin // g,
                "cout_per_group": cout // g,
                "dilation": cfg["dilation"],
                "reduction": (cin // g) * k * k,
                "ohw": oh * ow,
                **loop_features("ow", ow),
                **loop_features("w_in", cfg["w"]),
                "twos_w": twos(cfg["w"]),
                "twos_hw": twos(cfg["h"] * cfg["w"]),
                "twos_plane": twos(cin * cfg["h"] * cfg["w"]),
                "twos_cout": twos(cout),
            }
        )
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.op != "conv2d" or len(first.args) != 2 or first.attrs is None:
            return None
        x, w = first.args
        if x is None or w is None or len(x) != 4 or w[2] != w[3]:
            return None
        a = first.attrs
        strides, dil = a["strides"], a["dilation"]
        if len(set(strides)) != 1 or len(set(dil)) != 1:
            return None
        pad = symmetric_pad(x[2:], w[2], strides[0], dil[0], a["padding"])
        if pad is None:
            return None
        groups = int(a["groups"])
        depthwise = groups == x[1] and w[0] == x[1] and groups > 1
        if depthwise != self.depthwise:
            return None
        epilogue = match_epilogue(group.calls[1:])
        if epilogue is None:
            return None
        return {
            "n": x[0],
            "cin": x[1],
            "h": x[2],
            "w": x[3],
            "cout": w[0],
            "k": w[2],
            "stride": strides[0],
            "pad": pad,
            "groups": groups,
            "dilation": dil[0],
            "epilogue": epilogue,
        }


def symmetric_pad(hw: tuple[int, ...], k: int, stride: int, dilation: int, padding: list[int]) -> int | None:
    """The symmetric padding that computes what ``padding`` does (top, left, bottom, right, or one value per side).

    TF-style "same" padding pads one side more (``F.pad(x, (0, 1, 0, 1))`` before a stride-2 conv);
    the symmetric pad with the same output size does the same work on the same window count.
    """
    pads = list(padding) * (4 // len(padding)) if len(padding) in (1, 2) else list(padding)
    if len(pads) != 4:
        return None
    if len(set(pads)) == 1:
        return pads[0]
    chosen = set()
    for size, total in ((hw[0], pads[0] + pads[2]), (hw[1], pads[1] + pads[3])):
        want = out_size(size + total, k, stride, 0, dilation)
        fits = [p for p in (total // 2, (total + 1) // 2) if out_size(size, k, stride, p, dilation) == want]
        if not fits:
            return None
        chosen.add(fits[0])
    return chosen.pop() if len(chosen) == 1 else None


def _pad_for(size: int, k: int, stride: int, before: int, after: int) -> int | None:
    """The symmetric pad of one dim that gives the output size ``before`` + ``after`` gives (None if none does)."""
    want = out_size(size + before + after, k, stride, 0, 1)
    fits = [p for p in ((before + after) // 2, (before + after + 1) // 2) if out_size(size, k, stride, p, 1) == want]
    return fits[0] if fits else None


@register_op(
    "conv2d_rect", sample_weight=1.0, description="convolution with a rectangular kernel or stride (1x7, 7x1) or 1-D (conv1d), + epilogue"
)
class Conv2dRect(OpSpec):
    """Convolutions the square kinds cannot describe; a 1-D conv (``dims`` 1) is one of height 1."""

    params = ("n", "cin", "h", "w", "cout", "kh", "kw", "sh", "sw", "ph", "pw", "groups", "dims", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        for _ in range(100):
            dims = int(rng.random() < 0.4)
            cin, cout = log_uniform_int(rng, 8, 256, 8), log_uniform_int(rng, 8, 256, 8)
            epilogue = choice(rng, ("", "add.c", "add.c+relu", "add.c+relu"))
            if dims:  # conv1d over a sequence
                k = choice(rng, (1, 3, 3, 5, 7, 9))
                cfg = {"n": 1, "cin": cin, "h": 1, "w": log_uniform_int(rng, 16, 4096), "cout": cout, "kh": 1, "kw": k, "sh": 1,
                       "sw": choice(rng, (1, 1, 2)), "ph": 0, "pw": k // 2, "groups": 1, "dims": 1, "epilogue": epilogue}  # fmt: skip
            else:  # factorised 1xk / kx1 convs
                k = choice(rng, (3, 5, 7))
                kh, kw = (1, k) if rng.random() < 0.5 else (k, 1)
                hw = choice(rng, SPATIAL[:9])
                cfg = {"n": 1, "cin": cin, "h": hw, "w": hw, "cout": cout, "kh": kh, "kw": kw, "sh": 1, "sw": 1, "ph": kh // 2,
                       "pw": kw // 2, "groups": 1, "dims": 2, "epilogue": epilogue}  # fmt: skip
            if self.features(cfg)["flops"] <= MAX_SAMPLED_FLOPS:
                return cfg
        raise RuntimeError("could not draw a rectangular conv under the FLOPs cap")  # pragma: no cover

    @staticmethod
    def _out_hw(cfg: Mapping[str, Any]) -> tuple[Any, Any]:
        return out_size(cfg["h"], cfg["kh"], cfg["sh"], cfg["ph"], 1), out_size(cfg["w"], cfg["kw"], cfg["sw"], cfg["pw"], 1)

    def emit(self, cfg: Config) -> tvm.IRModule:
        g = cfg["groups"]

        def body(b: EpilogueBuilder):  # noqa: ANN202
            if cfg["dims"] == 1:
                x = b.input((cfg["n"], cfg["cin"], cfg["w"]), "x")
                y = b.emit(
                    R.nn.conv1d(x, b.input((cfg["cout"], cfg["cin"] // g, cfg["kw"]), "w"), strides=cfg["sw"], padding=cfg["pw"], groups=g)
                )
                out: tuple[Any, ...] = (cfg["n"], cfg["cout"], self._out_hw(cfg)[1])
            else:
                x = b.input((cfg["n"], cfg["cin"], cfg["h"], cfg["w"]), "x")
                w = b.input((cfg["cout"], cfg["cin"] // g, cfg["kh"], cfg["kw"]), "w")
                y = b.emit(R.nn.conv2d(x, w, strides=(cfg["sh"], cfg["sw"]), padding=(cfg["ph"], cfg["pw"]), groups=g))
                out = (cfg["n"], cfg["cout"], *self._out_hw(cfg))
            return b.epilogue(y, cfg["epilogue"], x_shape=out, anchor_input=x, channel_axis=1)

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        oh, ow = self._out_hw(cfg)
        n, cin, cout, g = cfg["n"], cfg["cin"], cfg["cout"], cfg["groups"]
        taps = cfg["kh"] * cfg["kw"]
        macs = n * cout * oh * ow * (cin // g) * taps
        out_elems = n * cout * oh * ow
        feats = size_features(
            2.0 * macs, 4.0 * n * cin * cfg["h"] * cfg["w"], 4.0 * cout * (cin // g) * taps, 4.0 * out_elems, cfg["epilogue"], out_elems
        )
        feats.update({"cin": cin, "cout": cout, "kh": cfg["kh"], "kw": cfg["kw"], "stride": cfg["sh"] * cfg["sw"], "groups": g, "dims": cfg["dims"],
                      "reduction": (cin // g) * taps, "ohw": oh * ow, **loop_features("ow", ow), "twos_cout": twos(cout)})  # fmt: skip
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.op not in ("conv2d", "conv1d") or len(first.args) != 2 or first.attrs is None:
            return None
        x, w = first.args
        a = first.attrs
        if x is None or w is None or set(a["dilation"]) != {1}:
            return None
        groups = int(a["groups"])
        if first.op == "conv1d":
            if len(x) != 3 or len(w) != 3:
                return None
            pads = list(a["padding"]) * (2 // len(a["padding"]))
            pw = _pad_for(x[2], w[2], a["strides"][0], pads[0], pads[1])
            cfg = {
                "n": x[0],
                "cin": x[1],
                "h": 1,
                "w": x[2],
                "cout": w[0],
                "kh": 1,
                "kw": w[2],
                "sh": 1,
                "sw": a["strides"][0],
                "ph": 0,
                "pw": pw,
                "dims": 1,
            }
        else:
            if len(x) != 4 or len(w) != 4 or len(a["padding"]) != 4:
                return None
            top, left, bottom, right = a["padding"]
            ph, pw = _pad_for(x[2], w[2], a["strides"][0], top, bottom), _pad_for(x[3], w[3], a["strides"][1], left, right)
            cfg = {"n": x[0], "cin": x[1], "h": x[2], "w": x[3], "cout": w[0], "kh": w[2], "kw": w[3], "sh": a["strides"][0], "sw": a["strides"][1],
                   "ph": ph, "pw": pw, "dims": 2}  # fmt: skip
        epilogue = match_epilogue(group.calls[1:])
        if epilogue is None or cfg["ph"] is None or cfg["pw"] is None:
            return None
        full = {**cfg, "groups": groups, "epilogue": epilogue}
        return {p: full[p] for p in self.params}


@register_op("conv2d_transpose", sample_weight=1.0, description="transposed 2-D convolution (upsampling decoders), NCHW, + fused epilogue")
class Conv2dTranspose(OpSpec):
    # out_pad: output_padding, extra rows and columns on one side of the output.
    params = ("n", "cin", "h", "w", "cout", "k", "stride", "pad", "out_pad", "groups", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            hw = perturb(rng, seed["h"], spread=0.3, lo=2)
            return {**seed, "h": hw, "w": hw, "cin": perturb(rng, seed["cin"], multiple=8), "cout": perturb(rng, seed["cout"], multiple=8)}
        for _ in range(100):
            k, stride = choice(rng, ((2, 2), (2, 2), (4, 2), (3, 2), (3, 1), (8, 4), (16, 8)))
            pad = (k - stride + 1) // 2 if k > stride else 0
            cfg = {"n": 1, "cin": log_uniform_int(rng, 8, 256, 8), "h": choice(rng, SPATIAL[:9]), "cout": log_uniform_int(rng, 8, 256, 8),
                   "k": k, "stride": stride, "pad": pad, "out_pad": int(k == 3 and stride == 2), "groups": 1,
                   "epilogue": choice(rng, ("", "add.c", "add.c+relu", "add.c+relu"))}  # fmt: skip
            cfg["w"] = cfg["h"]
            if self.features(cfg)["flops"] <= MAX_SAMPLED_FLOPS:
                return {p: cfg[p] for p in self.params}
        raise RuntimeError("could not draw a transposed conv under the FLOPs cap")  # pragma: no cover

    @staticmethod
    def _out_hw(cfg: Mapping[str, Any]) -> tuple[Any, Any]:
        return tuple((cfg[d] - 1) * cfg["stride"] - 2 * cfg["pad"] + cfg["k"] + cfg["out_pad"] for d in ("h", "w"))

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["n"], cfg["cin"], cfg["h"], cfg["w"]), "x")
            w = b.input((cfg["cin"], cfg["cout"] // cfg["groups"], cfg["k"], cfg["k"]), "w")
            y = b.emit(
                R.nn.conv2d_transpose(x, w, strides=cfg["stride"], padding=cfg["pad"], output_padding=cfg["out_pad"], groups=cfg["groups"])
            )
            return b.epilogue(y, cfg["epilogue"], x_shape=(cfg["n"], cfg["cout"], *self._out_hw(cfg)), anchor_input=x)

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        oh, ow = self._out_hw(cfg)
        n, cin, cout, k, g = cfg["n"], cfg["cin"], cfg["cout"], cfg["k"], cfg["groups"]
        # TVM's transposed conv dilates the input by the stride (zeros between pixels) and runs a plain
        # conv over it: every output pixel does the whole k x k window, zeros included.
        macs = n * cout * oh * ow * (cin // g) * k * k
        useful = n * cin * cfg["h"] * cfg["w"] * (cout // g) * k * k
        out_elems = n * cout * oh * ow
        feats = size_features(
            2.0 * macs, 4.0 * n * cin * cfg["h"] * cfg["w"], 4.0 * cin * (cout // g) * k * k, 4.0 * out_elems, cfg["epilogue"], out_elems
        )
        feats.update({"cin": cin, "cout": cout, "h": cfg["h"], "oh": oh, "k": k, "stride": cfg["stride"], "groups": g,
                      "useful_share": useful / macs, "reduction": (cin // g) * k * k, "ohw": oh * ow, **loop_features("ow", ow)})  # fmt: skip
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.op != "conv2d_transpose" or len(first.args) != 2 or first.attrs is None:
            return None
        x, w = first.args
        if x is None or w is None or len(x) != 4 or w[2] != w[3]:
            return None
        a = first.attrs
        if len(set(a["strides"])) != 1 or len(set(a["padding"])) != 1 or len(set(a["output_padding"])) != 1 or set(a["dilation"]) != {1}:
            return None
        epilogue = match_epilogue(group.calls[1:])
        if epilogue is None:
            return None
        groups = int(a["groups"])
        return {"n": x[0], "cin": x[1], "h": x[2], "w": x[3], "cout": w[1] * groups, "k": w[2], "stride": a["strides"][0],
                "pad": a["padding"][0], "out_pad": a["output_padding"][0], "groups": groups, "epilogue": epilogue}  # fmt: skip


__all__ = ["BN", "Conv2d", "Conv2dRect", "Conv2dTranspose", "out_size", "symmetric_pad"]
