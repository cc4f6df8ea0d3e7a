"""Reductions over any axes: mean, sum, max, min, variance, argmax (spatial means are global pooling)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tvm
from tvm.relax import op as R

from edgelat.ops._common import Config, choice, log_uniform_int, loop_features, numel, per_config, size_features, where
from edgelat.ops.epilogue import EpilogueBuilder, match_epilogue
from edgelat.ops.lowering import FusedGroup
from edgelat.ops.registry import OpSpec, register_op

__all__ = ["Reduce", "collapse_reduction"]

REDUCERS = {"mean": R.mean, "sum": R.sum, "max": R.max, "min": R.min, "prod": R.prod, "variance": R.variance,
            "argmax": R.argmax, "argmin": R.argmin}  # fmt: skip
# Passes over the reduced data per element (variance reads it for the mean, then again).
PASSES = {"variance": 2.0}


def collapse_reduction(shape: Sequence[int], axes: Sequence[int]) -> tuple[int, int, int] | None:
    """(outer, reduced, inner) extents when the reduced axes are contiguous (dims of one ignored), else None."""
    rank = len(shape)
    reduced = sorted({int(a) % rank for a in axes}) if axes else list(range(rank))
    live = [i for i in reduced if shape[i] > 1]
    if not live:
        return None
    if live != list(range(live[0], live[-1] + 1)) and any(shape[i] > 1 for i in range(live[0], live[-1] + 1) if i not in live):
        return None  # reduced axes with kept ones between them
    return numel(shape[: live[0]]), numel([shape[i] for i in live]), numel(shape[live[-1] + 1 :])


@register_op("reduce", description="a reduction (mean, sum, max, min, variance, argmax) over contiguous axes of any tensor (+ epilogue)")
class Reduce(OpSpec):
    # The input seen as (outer, reduced, inner): reduced over the middle.
    params = ("reducer", "outer", "reduced", "inner", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        reducer = choice(rng, ("mean", "mean", "sum", "max", "max", "variance", "argmax"))
        scenario = choice(rng, ("tokens", "channels", "rows"))
        if scenario == "tokens":  # mean over tokens of (tokens, dim)
            outer, reduced, inner = 1, log_uniform_int(rng, 16, 1024), log_uniform_int(rng, 32, 512, 8)
        elif scenario == "channels":  # max / mean over channels of NCHW (spatial attention)
            outer, reduced, inner = 1, log_uniform_int(rng, 8, 512, 8), choice(rng, (7, 14, 28, 56)) ** 2
        else:  # over the last axis
            outer, reduced, inner = log_uniform_int(rng, 1, 4096), log_uniform_int(rng, 8, 1024), 1
        epilogue = choice(rng, ("", "", "tir_sigmoid", "add.s+tir_sqrt")) if reducer in ("mean", "max", "variance") else ""
        return {"reducer": reducer, "outer": outer, "reduced": reduced, "inner": inner, "epilogue": epilogue}

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["outer"], cfg["reduced"], cfg["inner"]), "x")
            fn = REDUCERS[cfg["reducer"]]
            y = b.emit(fn(x, axis=1) if cfg["reducer"].startswith("arg") else fn(x, axis=[1], keepdims=True))
            return b.epilogue(y, cfg["epilogue"])

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        elems = cfg["outer"] * cfg["reduced"] * cfg["inner"]
        out_elems = cfg["outer"] * cfg["inner"]
        passes = per_config(lambda r: PASSES.get(r, 1.0), cfg["reducer"])
        feats = size_features(passes * elems, 4.0 * elems, 0.0, 4.0 * out_elems, cfg["epilogue"], out_elems)
        feats.update(
            {
                "outer": cfg["outer"],
                "reduced": cfg["reduced"],
                "log_reduced": np.log2(cfg["reduced"]),
                "strided": where(cfg["inner"] > 1, 1.0, 0.0),
                "passes": passes,
                "arg": per_config(lambda r: float(r.startswith("arg")), cfg["reducer"]),
                **loop_features("inner", cfg["inner"]),
            }
        )
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.op not in REDUCERS or not first.args or first.args[0] is None or first.attrs is None:
            return None
        axes = first.attrs.get("axis")
        collapsed = collapse_reduction(first.args[0], [axes] if isinstance(axes, int) else axes or [])
        if collapsed is None:
            return None
        epilogue = match_epilogue(group.calls[1:])
        if epilogue is None:
            return None
        outer, reduced, inner = collapsed
        return {"reducer": first.op, "outer": outer, "reduced": reduced, "inner": inner, "epilogue": epilogue}
