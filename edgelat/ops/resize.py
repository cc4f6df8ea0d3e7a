"""Resizing: the upsampling of decoders and feature pyramids (nearest, bilinear, bicubic), NCHW."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tvm
from tvm.relax import op as R

from edgelat.ops._common import SPATIAL, Config, choice, log_uniform_int, loop_features, per_config, perturb, pick_seed, size_features
from edgelat.ops.epilogue import EpilogueBuilder, match_epilogue
from edgelat.ops.lowering import FusedGroup
from edgelat.ops.registry import OpSpec, register_op

__all__ = ["Resize2d"]

# Input pixels each output pixel reads, per method (TVM's names).
TAPS = {"nearest_neighbor": 1, "linear": 4, "cubic": 16}
# Where output pixels sample the input: ``F.interpolate(align_corners=True)`` is align_corners, False is
# half_pixel (pytorch_half_pixel in ONNX), nearest is usually asymmetric.
MODES = ("asymmetric", "half_pixel", "align_corners", "pytorch_half_pixel", "tf_half_pixel_for_nn")


@register_op("resize2d", description="2-D resize (nearest, bilinear, bicubic), NCHW, any scale (+ fused epilogue)")
class Resize2d(OpSpec):
    # method: nearest_neighbor, linear or cubic; mode: the coordinate transformation; concat: channels of other
    # tensors concatenated with the resized one in the same kernel (a decoder's upsample-and-concat), else 0.
    params = ("n", "c", "h", "w", "oh", "ow", "method", "mode", "concat", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            scale = seed["oh"] / seed["h"]
            hw = perturb(rng, seed["h"], spread=0.3)
            return {**seed, "c": perturb(rng, seed["c"], multiple=8 if seed["c"] >= 16 else 1), "h": hw, "w": hw, "oh": round(hw * scale),
                    "ow": round(hw * scale)}  # fmt: skip
        hw = choice(rng, SPATIAL[:10])
        method = choice(rng, ("nearest_neighbor", "nearest_neighbor", "linear", "linear", "cubic"))
        mode = choice(
            rng, ("asymmetric", "half_pixel") if method == "nearest_neighbor" else ("half_pixel", "align_corners", "pytorch_half_pixel")
        )
        scale = choice(rng, (2, 2, 2, 4, 8)) if rng.random() < 0.8 else rng.uniform(0.5, 3.0)
        out = max(1, round(hw * scale))
        concat = log_uniform_int(rng, 8, 256, 8) if rng.random() < 0.35 else 0
        return {"n": 1, "c": log_uniform_int(rng, 1, 256), "h": hw, "w": hw, "oh": out, "ow": out, "method": method, "mode": mode,
                "concat": concat, "epilogue": "" if concat else choice(rng, ("", "", "add.t", "tir_sigmoid"))}  # fmt: skip

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["n"], cfg["c"], cfg["h"], cfg["w"]), "x")
            y = b.emit(R.image.resize2d(x, (cfg["oh"], cfg["ow"]), method=cfg["method"], coordinate_transformation_mode=cfg["mode"]))
            if cfg["concat"]:
                y = b.emit(R.concat([y, b.input((cfg["n"], cfg["concat"], cfg["oh"], cfg["ow"]), "skip")], axis=1))
            return b.epilogue(y, cfg["epilogue"])

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        taps = per_config(lambda m: float(TAPS.get(m, 4)), cfg["method"])
        resized = cfg["n"] * cfg["c"] * cfg["oh"] * cfg["ow"]
        copied = cfg["n"] * cfg["concat"] * cfg["oh"] * cfg["ow"]
        out_elems = resized + copied
        in_elems = cfg["n"] * cfg["c"] * cfg["h"] * cfg["w"] + copied
        feats = size_features(2.0 * taps * resized, 4.0 * in_elems, 0.0, 4.0 * out_elems, cfg["epilogue"], out_elems)
        feats.update(
            {
                "taps": taps,
                "copied_share": copied / out_elems,
                "scale": cfg["oh"] * cfg["ow"] / (cfg["h"] * cfg["w"]),
                "c": cfg["c"],
                "oh": cfg["oh"],
                "aligned": per_config(lambda m: float(m == "align_corners"), cfg["mode"]),
                **loop_features("ow", cfg["ow"]),
            }
        )
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        a = first.attrs or {}
        if first.op != "resize2d" or not first.args or first.args[0] is None or first.out is None or len(first.args[0]) != 4:
            return None
        if a.get("layout", "NCHW") != "NCHW" or a.get("method") not in TAPS:
            return None
        rest, concat = group.calls[1:], 0
        if rest and rest[0].op == "concatenate" and any(rest[0].chained):
            joined = rest[0]
            shapes = [s for s, c in zip(joined.args, joined.chained, strict=True) if not c]
            if joined.out is None or any(s is None or len(s) != 4 or s[2:] != first.out[2:] for s in shapes):
                return None
            if joined.out[1] != first.out[1] + sum(s[1] for s in shapes if s is not None):
                return None  # not along channels
            rest, concat = rest[1:], sum(s[1] for s in shapes if s is not None)
        epilogue = match_epilogue(rest)
        if epilogue is None:
            return None
        n, c, h, w = first.args[0]
        return {"n": n, "c": c, "h": h, "w": w, "oh": first.out[2], "ow": first.out[3], "method": a["method"],
                "mode": a.get("coordinate_transformation_mode", "half_pixel"), "concat": concat, "epilogue": epilogue}  # fmt: skip
