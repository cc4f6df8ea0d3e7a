"""Elementwise kernels that stand alone: binary add / mul (+ epilogue) and activations."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import tvm

from edgelat.ops._common import (
    BN,
    SPATIAL,
    Config,
    as_nchw,
    choice,
    log_uniform_int,
    loop_features,
    numel,
    perturb,
    pick_seed,
    size_features,
)
from edgelat.ops.epilogue import ACTIVATIONS, BINARY, EpilogueBuilder, match_epilogue
from edgelat.ops.lowering import FusedGroup
from edgelat.ops.registry import OpSpec, register_op


def _sample_shape(rng: np.random.Generator, seed: Config | None) -> Config:
    if seed is not None:
        hw = perturb(rng, seed["h"], spread=0.3)
        return {**seed, "c": perturb(rng, seed["c"], multiple=8 if seed["c"] >= 16 else 1), "h": hw, "w": hw}
    hw = choice(rng, SPATIAL)
    return {"n": 1, "c": log_uniform_int(rng, 8, 1024, 8), "h": hw, "w": hw}


@register_op(
    "add",
    relax_op="add",
    also=("subtract",),
    description="elementwise add (or subtract) of two same-shape tensors, any rank (+ fused epilogue)",
)
@register_op(
    "mul",
    relax_op="multiply",
    also=("divide",),
    description="elementwise multiply (or divide) of two same-shape tensors, any rank (+ fused epilogue)",
)
class Binary(OpSpec):
    """Tensors of any rank are seen as (n, c, h, w) over the same elements (:func:`as_nchw`)."""

    params = ("n", "c", "h", "w", "epilogue")
    relax_op: str = "add"
    # Ops that do the same work per element (a - b is a + b in cost).
    also: tuple[str, ...] = ()

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        cfg = _sample_shape(rng, seed)
        if seed is None:
            cfg["epilogue"] = choice(rng, ("", "relu") if self.relax_op == "add" else ("",))
        return cfg

    def emit(self, cfg: Config) -> tvm.IRModule:
        shape = (cfg["n"], cfg["c"], cfg["h"], cfg["w"])

        def body(b: EpilogueBuilder):  # noqa: ANN202
            a = b.input(shape, "a")
            return b.epilogue(b.emit(BINARY[self.relax_op](a, b.input(shape, "b"))), cfg["epilogue"], anchor_input=a)

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        elems = cfg["n"] * cfg["c"] * cfg["h"] * cfg["w"]
        feats = size_features(1.0 * elems, 8.0 * elems, 0.0, 4.0 * elems, cfg["epilogue"], elems)
        return {**feats, "c": cfg["c"], "h": cfg["h"], "hw": cfg["h"] * cfg["w"], **loop_features("w", cfg["w"])}

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.op not in (self.relax_op, *self.also) or len(first.args) != 2 or first.args[0] != first.args[1] or first.internal_back:
            return None
        shape = as_nchw(first.args[0])
        if shape is None or numel(shape) < 2:
            return None
        epilogue = match_epilogue(group.calls[1:])
        if epilogue is None:
            return None
        n, c, h, w = shape
        return {"n": n, "c": c, "h": h, "w": w, "epilogue": epilogue}


@register_op(
    "activation",
    description="a standalone elementwise chain, any rank: relu, relu6, sigmoid, hswish, swish, gelu, an unfolded batch norm, a scale",
)
class Activation(OpSpec):
    # The whole elementwise chain is the epilogue of an identity anchor; any rank is seen as (n, c, h, w).
    params = ("n", "c", "h", "w", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        cfg = _sample_shape(rng, seed)
        if seed is None:
            chain = ACTIVATIONS[choice(rng, sorted(ACTIVATIONS))]
            cfg["epilogue"] = choice(rng, (chain, chain, f"{BN}+{chain}"))  # batch norms that follow no conv stay unfolded
        return cfg

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            return b.epilogue(b.input((cfg["n"], cfg["c"], cfg["h"], cfg["w"]), "x"), cfg["epilogue"])

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        elems = cfg["n"] * cfg["c"] * cfg["h"] * cfg["w"]
        feats = size_features(1.0 * elems, 4.0 * elems, 0.0, 4.0 * elems, cfg["epilogue"], elems)
        return {**feats, "c": cfg["c"], "h": cfg["h"], "hw": cfg["h"] * cfg["w"], **loop_features("w", cfg["w"])}

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.pattern > 1 or not first.args or first.out is None or any(c.out != first.out for c in group.calls):
            return None  # an activation is elementwise and keeps its input's shape throughout
        calls = list(group.calls)
        if first.args[0] != first.out and first.out in first.args:
            # the full-size tensor is the running value (``scale * x`` is ``x * scale``)
            full = first.args.index(first.out)
            calls[0] = replace(first, chained=tuple(i == full for i in range(len(first.args))))
        shape = as_nchw(first.out)
        epilogue = match_epilogue(calls)
        if not epilogue or shape is None:
            return None
        n, c, h, w = shape
        return {"n": n, "c": c, "h": h, "w": w, "epilogue": epilogue}


__all__ = ["Activation", "Binary"]
