"""Matrix products: dense (fully connected) and batched matmul, with fused epilogues."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tvm
from tvm.relax import op as R

from edgelat.ops._common import Config, choice, log_uniform_int, loop_features, numel, perturb, pick_seed, size_features, twos
from edgelat.ops.epilogue import ACTIVATIONS, EpilogueBuilder, match_epilogue
from edgelat.ops.lowering import FusedGroup
from edgelat.ops.registry import OpSpec, register_op

DENSE_EPILOGUES = ("", "add.c", "add.c+relu", "add.c+tir_clip", "add.c+" + ACTIVATIONS["hswish"], "add.c+gelu", "add.c+gelu_tanh",
                   "add.c+tir_tanh", "add.c+tir_sigmoid")  # fmt: skip


@register_op("dense", sample_weight=2.0, description="fully connected layer: (m, k) x (k, n) + fused epilogue")
class Dense(OpSpec):
    params = ("m", "k", "n", "epilogue")
    epilogues = DENSE_EPILOGUES

    def pruned(self, cfg: Mapping[str, Any], out_removed: int, in_removed: int) -> Config:
        return {**cfg, "n": cfg["n"] - out_removed, "k": cfg["k"] - in_removed}

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            return {**seed, "k": perturb(rng, seed["k"], multiple=8), "n": perturb(rng, seed["n"], multiple=8)}
        m = choice(rng, (1, 1, 1, 4, 16, 49, 196))
        return {
            "m": m,
            "k": log_uniform_int(rng, 16, 2048, 8),
            "n": log_uniform_int(rng, 8, 1280, 8),
            "epilogue": choice(rng, DENSE_EPILOGUES),
        }

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["m"], cfg["k"]), "x")
            return b.epilogue(b.emit(R.matmul(x, b.input((cfg["k"], cfg["n"]), "w"))), cfg["epilogue"], anchor_input=x)

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        m, k, n = cfg["m"], cfg["k"], cfg["n"]
        feats = size_features(2.0 * m * k * n, 4.0 * m * k, 4.0 * k * n, 4.0 * m * n, cfg["epilogue"], m * n)
        feats.update({"m": m, "k": k, "n": n, **loop_features("n", n), **loop_features("k", k), "twos_n": twos(n), "twos_k": twos(k)})
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        """A matmul by a matrix: ``(..., m, k) @ (k, n)``, leading dims folded into m (a Linear on tokens)."""
        first = group.calls[0]
        if first.op != "matmul" or len(first.args) != 2:
            return None
        a, w = first.args
        if a is None or w is None or len(a) < 2 or len(w) != 2:
            return None
        epilogue = match_epilogue(group.calls[1:])
        return None if epilogue is None else {"m": numel(a[:-1]), "k": a[-1], "n": w[1], "epilogue": epilogue}


@register_op("batch_matmul", description="batched matmul: (b, m, k) x (b, k, n) + fused epilogue")
class BatchMatmul(OpSpec):
    params = ("b", "m", "k", "n", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            return {**seed, "m": perturb(rng, seed["m"]), "n": perturb(rng, seed["n"])}
        tokens = choice(rng, (49, 64, 196, 256))
        dim = choice(rng, (16, 32, 64))
        b = choice(rng, (1, 2, 4, 8, 12))
        if rng.random() < 0.5:  # attention scores q @ k^T
            return {"b": b, "m": tokens, "k": dim, "n": tokens, "epilogue": choice(rng, ("", "multiply.s"))}
        return {"b": b, "m": tokens, "k": tokens, "n": dim, "epilogue": ""}  # scores @ v

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["b"], cfg["m"], cfg["k"]), "x")
            return b.epilogue(b.emit(R.matmul(x, b.input((cfg["b"], cfg["k"], cfg["n"]), "y"))), cfg["epilogue"], anchor_input=x)

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        bt, m, k, n = cfg["b"], cfg["m"], cfg["k"], cfg["n"]
        feats = size_features(2.0 * bt * m * k * n, 4.0 * bt * m * k, 4.0 * bt * k * n, 4.0 * bt * m * n, cfg["epilogue"], bt * m * n)
        feats.update({"b": bt, "m": m, "k": k, "n": n, **loop_features("n", n), **loop_features("k", k)})
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        """A matmul with batch dims on the right operand: ``(..., m, k) @ (..., k, n)`` (attention's q @ k^T,
        scores @ v), batch dims broadcast and folded into one."""
        first = group.calls[0]
        if first.op != "matmul" or len(first.args) != 2:
            return None
        a, w = first.args
        if a is None or w is None or len(a) < 2 or len(w) < 3:
            return None
        try:
            batch = np.broadcast_shapes(tuple(a[:-2]), tuple(w[:-2]))
        except ValueError:
            return None
        epilogue = match_epilogue(group.calls[1:])
        return None if epilogue is None else {"b": numel(batch), "m": a[-2], "k": a[-1], "n": w[-1], "epilogue": epilogue}
