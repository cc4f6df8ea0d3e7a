"""Data movement: transposes, slices and the reshape chains around them, by the copy they do.

Networks move data in many spellings: ``x.transpose(1, 2)`` on tokens, ``permute`` to NHWC and
back, heads split with ``view`` + ``permute`` + ``take``, windows partitioned with a 6-D
``permute``, ``x[:, :c]`` in a ghost module, ``x[..., ::2, ::2]`` in a YOLO focus layer. Each
such kernel reads every output element from one place of its input, and those places form a
strided box. So a kernel is described by what it copies, whatever ops spelled it:

- ``shape``: the input seen as a box of dims (outermost first);
- ``box``: the sub-box copied (from the origin; dims of 1 are skipped elements);
- ``perm``: the order the copied dims are written in;

all three canonical (dims of one merged away, neighbours that stay neighbours merged), so two
spellings of one copy are one config. :func:`gather_index` replays a kernel's ops on an index
array and :func:`canonical_gather` reads the box off it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import tvm
from tvm.relax import op as R

from edgelat.ops._common import Config, choice, log_uniform_int, numel, size_features
from edgelat.ops.epilogue import EpilogueBuilder, match_epilogue
from edgelat.ops.lowering import FusedGroup, TirCall
from edgelat.ops.registry import OpSpec, register_op

__all__ = ["Layout", "canonical_gather", "gather_index", "strided_dims"]

# Ops that only move data (legalized names).
MOVES = {"reshape", "squeeze", "expand_dims", "flatten", "transpose", "strided_slice", "take"}
# The largest tensor replayed on an index array.
MAX_REPLAY = 1 << 24
# The most elements a sampled copy moves (a few milliseconds untuned).
MAX_SAMPLED = 1 << 21


def gather_index(calls: Sequence[TirCall]) -> tuple[np.ndarray, int, int] | None:
    """Replay the leading data-movement calls on an index array.

    Returns (the input element each output element reads, the input's element count, how many
    calls were replayed), or None when an op cannot be replayed (a gather by an index tensor).
    """
    x = calls[0].args[0] if calls and calls[0].args else None
    if x is None or numel(x) > MAX_REPLAY:
        return None
    idx = np.arange(numel(x), dtype=np.int64).reshape(x)
    used = 0
    for call in calls:
        if call.op not in MOVES or not call.chained or not call.chained[0]:
            break
        attrs = call.attrs or {}
        if call.op == "transpose":
            if "axes" not in attrs:
                return None
            idx = idx.transpose(attrs["axes"])
        elif call.op == "strided_slice":
            if "axes" not in attrs:
                return None
            slices = [slice(None)] * idx.ndim
            steps = attrs.get("strides") or [1] * len(attrs["axes"])
            for axis, begin, end, step in zip(attrs["axes"], attrs["begin"], attrs["end"], steps, strict=True):
                slices[int(axis)] = slice(int(begin), int(end), int(step))
            idx = idx[tuple(slices)]
        elif call.op == "take":
            if len(call.args) != 2 or call.args[1] != () or "axis" not in attrs:
                return None  # a gather by an index tensor, not a slice
            idx = np.take(idx, 0, axis=int(attrs["axis"]))
        else:
            if call.out is None:
                return None
            idx = idx.reshape(call.out)
        if call.out is None or idx.shape != tuple(call.out):
            return None
        used += 1
    return idx, numel(x), used


def strided_dims(flat: np.ndarray) -> tuple[list[int], list[int]] | None:
    """The coarsest dims and strides with ``flat[i]`` = base + sum of index * stride (outermost first), or None.

    Each step takes the longest run of equal steps that tiles the whole array, then recurses on the
    runs' starts: an output written as (tokens, heads * dim) is found to be (tokens, heads, dim).
    """
    dims: list[int] = []
    strides: list[int] = []
    v = flat
    while len(v) > 1:
        step = int(v[1] - v[0])
        breaks = np.flatnonzero(np.diff(v) != step)
        run = int(breaks[0]) + 1 if len(breaks) else len(v)
        for r in range(run, 1, -1):
            if len(v) % r:
                continue
            rows = v.reshape(-1, r)
            if np.array_equal(rows, rows[:, :1] + np.arange(r, dtype=np.int64) * step):
                break
        else:
            return None
        dims.insert(0, r)
        strides.insert(0, step)
        v = rows[:, 0]
    return dims, strides


def canonical_gather(idx: np.ndarray, in_elems: int) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]] | None:
    """(shape, box, perm) of the copy ``out = in.flat[idx]``, or None if it is not a strided box (or is a view)."""
    found = strided_dims(idx.ravel())
    if found is None or not found[0]:
        return None
    out_dims, out_strides = found
    if any(s <= 0 for s in out_strides):
        return None  # flipped or broadcast
    by_stride = sorted(range(len(out_dims)), key=lambda j: out_strides[j])  # innermost first
    box: list[tuple[int, int, int | None]] = []  # (input extent, copied extent, output axis), innermost first
    if out_strides[by_stride[0]] > 1:
        box.append((out_strides[by_stride[0]], 1, None))  # elements skipped between copied ones
    for i, j in enumerate(by_stride):
        span = out_strides[by_stride[i + 1]] if i + 1 < len(by_stride) else in_elems
        if span % out_strides[j]:
            return None
        extent = span // out_strides[j]
        if extent < out_dims[j]:
            return None  # overlapping reads
        box.append((extent, out_dims[j], j))
    box.reverse()
    shape = tuple(b[0] for b in box)
    copied = tuple(b[1] for b in box)
    order = [b[2] for b in box if b[2] is not None]
    perm = tuple(order.index(t) for t in range(len(order)))
    if shape == copied and perm == tuple(range(len(perm))):
        return None  # the whole input in its own order: a reshape, which the VM runs as a view
    return shape, copied, perm


def _dims(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in text.split("x"))


def _copy_stats(shape_text: str, box_text: str, perm_text: str) -> tuple[float, ...]:
    """Input elements, copied elements, copied dims, the input stride of the innermost written dim,
    the run of elements contiguous on both sides, and whether the order changes."""
    shape, box, perm = _dims(shape_text), _dims(box_text), [int(p) for p in perm_text.split(",")]
    strides = [numel(shape[i + 1 :]) for i in range(len(shape))]
    kept = [i for i, d in enumerate(box) if d > 1]  # copied dims, in input order
    inner = kept[perm[-1]]
    stride = strides[inner]
    run = box[inner] if stride == 1 else 1
    return (float(numel(shape)), float(numel(box)), float(len(kept)), float(stride), float(run), float(perm != sorted(perm)))


@register_op(
    "layout", description="data movement: a transpose or strided slice of a box, however the reshapes around it spell it (+ epilogue)"
)
class Layout(OpSpec):
    # shape, box: 'x'-joined dims, outermost first; perm: ','-joined, the order copied dims are written in.
    params = ("shape", "box", "perm", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        for _ in range(100):
            scenario = choice(rng, ("transpose", "transpose", "heads", "slice", "stride", "window"))
            if scenario in ("transpose", "heads"):  # NCHW <-> NHWC, tokens x dim, heads split / merged
                dims = [log_uniform_int(rng, 4, 256) for _ in range(2 if scenario == "transpose" else 3)]
                if numel(dims) > MAX_SAMPLED:
                    continue
                whole: np.ndarray = np.arange(numel(dims)).reshape(dims)
                idx = whole.transpose(rng.permutation(len(dims)))
            elif scenario == "slice":  # x[:, :c], chunk, one of q/k/v
                outer, rows = choice(rng, (1, 1, 2, 3, 4)), log_uniform_int(rng, 8, 4096)
                whole = np.arange(outer * rows * 2).reshape(outer, 2, rows)
                idx = whole[:, 0, : max(1, int(rows * rng.uniform(0.2, 1.0)))]
            elif scenario == "stride":  # space-to-depth, x[..., ::2, ::2]
                c, hw = log_uniform_int(rng, 3, 128), choice(rng, (16, 32, 64, 112))
                whole = np.arange(c * hw * hw).reshape(c, hw, hw)
                idx = whole[:, int(rng.integers(2)) :: 2, int(rng.integers(2)) :: 2]
            else:  # window partition: (h/ws, ws, w/ws, ws, c) -> (h/ws, w/ws, ws, ws, c)
                ws, nh, c = choice(rng, (2, 4, 7, 8)), choice(rng, (2, 4, 8)), log_uniform_int(rng, 8, 192, 8)
                whole = np.arange(nh * ws * nh * ws * c).reshape(nh, ws, nh, ws, c)
                idx = whole.transpose(0, 2, 1, 3, 4)
            found = canonical_gather(idx, whole.size)
            if found is not None and numel(found[1]) <= MAX_SAMPLED:
                shape, box, perm = found
                epilogue = choice(rng, ("", "", "", "multiply.s", "add.t"))
                return {
                    "shape": "x".join(map(str, shape)),
                    "box": "x".join(map(str, box)),
                    "perm": ",".join(map(str, perm)),
                    "epilogue": epilogue,
                }
        raise RuntimeError("could not draw a layout configuration")  # pragma: no cover

    def emit(self, cfg: Config) -> tvm.IRModule:
        shape, box = _dims(cfg["shape"]), _dims(cfg["box"])
        perm = [int(p) for p in cfg["perm"].split(",")]

        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input(shape, "x")
            y = x
            if box != shape:
                y = b.emit(R.strided_slice(y, axes=list(range(len(shape))), begin=[0] * len(shape), end=list(box)))
            kept = [d for d in box if d > 1]
            if len(kept) != len(box):
                y = b.emit(R.reshape(y, kept))
            if perm != sorted(perm):
                y = b.emit(R.permute_dims(y, perm))
            return b.epilogue(y, cfg["epilogue"])

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        triples = (cfg["shape"], cfg["box"], cfg["perm"])
        if isinstance(cfg["shape"], np.ndarray):
            table = np.array([_copy_stats(*t) for t in zip(*triples, strict=True)], dtype=float).T
        else:
            table = np.array(_copy_stats(*triples), dtype=float)
        in_elems, elems, rank, stride, run, transposed = table
        feats = size_features(0.0 * elems, 4.0 * elems, 0.0, 4.0 * elems, cfg["epilogue"], elems)
        feats.update(
            {
                "in_elems": in_elems,
                "rank": rank,
                "read_stride": stride,
                "log_read_stride": np.log2(stride),
                "run": run,
                "log_run": np.log2(run),
                "transposed": transposed,
            }
        )
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        replay = gather_index(group.calls)
        if replay is None:
            return None
        idx, in_elems, used = replay
        if used == 0:
            return None
        found = canonical_gather(idx, in_elems)
        if found is None:
            return None
        epilogue = match_epilogue(group.calls[used:])
        if epilogue is None:
            return None
        shape, box, perm = found
        return {"shape": "x".join(map(str, shape)), "box": "x".join(map(str, box)), "perm": ",".join(map(str, perm)), "epilogue": epilogue}
