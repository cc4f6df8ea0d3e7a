"""Data movement and normalisation: concat, channel shuffle, softmax, layer norm, squeeze-excite."""

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
    numel,
    per_config,
    perturb,
    pick_seed,
    size_features,
)
from edgelat.ops.epilogue import ACTIVATIONS, EpilogueBuilder, match_epilogue
from edgelat.ops.lowering import FusedGroup
from edgelat.ops.registry import OpSpec, register_op


def _total_channels(channels: str) -> int:
    return sum(int(c) for c in channels.split("+"))


@register_op("concat", description="channel concatenation of 2-8 NCHW tensors (+ fused epilogue)")
class Concat(OpSpec):
    # channels: the inputs' channel counts joined with "+", e.g. "64+128+32+32".
    params = ("n", "channels", "h", "w", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            hw = perturb(rng, seed["h"], spread=0.3)
            chans = "+".join(str(perturb(rng, int(c), multiple=8 if int(c) >= 16 else 1)) for c in seed["channels"].split("+"))
            return {**seed, "channels": chans, "h": hw, "w": hw}
        hw = choice(rng, SPATIAL)
        parts = int(choice(rng, (2, 2, 2, 3, 4)))
        return {"n": 1, "channels": "+".join(str(log_uniform_int(rng, 8, 384, 8)) for _ in range(parts)), "h": hw, "w": hw, "epilogue": ""}

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            xs = [b.input((cfg["n"], int(c), cfg["h"], cfg["w"]), f"x{i}") for i, c in enumerate(cfg["channels"].split("+"))]
            return b.epilogue(b.emit(R.concat(xs, axis=1)), cfg["epilogue"], anchor_input=xs[0])

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        channels = cfg["channels"]
        elems = cfg["n"] * per_config(_total_channels, channels) * cfg["h"] * cfg["w"]
        feats = size_features(0.0 * elems, 4.0 * elems, 0.0, 4.0 * elems, cfg["epilogue"], elems)
        feats.update(
            {
                "inputs": per_config(lambda s: len(s.split("+")), channels),
                "c_min": per_config(lambda s: min(int(c) for c in s.split("+")), channels),
                "h": cfg["h"],
                **loop_features("w", cfg["w"]),
            }
        )
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        """A concat along any axis copies, for each index of the axes before it, one run of each input:
        the same copies as a channel concat with those axes as batch and the axes after it as one row."""
        first = group.calls[0]
        shapes = [a for a in first.args if a is not None and len(a) >= 1]
        if first.op != "concatenate" or not 2 <= len(first.args) <= 8 or len(shapes) != len(first.args) or first.out is None:
            return None
        rank = len(first.out)
        axis = (first.attrs or {}).get("axis")
        if axis is None:  # the axis where the inputs differ, else channels
            differ = [i for i in range(rank) if len({a[i] for a in shapes}) > 1]
            axis = differ[0] if differ else min(1, rank - 1)
        axis = int(axis) % rank
        epilogue = match_epilogue(group.calls[1:])
        if epilogue is None:
            return None
        if rank == 4 and axis == 1:
            n, _, h, w = shapes[0]
        else:
            n, h, w = numel(first.out[:axis]), 1, numel(first.out[axis + 1 :])
        return {"n": n, "channels": "+".join(str(a[axis]) for a in shapes), "h": h, "w": w, "epilogue": epilogue}


@register_op("split", description="a split of one tensor into 2-8 parts along any axis (chunk, split), one kernel")
class Split(Concat):
    """A concat run backwards: the same copies, from one input into several outputs. The input is
    seen as (n, parts along the axis, h, w) exactly as :class:`Concat` sees its output."""

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        return {**super().sample(rng, seeds), "epilogue": ""}

    def emit(self, cfg: Config) -> tvm.IRModule:
        sizes = [int(c) for c in cfg["channels"].split("+")]
        points = [int(v) for v in np.cumsum(sizes)[:-1]]

        def body(b: EpilogueBuilder):  # noqa: ANN202
            return b.emit(R.split(b.input((cfg["n"], sum(sizes), cfg["h"], cfg["w"]), "x"), points, axis=1))

        return EpilogueBuilder().build(body)

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        x = first.args[0] if first.args else None
        if first.op != "split" or len(group.calls) != 1 or x is None or first.attrs is None:
            return None
        axis = int(first.attrs.get("axis", 0)) % len(x)
        sections: Any = first.attrs.get("indices_or_sections")
        points = [int(p) for p in sections] if isinstance(sections, list) else None
        if points is None:
            count = int(sections)
            if x[axis] % count:
                return None
            points = [x[axis] // count * i for i in range(1, count)]
        sizes = [b - a for a, b in zip([0, *points], [*points, x[axis]], strict=True)]
        if not 2 <= len(sizes) <= 8 or min(sizes) < 1:
            return None
        if len(x) == 4 and axis == 1:
            n, h, w = x[0], x[2], x[3]
        else:
            n, h, w = numel(x[:axis]), 1, numel(x[axis + 1 :])
        return {"n": n, "channels": "+".join(map(str, sizes)), "h": h, "w": w, "epilogue": ""}


@register_op(
    "channel_shuffle",
    description="ShuffleNet channel shuffle (reshape, transpose, reshape), optionally with the concat before and the split after",
)
class ChannelShuffle(OpSpec):
    # concat: the two branches are concatenated in the same kernel; split: it ends by splitting in two.
    params = ("n", "c", "h", "w", "groups", "concat", "split")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            hw = perturb(rng, seed["h"], spread=0.3)
            return {**seed, "c": perturb(rng, seed["c"] // (2 * seed["groups"]), multiple=4) * 2 * seed["groups"], "h": hw, "w": hw}
        groups = choice(rng, (2, 2, 3, 4))
        hw = choice(rng, SPATIAL[:8])
        fused = int(rng.random() < 0.7)
        return {
            "n": 1,
            "c": log_uniform_int(rng, 8, 256, 4) * 2 * groups,
            "h": hw,
            "w": hw,
            "groups": groups,
            "concat": fused,
            "split": fused,
        }

    def emit(self, cfg: Config) -> tvm.IRModule:
        n, c, h, w, g = cfg["n"], cfg["c"], cfg["h"], cfg["w"], cfg["groups"]

        def body(b: EpilogueBuilder):  # noqa: ANN202
            if cfg["concat"]:
                x = b.emit(R.concat([b.input((n, c // 2, h, w), "a"), b.input((n, c - c // 2, h, w), "b")], axis=1))
            else:
                x = b.input((n, c, h, w), "x")
            y = b.emit(R.reshape(x, (n, g, c // g, h, w)))
            y = b.emit(R.permute_dims(y, [0, 2, 1, 3, 4]))
            y = b.emit(R.reshape(y, (n, c, h, w)))
            return b.emit(R.split(y, 2, axis=1)) if cfg["split"] else y

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        elems = cfg["n"] * cfg["c"] * cfg["h"] * cfg["w"]
        feats = size_features(0.0 * elems, 4.0 * elems, 0.0, 4.0 * elems, "", elems)
        feats.update(
            {
                "groups": cfg["groups"],
                "concat": cfg["concat"],
                "split": cfg["split"],
                "c": cfg["c"],
                "h": cfg["h"],
                **loop_features("w", cfg["w"]),
            }
        )
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        """By the copy it does, however the reshapes spell it: the channels seen as (groups, c / groups)
        and transposed, each plane moved whole (:func:`~edgelat.ops.layout.canonical_gather`)."""
        from edgelat.ops.layout import canonical_gather, gather_index

        ops = group.ops
        concat = int(bool(ops) and ops[0] == "concatenate")
        split = int(bool(ops) and ops[-1] == "split" and len(ops) > 1)
        core = group.calls[concat : len(ops) - split]
        if not core or (concat and (len(group.calls[0].args) != 2 or group.calls[0].args[0] is None)):
            return None
        x = core[0].args[0] if core[0].args else None
        replay = gather_index(core)
        if x is None or len(x) != 4 or x[0] != 1 or replay is None or replay[2] != len(core):
            return None
        found = canonical_gather(replay[0], replay[1])
        if found is None or len(found[0]) != 3 or found[0] != found[1] or found[2] != (1, 0, 2) or found[0][2] != x[2] * x[3]:
            return None
        if concat:
            a = group.calls[0].args[0]
            assert a is not None  # checked above
            if 2 * a[1] != x[1]:
                return None
        return {"n": x[0], "c": x[1], "h": x[2], "w": x[3], "groups": found[0][0], "concat": concat, "split": split}


@register_op("softmax", description="softmax over the last axis of a (rows, cols) tensor")
class Softmax(OpSpec):
    params = ("rows", "cols")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            return {"rows": perturb(rng, seed["rows"]), "cols": perturb(rng, seed["cols"])}
        return {"rows": choice(rng, (1, 1, 49, 196, 784)), "cols": choice(rng, (10, 100, 1000, 49, 196))}

    def emit(self, cfg: Config) -> tvm.IRModule:
        return EpilogueBuilder().build(lambda b: b.emit(R.nn.softmax(b.input((cfg["rows"], cfg["cols"]), "x"), axis=-1)))

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        elems = cfg["rows"] * cfg["cols"]
        feats = size_features(5.0 * elems, 4.0 * elems, 0.0, 4.0 * elems, "", elems)
        feats.update({"rows": cfg["rows"], "cols": cfg["cols"], **loop_features("cols", cfg["cols"])})
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.op != "softmax" or len(group.calls) != 1 or not first.args or first.args[0] is None:
            return None
        shape = first.args[0]
        if int((first.attrs or {}).get("axis", -1)) % len(shape) != len(shape) - 1:
            return None  # over another axis the rows are strided: not this kind
        rows = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
        return {"rows": rows, "cols": shape[-1]}


@register_op("layernorm", description="layer normalisation over the last axis of (rows, dim)")
class LayerNorm(OpSpec):
    params = ("rows", "dim")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        seed = pick_seed(rng, seeds)
        if seed is not None:
            return {"rows": perturb(rng, seed["rows"]), "dim": perturb(rng, seed["dim"], multiple=8)}
        return {"rows": choice(rng, (1, 49, 64, 196, 256)), "dim": log_uniform_int(rng, 32, 1024, 8)}

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["rows"], cfg["dim"]), "x")
            return b.emit(R.nn.layer_norm(x, b.input((cfg["dim"],), "gamma"), b.input((cfg["dim"],), "beta"), axes=[-1]))

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        elems = cfg["rows"] * cfg["dim"]
        feats = size_features(8.0 * elems, 4.0 * elems, 8.0 * cfg["dim"], 4.0 * elems, "", elems)
        feats.update({"rows": cfg["rows"], "dim": cfg["dim"], **loop_features("dim", cfg["dim"])})
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        if first.op != "layer_norm" or len(group.calls) != 1 or not first.args or first.args[0] is None:
            return None
        shape = first.args[0]
        return {"rows": int(np.prod(shape[:-1])) if len(shape) > 1 else 1, "dim": shape[-1]}


@register_op("group_norm", description="group normalisation of NCHW (instance norm is one group per channel) + fused epilogue")
class GroupNorm(OpSpec):
    params = ("n", "c", "h", "w", "groups", "epilogue")

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        c = log_uniform_int(rng, 16, 512, 16)
        groups = choice(rng, (c, 32 if c % 32 == 0 else c, 8 if c % 8 == 0 else c, 1))
        hw = choice(rng, SPATIAL[:10])
        return {"n": 1, "c": c, "h": hw, "w": hw, "groups": groups, "epilogue": choice(rng, ("", "relu", "relu", "add.t+relu"))}

    def emit(self, cfg: Config) -> tvm.IRModule:
        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((cfg["n"], cfg["c"], cfg["h"], cfg["w"]), "x")
            y = b.emit(
                R.nn.group_norm(
                    x, b.input((cfg["c"],), "gamma"), b.input((cfg["c"],), "beta"), num_groups=cfg["groups"], channel_axis=1, axes=[2, 3]
                )
            )
            return b.epilogue(y, cfg["epilogue"])

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        elems = cfg["n"] * cfg["c"] * cfg["h"] * cfg["w"]
        feats = size_features(8.0 * elems, 4.0 * elems, 8.0 * cfg["c"], 4.0 * elems, cfg["epilogue"], elems)
        feats.update(
            {"c": cfg["c"], "groups": cfg["groups"], "group_size": elems / (cfg["n"] * cfg["groups"]), **loop_features("w", cfg["w"])}
        )
        return feats

    def match(self, group: FusedGroup) -> Config | None:
        first = group.calls[0]
        x = first.args[0] if first.args else None
        if first.op not in ("group_norm", "instance_norm") or x is None or len(x) not in (3, 4) or first.attrs is None:
            return None
        a = first.attrs
        if int(a.get("channel_axis", 1)) != 1 or sorted(int(i) % len(x) for i in a.get("axes", ())) != list(range(2, len(x))):
            return None
        n, c, h, w = x if len(x) == 4 else (x[0], x[1], 1, x[2])
        epilogue = match_epilogue(group.calls[1:])
        if epilogue is None:
            return None
        return {"n": n, "c": c, "h": h, "w": w, "groups": int(a["num_groups"]) if first.op == "group_norm" else c, "epilogue": epilogue}


@register_op(
    "squeeze_excite", description="a whole squeeze-excite block (pool, 1x1 reduce, relu, 1x1 expand, hsigmoid, scale); several kernels"
)
class SqueezeExcite(OpSpec):
    """Profiled as a unit (the sum of its kernels); networks' SE blocks match the kinds they fuse into."""

    params = ("n", "c", "h", "w", "reduced")
    composite = True

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        hw = choice(rng, (7, 14, 28, 56))
        c = log_uniform_int(rng, 16, 960, 8)
        return {"n": 1, "c": c, "h": hw, "w": hw, "reduced": max(8, (c // 4) // 8 * 8)}

    def emit(self, cfg: Config) -> tvm.IRModule:
        n, c, h, w, r = cfg["n"], cfg["c"], cfg["h"], cfg["w"], cfg["reduced"]

        def body(b: EpilogueBuilder):  # noqa: ANN202
            x = b.input((n, c, h, w), "x")
            s = b.emit(R.mean(x, axis=[2, 3], keepdims=True))
            s = b.emit(R.nn.conv2d(s, b.input((r, c, 1, 1), "w1")))
            s = b.epilogue(s, "add.c+relu")
            s = b.emit(R.nn.conv2d(s, b.input((c, r, 1, 1), "w2")))
            s = b.epilogue(s, "add.c+" + ACTIVATIONS["hsigmoid"])
            return b.emit(R.multiply(x, s))

        return EpilogueBuilder().build(body)

    def features(self, cfg: Mapping[str, Any]) -> dict[str, float]:
        n, c, h, w, r = cfg["n"], cfg["c"], cfg["h"], cfg["w"], cfg["reduced"]
        elems = n * c * h * w
        feats = size_features(2.0 * elems + 4.0 * n * c * r, 8.0 * elems, 8.0 * c * r, 4.0 * elems, "", elems)
        feats.update({"c": c, "h": h, "reduced": r})
        return feats


__all__ = ["ChannelShuffle", "Concat", "GroupNorm", "Split", "LayerNorm", "Softmax", "SqueezeExcite", "match_epilogue"]
