"""Helpers the op kinds share: sampling around real shapes, and the size features."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from edgelat.ops.epilogue import epilogue_counts

Config = dict[str, Any]

SPATIAL = (7, 8, 14, 16, 20, 28, 32, 40, 56, 64, 80, 112)
# Epilogues of real networks' conv kernels (batch norm folded into the weights, so a bias).
from edgelat.ops.epilogue import ACTIVATIONS  # noqa: E402

HSWISH = ACTIVATIONS["hswish"]
CONV_EPILOGUES = (
    "",
    "add.c",
    "add.c+relu",
    "add.c+relu",
    "add.c+tir_clip",
    "add.c+add.t",
    "add.c+add.t+relu",
    f"add.c+{HSWISH}",
    f"add.c+{ACTIVATIONS['swish']}",
    # rarer, and each with a transcendental of its own family: tanh (LeNet, GANs), GELU (ConvNeXt), sigmoid
    "add.c+tir_tanh",
    "add.c+gelu",
    "add.c+tir_sigmoid",
)
# A batch norm that could not be folded (it follows no conv) runs as these ops.
BN = "subtract.c+divide.c+multiply.c+add.c"


# How often a perturbed size lands on a power of two: real networks are full of 64, 256 and 1024,
# and untuned loops over power-of-two strides alias in the cache (a 576x1024 dense ran 3x slower
# per FLOP than its neighbours), which a sampler that never draws them cannot teach.
POW2_SHARE = 0.15


def perturb(rng: np.random.Generator, value: int, *, spread: float = 0.5, multiple: int = 1, lo: int = 1, hi: int = 1 << 16) -> int:
    """``value`` scaled by a log-uniform factor in [1/(1+spread), 1+spread], on a grid of ``multiple``.

    With probability ``POW2_SHARE`` the power of two nearest the scaled value instead.
    """
    factor = math.exp(rng.uniform(-math.log1p(spread), math.log1p(spread)))
    if rng.random() < POW2_SHARE:
        scaled = max(multiple, 2 ** round(math.log2(max(value * factor, 1.0))))
    else:
        scaled = round(value * factor / multiple) * multiple
    return int(max(lo, min(hi, scaled)))


def log_uniform_int(rng: np.random.Generator, lo: int, hi: int, multiple: int = 1) -> int:
    value = math.exp(rng.uniform(math.log(lo), math.log(hi)))
    return int(max(lo, round(value / multiple) * multiple))


def choice(rng: np.random.Generator, options: Sequence[Any]) -> Any:
    return options[int(rng.integers(len(options)))]


def pick_seed(rng: np.random.Generator, seeds: Sequence[Config], p_seed: float = 0.8) -> Config | None:
    """A real-network configuration to start from, or None to draw from scratch."""
    if seeds and rng.random() < p_seed:
        return dict(seeds[int(rng.integers(len(seeds)))])
    return None


def numel(shape: Sequence[int]) -> int:
    return int(math.prod(shape))


def as_nchw(shape: Sequence[int] | None) -> tuple[int, int, int, int] | None:
    """Any tensor shape as the (n, c, h, w) of an elementwise kernel over the same elements.

    Elementwise work depends on how many elements there are and how long the innermost loop is,
    not on the rank: a (tokens, dim) tensor is ``(1, 1, tokens, dim)``, a 5-D one merges its
    leading dims.
    """
    if shape is None or len(shape) == 0:
        return None
    dims = tuple(int(d) for d in shape)
    if len(dims) > 4:
        dims = (numel(dims[:-3]), *dims[-3:])
    return (1,) * (4 - len(dims)) + dims  # type: ignore[return-value]


def loop_features(prefix: str, extent: Any) -> dict[str, Any]:
    """How well an innermost loop of ``extent`` vectorises: untuned TVM code lives or dies by it."""
    return {
        prefix: 1.0 * extent,
        f"{prefix}_mod4": extent % 4,
        f"{prefix}_mod8": extent % 8,
        f"{prefix}_mod16": extent % 16,
    }


# Feature functions take one config (scalars) or a column of configs (numpy arrays, one entry per
# config) and compute the same values either way: the helpers below are written for both.


def twos(x: Any) -> Any:
    """How many times 2 divides ``x``: power-of-two strides alias in the cache, which untuned loops feel."""
    if np.ndim(x) == 0:
        x = int(x)
        return float((x & -x).bit_length() - 1) if x > 0 else 0.0
    a = np.asarray(x, dtype=np.int64)
    return np.where(a > 0, np.log2(np.maximum(a & -a, 1)), 0.0)


def per_config(fn: Callable[[Any], float], values: Any) -> Any:
    """``fn`` of one config's value, or of each value of a column (for fields that are strings)."""
    if isinstance(values, np.ndarray):
        return np.fromiter((fn(v) for v in values), dtype=float, count=len(values))
    return fn(values)


def where(condition: Any, yes: Any, no: Any) -> Any:
    """``yes if condition else no``, for one config or a column."""
    return np.where(condition, yes, no) if isinstance(condition, np.ndarray) else (yes if condition else no)


def size_features(flops: Any, in_bytes: Any, param_bytes: Any, out_bytes: Any, epilogue: Any, out_elems: Any) -> dict[str, Any]:
    """The features every kind shares: work, traffic, intensity, and the epilogue's cost.

    ``out_bytes`` and ``out_elems`` are the anchor's output; an epilogue that broadcasts it to a larger
    operand (a squeeze-excite gate, ``multiply.x49``) writes that larger tensor instead, and counts so.
    """
    counts = epilogue_columns(epilogue)
    anchor_elems = out_elems
    out_elems = out_elems * counts["ep_out_scale"]
    out_bytes = out_bytes * counts["ep_out_scale"]
    total = in_bytes + param_bytes + out_bytes
    feats = {
        "flops": flops,
        "log_flops": np.log1p(flops),
        "bytes": total,
        "log_bytes": np.log1p(total),
        "in_bytes": in_bytes,
        "param_bytes": param_bytes,
        "out_bytes": out_bytes,
        "intensity": flops / np.maximum(total, 1.0),
        "out_elems": out_elems,
        "log_out_elems": np.log1p(out_elems),
    }
    feats.update(counts)
    feats["ep_work"] = anchor_elems * counts["ep_scaled_work"]
    feats["ep_bytes"] = 4.0 * anchor_elems * counts["ep_scaled_inputs"]
    return feats


def epilogue_columns(epilogue: Any) -> Mapping[str, Any]:
    """:func:`epilogue_counts` of one epilogue string, or of each string of a column (counted once per distinct string)."""
    if isinstance(epilogue, str):
        return epilogue_counts(epilogue)
    codes, distinct = pd.factorize(np.asarray(epilogue, dtype=object))
    table = [epilogue_counts(e) for e in distinct]
    return {key: np.array([t[key] for t in table], dtype=float)[codes] for key in epilogue_counts("")}
