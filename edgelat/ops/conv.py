"""2-D convolutions (dense, grouped and depthwise), NCHW, with their fused epilogues."""

from __future__ import annotations

from collections.abc import Sequence

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
from edgelat.ops.epilogue import EpilogueBuilder, match_epilogue
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
    depthwise: bool = False

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
    def _out_hw(cfg: Config) -> tuple[int, int]:
        return (
            out_size(cfg["h"], cfg["k"], cfg["stride"], cfg["pad"], cfg["dilation"]),
            out_size(cfg["w"], cfg["k"], cfg["stride"], cfg["pad"], cfg["dilation"]),
        )

    def features(self, cfg: Config) -> dict[str, float]:
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
        pads, strides, dil = a["padding"], a["strides"], a["dilation"]
        if len(set(pads)) != 1 or len(set(strides)) != 1 or len(set(dil)) != 1:
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
            "pad": pads[0],
            "groups": groups,
            "dilation": dil[0],
            "epilogue": epilogue,
        }


__all__ = ["BN", "Conv2d", "out_size"]
