"""Pooling: max and average pooling windows, and global average pooling."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tvm
from tvm.relax import op as R

from edgelat.ops._common import (
    SPATIAL,
    Config,
    choice,
    log_uniform_int,
    loop_features,
    per_config,
    perturb,
    pick_seed,
    size_features,
    where,
)
from edgelat.ops.conv import out_size
from edgelat.ops.epilogue import ACTIVATIONS, EpilogueBuilder, epilogue_after, match_epilogue, reads_anchor_input, split_epilogue
from edgelat.ops.lowering import FusedGroup
from edgelat.ops.registry import OpSpec, register_op


@register_op("max_pool2d", relax_op="max_pool2d", description="max pooling window, NCHW")
@register_op("avg_pool2d", relax_op="avg_pool2d", description="average pooling window, NCHW")
class Pool2d(OpSpec):
    # ceil: output size rounds up (ceil_mode); include_pad: padded zeros count in averages.
    params = ("n", "c", "h", "w", "k", "stride", "pad", "ceil", "include_pad", "epilogue")
    relax_op: str = "max_pool2d"

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            hw = perturb(rng, seed["h"], spread=0.3, lo=seed["k"])
            return {**seed, "c": perturb(rng, seed["c"], multiple=8 if seed["c"] >= 16 else 1), "h": hw, "w": hw}
        k = choice(rng, (2, 3, 3, 5))
        hw = choice(rng, SPATIAL[2:])
        stride = choice(rng, (1, 2, 2))
        pad = 0 if k == 2 else choice(rng, (0, k // 2))
        include_pad = int(self.relax_op == "avg_pool2d" and pad > 0 and rng.random() < 0.5)
        return {"n": 1, "c": log_uniform_int(rng, 8, 512, 8), "h": hw, "w": hw, "k": k, "stride": stride, "pad": pad,
                "ceil": int(rng.random() < 0.2), "include_pad": include_pad, "epilogue": ""}  # fmt: skip

    def _call(self, x: object, cfg: Config) -> object:
        common = {"pool_size": cfg["k"], "strides": cfg["stride"], "padding": cfg["pad"], "ceil_mode": bool(cfg["ceil"])}
        if self.relax_op == "max_pool2d":
            return R.nn.max_pool2d(x, **common)
        return R.nn.avg_pool2d(x, **common, count_include_pad=bool(cfg["include_pad"]))

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["n"], cfg["c"], cfg["h"], cfg["w"]), "x")
            return b.epilogue(b.emit(self._call(x, cfg)), cfg["epilogue"], anchor_input=x)

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        extra = where(cfg["ceil"], cfg["stride"] - 1, 0)
        oh = out_size(cfg["h"] + extra, cfg["k"], cfg["stride"], cfg["pad"], 1)
        ow = out_size(cfg["w"] + extra, cfg["k"], cfg["stride"], cfg["pad"], 1)
        out_elems = cfg["n"] * cfg["c"] * oh * ow
        feats = size_features(
            1.0 * out_elems * cfg["k"] ** 2,
            4.0 * cfg["n"] * cfg["c"] * cfg["h"] * cfg["w"],
            0.0,
            4.0 * out_elems,
            cfg["epilogue"],
            out_elems,
        )
        feats.update({"c": cfg["c"], "h": cfg["h"], "k": cfg["k"], "stride": cfg["stride"], "oh": oh, "ceil": cfg["ceil"], "include_pad": cfg["include_pad"],
                      **loop_features("ow", ow)})  # fmt: skip
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.op != self.relax_op or first.attrs is None or not first.args or first.args[0] is None:
            return None
        a = first.attrs
        if len(set(a["pool_size"])) != 1 or len(set(a["strides"])) != 1 or len(set(a["padding"])) != 1:
            return None
        if self.relax_op == "avg_pool2d" and a["pool_size"] == list(first.args[0][2:]) and not any(a["padding"]):
            return None  # a window over the whole map is a global average pool
        epilogue = match_epilogue(group.calls[1:])
        if epilogue is None:
            return None
        n, c, h, w = first.args[0]
        return {
            "n": n,
            "c": c,
            "h": h,
            "w": w,
            "k": a["pool_size"][0],
            "stride": a["strides"][0],
            "pad": a["padding"][0],
            "ceil": int(bool(a.get("ceil_mode"))),
            "include_pad": int(bool(a.get("count_include_pad"))) if self.relax_op == "avg_pool2d" else 0,
            "epilogue": epilogue,
        }


# Squeeze-excite gates fuse into the pooling kernel: mean -> hsigmoid -> scale the input.
GAP_EPILOGUES = ("", "", "add.s+tir_clip+tir_clip+divide.s+multiply.i5", "tir_sigmoid+multiply.i2")


@register_op("global_avg_pool", description="global average pooling (mean over H, W, keepdims)")
class GlobalAvgPool(OpSpec):
    params = ("n", "c", "h", "w", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            hw = perturb(rng, seed["h"], spread=0.3)
            return {**seed, "c": perturb(rng, seed["c"], multiple=8), "h": hw, "w": hw}
        hw = choice(rng, (1, 2, 4, 5, 7, 8, 10, 14, 28))
        return {"n": 1, "c": log_uniform_int(rng, 16, 2048, 8), "h": hw, "w": hw, "epilogue": choice(rng, GAP_EPILOGUES)}

    def emit(self, cfg: Config) -> tvm.IRModule:
        shape = (cfg["n"], cfg["c"], cfg["h"], cfg["w"])

        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input(shape, "x")
            y = b.emit(R.mean(x, axis=[2, 3], keepdims=True))
            return b.epilogue(y, cfg["epilogue"], x_shape=shape, anchor_input=x)

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        n, c, h, w = cfg["n"], cfg["c"], cfg["h"], cfg["w"]
        # A gate fused in that scales the pooled map (it reads the anchor's input, or a bare ``.x`` of older
        # profiles): a full-size output. A ``.xN`` token says its size itself, and size_features counts it.
        scales = per_config(lambda e: reads_anchor_input(e) or "multiply.x" in split_epilogue(e), cfg["epilogue"])
        out_elems = where(scales, n * c * h * w, n * c)
        feats = size_features(1.0 * n * c * h * w, 4.0 * n * c * h * w * (1 + scales), 0.0, 4.0 * out_elems, cfg["epilogue"], out_elems)
        feats.update({"c": c, "h": h, "hw": h * w, **loop_features("w", w)})
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        """The mean of each channel over H and W, however it is written: ``mean`` over the spatial axes
        (keepdims or not), an adaptive pool to 1x1, an average pool whose window is the whole map, or a
        ``sum`` over the spatial axes scaled by a constant."""
        first = group.calls[0]
        if not first.args or first.args[0] is None or first.out is None or len(first.args[0]) != 4:
            return None
        x, a = first.args[0], first.attrs or {}
        n, c, h, w = x
        if first.out not in ((n, c, 1, 1), (n, c)):
            return None
        skip = 0
        if first.op in ("mean", "sum"):
            if a and sorted(int(i) % 4 for i in a.get("axis") or ()) != [2, 3]:
                return None
            if first.op == "sum":  # a mean only when scaled: the scale is part of the anchor then
                if len(group.calls) < 2 or match_epilogue(group.calls[1:2]) not in ("divide.s", "multiply.s"):
                    return None
                skip = 1
        elif first.op == "avg_pool2d":
            if a.get("pool_size") != [h, w] or any(a.get("padding", [1])):
                return None
        elif first.op != "adaptive_avg_pool2d":
            return None
        epilogue = epilogue_after(group.calls[1:], skip)
        return None if epilogue is None else {"n": n, "c": c, "h": h, "w": w, "epilogue": epilogue}


__all__ = ["ACTIVATIONS", "GlobalAvgPool", "Pool2d"]
