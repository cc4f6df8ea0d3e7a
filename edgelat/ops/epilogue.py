"""Epilogues: the elementwise ops TVM fuses after an anchor op, as a string of tokens.

A token names one legalized op and where its other operand comes from:

- ``relu``, ``tir_clip``, ``tir_sigmoid``, ``gelu``, ...: unary;
- ``add.s``: binary with a scalar constant (``x + 3`` in hard-swish);
- ``add.c``: with a small broadcast operand (bias, folded batch norm: ``(1, C, 1, 1)``);
- ``add.t``: with another input of the same shape (a residual);
- ``multiply.x49``: with a larger input that the running value is broadcast to, here 49 times its size
  (a squeeze-excite gate of shape ``(1, C, 1, 1)`` scaling a ``(1, C, 7, 7)`` map: the kernel writes the
  larger tensor, so that is its output). A bare ``.x`` (older profiles) leaves the size to the caller;
- ``multiply.i2``: with a value computed earlier in the same kernel, 2 steps back
  (swish's ``x * sigmoid(x)``).

Tokens are joined with ``+``. The same string is recovered from a network's fused kernel
(:func:`match_epilogue`) and turned back into Relax ops (:meth:`EpilogueBuilder.epilogue`), so
what is profiled is what networks run.

Epilogues are recognised by what they compute, not by how they were written: any elementwise
op TVM fused is a token (its pattern says so, whatever its name), an operand of one element is a
scalar, ``maximum``/``minimum`` by constants is a clip, and a run of scalar and self-referring ops
that computes a known activation (hard-swish as ``HardSwish``, as ``x * relu6(x + 3) / 6`` or
``x * (x + 3).clamp(0, 6) / 6``; SiLU as ``x * sigmoid(x)``; GELU with erf or tanh written out)
becomes that activation's one canonical chain (:func:`canonical_epilogue`).
"""

from __future__ import annotations

import functools
import math
import types
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tvm import relax
from tvm.relax import op as R

from edgelat.ops.lowering import TirCall

__all__ = ["ACTIVATIONS", "EpilogueBuilder", "broadcast_factor", "broadcast_shape", "canonical_epilogue", "epilogue_after", "epilogue_counts", "match_epilogue", "reads_anchor_input", "rescale_broadcast", "split_epilogue"]

UNARY: dict[str, Callable[[Any], Any]] = {
    "relu": R.nn.relu,
    "tir_clip": lambda y: R.clip(y, 0.0, 6.0),
    "clip": lambda y: R.clip(y, 0.0, 6.0),
    "tir_sigmoid": R.sigmoid,
    "sigmoid": R.sigmoid,
    "gelu": R.nn.gelu,
    "silu": R.nn.silu,
    "tir_tanh": R.tanh,
    "tanh": R.tanh,
    "tir_exp": R.exp,
    "exp": R.exp,
    "tir_sqrt": R.sqrt,
    "sqrt": R.sqrt,
    "erf": R.erf,
    "tir_erf": R.erf,
    "gelu_tanh": R.nn.gelu_tanh,
    "leaky_relu": lambda y: R.nn.leakyrelu(y, 0.01),  # the slope is not in the token: the same work whatever it is
    "tir_log": R.log,
    "log": R.log,
    "tir_abs": R.abs,
    "abs": R.abs,
}
BINARY: dict[str, Callable[[Any, Any], Any]] = {
    "add": R.add,
    "subtract": R.subtract,
    "multiply": R.multiply,
    "divide": R.divide,
    "maximum": R.maximum,
    "minimum": R.minimum,
    "power": R.power,
}
# Transcendental ops cost far more per element than add or clip.
TRANSCENDENTAL = {
    "tir_sigmoid",
    "sigmoid",
    "gelu",
    "gelu_tanh",
    "silu",
    "tir_tanh",
    "tanh",
    "tir_exp",
    "exp",
    "erf",
    "tir_erf",
    "tir_sqrt",
    "sqrt",
    "power",
    "log",
    "tir_log",
    "softplus",
}

# Activations as the torch frontend lowers them (checked against real networks' kernels).
ACTIVATIONS: dict[str, str] = {
    "relu": "relu",
    "relu6": "tir_clip",
    "sigmoid": "tir_sigmoid",
    "hswish": "add.s+tir_clip+tir_clip+multiply.i3+divide.s",
    "hsigmoid": "add.s+tir_clip+tir_clip+divide.s",
    "swish": "tir_sigmoid+multiply.i1",
    "gelu": "gelu",
    "gelu_tanh": "gelu_tanh",
}


def split_epilogue(epilogue: str) -> list[str]:
    return [t for t in epilogue.split("+") if t]


def match_epilogue(calls: Sequence[TirCall], values: Sequence[Any] | None = None) -> str | None:
    """The canonical epilogue string of ``calls`` (the ops after the anchor), or None if one is not elementwise."""
    tokens: list[str] = []
    for call in calls:
        token = _token(call)
        if token is None:
            return None
        tokens.append(token)
    return canonical_epilogue("+".join(tokens))


def epilogue_after(calls: Sequence[TirCall], skip: int) -> str | None:
    """The epilogue of ``calls`` with its first ``skip`` ops taken as part of the anchor (``sum`` then
    ``/ n`` is a mean): later ops that read the skipped values read the anchor's result instead."""
    tokens = [_token(c) for c in calls]
    if any(t is None for t in tokens):
        return None
    toks = _parse("+".join(tokens))  # type: ignore[arg-type]
    return canonical_epilogue(_render(_replace(toks, 0, skip, [])))


def _numel(shape: tuple[int, ...] | None) -> int:
    n = 1
    for d in shape or ():
        n *= d
    return n if shape is not None else -1


def _token(call: TirCall) -> str | None:
    """One elementwise call as a token: its op and where its other operand comes from."""
    if call.pattern > 1:  # injective, reduction, anchor or opaque: not an epilogue op
        return None
    if call.out is None or any(a is not None and len(a) > len(call.out) for a in call.args):
        return None
    if not any(a == call.out for a in call.args):
        return None  # no operand has the output's shape (a pad, say): not elementwise
    tensors = [i for i, a in enumerate(call.args) if a is not None and _numel(a) > 1]
    if call.internal_back:
        return f"{call.op}.i{call.internal_back}"
    if len(call.args) == 1 or len(tensors) == 1 and (not any(call.chained) or call.chained[tensors[0]]):
        # one tensor operand, the others scalars (or folded into the op): unary, or binary with a constant
        return f"{call.op}.s" if len(call.args) > 1 or call.op in _BINARY_NAMES else call.op
    if not any(call.chained):  # a side branch on the kernel's other inputs, joined later
        return f"{call.op}.t" if call.out in call.args else f"{call.op}.c"
    if len(call.args) != 2 or call.chained.count(True) != 1:
        return None
    running = call.args[call.chained.index(True)]
    other = call.args[call.chained.index(False)]
    if other == call.out and running == call.out:
        return f"{call.op}.t"
    if other == call.out:
        factor = _numel(other) // max(_numel(running), 1)
        return f"{call.op}.x{factor}" if factor > 1 else f"{call.op}.x"
    return f"{call.op}.c"


# Binary ops whose constant operand legalization may fold into the op itself.
_BINARY_NAMES = {*BINARY, "floor_divide", "floor_mod", "mod", "greater", "less", "equal", "not_equal", "greater_equal", "less_equal"}
# Legalization names some ops with a ``tir_`` prefix and some not, depending on the path they took.
_TIR_SPELLED = {"clip", "sigmoid", "tanh", "exp", "sqrt", "log", "abs", "negative"}
# Scalar affine ops: ``x / 6`` and ``x * (1/6)`` do the same work.
_AFFINE = {"add.s", "subtract.s", "multiply.s", "divide.s"}


@dataclass
class _Tok:
    op: str
    kind: str  # "", "s", "c", "t", "i", or "x" with its broadcast factor ("x49")
    ref: int = -1  # for kind "i": the history index it reads (0 the anchor's input, 1 its output, k+2 token k's result)

    def text(self, position: int) -> str:
        if self.kind == "i":
            return f"{self.op}.i{position + 1 - self.ref}"
        return f"{self.op}.{self.kind}" if self.kind else self.op


def _parse(epilogue: str) -> list[_Tok]:
    toks = []
    for position, token in enumerate(split_epilogue(epilogue)):
        op, _, kind = token.partition(".")
        base = op.removeprefix("tir_")
        op = f"tir_{base}" if base in _TIR_SPELLED else op
        if kind.startswith("i"):
            toks.append(_Tok(op, "i", position + 1 - int(kind[1:])))
        else:
            toks.append(_Tok(op, kind))
    return toks


def _render(toks: list[_Tok]) -> str:
    return "+".join(t.text(i) for i, t in enumerate(toks))


def _replace(toks: list[_Tok], start: int, stop: int, new: list[_Tok]) -> list[_Tok]:
    """``toks[start:stop]`` replaced by ``new`` (whose refs are relative to ``start``), later refs shifted."""
    shift = len(new) - (stop - start)
    placed = [_Tok(t.op, t.kind, t.ref + start if t.kind == "i" else -1) for t in new]
    after = [_Tok(t.op, t.kind, t.ref + shift if t.kind == "i" and t.ref >= stop + 1 else t.ref) for t in toks[stop:]]
    return toks[:start] + placed + after


def _merge_clips(toks: list[_Tok]) -> list[_Tok]:
    """``maximum``/``minimum`` by constants (in either order), and a clip of a clip, are one clip."""
    i = 0
    while i + 1 < len(toks):
        a, b = toks[i], toks[i + 1]
        pair = {f"{a.op}.{a.kind}", f"{b.op}.{b.kind}"}
        referenced = any(t.kind == "i" and t.ref == i + 2 for t in toks)  # a's own result is read later
        if not referenced and (pair == {"maximum.s", "minimum.s"} or (a.op == b.op == "tir_clip" and not a.kind and not b.kind)):
            toks = _replace(toks, i, i + 2, [_Tok("tir_clip", "")])
            continue
        i += 1
    return toks


def _activation(segment: list[_Tok], start: int) -> str | None:
    """The named activation a run of scalar and self-referring ops computes, if it is a known one."""
    names = [t.op for t in segment]
    affine = sum(f"{t.op}.{t.kind}" in _AFFINE for t in segment)
    gates = sum(t.kind == "i" for t in segment)
    if any(t.kind == "i" and t.ref < start + 1 for t in segment):
        return None  # reads a value from before the run
    rest = [n for t, n in zip(segment, names, strict=True) if f"{t.op}.{t.kind}" not in _AFFINE and t.kind != "i"]
    if rest == ["tir_clip"]:
        if affine and f"{segment[0].op}.{segment[0].kind}" not in _AFFINE:
            return None  # hard sigmoid and hard swish shift or scale before they clip
        return (
            "hswish"
            if gates == 1 and affine >= 1
            else "hsigmoid"
            if gates == 0 and affine >= 1
            else "relu6"
            if not affine and not gates
            else None
        )
    if rest == ["tir_sigmoid"] and not affine:
        return "swish" if gates == 1 else "sigmoid" if gates == 0 else None
    if rest in (["erf"], ["tir_erf"]) and gates >= 1 and affine >= 1:
        return "gelu"
    if sorted(rest) in (["tir_tanh"], ["power.s", "tir_tanh"]) and gates >= 2 and affine >= 2:
        return "gelu_tanh"
    if rest == ["gelu"] and not affine and not gates:
        return "gelu"
    if rest == ["silu"] and not affine and not gates:
        return "swish"
    if rest in (["hardswish"], ["hard_swish"]) and not affine and not gates:
        return "hswish"
    return None


def canonical_epilogue(epilogue: str) -> str:
    """One spelling per computation: see the module docstring. Idempotent."""
    toks = _merge_clips(_parse(epilogue))
    i = 0
    while i < len(toks):
        if toks[i].kind not in ("", "s", "i"):
            i += 1
            continue
        j = i
        while j < len(toks) and toks[j].kind in ("", "s", "i"):
            j += 1
        # the longest run starting at i that is a known activation, and whose inner values nothing after it reads
        for stop in range(j, i, -1):
            name = _activation(toks[i:stop], i)
            inner_read = any(t.kind == "i" and i + 1 < t.ref < stop + 1 for t in toks[stop:])
            if name is not None and not inner_read:
                chain = _parse(ACTIVATIONS[name])
                if [(t.op, t.kind, t.ref) for t in toks[i:stop]] != [(t.op, t.kind, t.ref + i) for t in chain]:
                    toks = _replace(toks, i, stop, chain)
                i += len(chain)
                break
        else:
            i += 1
    return _render(toks)


def broadcast_factor(kind: str) -> int | None:
    """How many times larger than the running value a ``.x`` operand is (``"x49"`` -> 49); None for a bare
    ``x``, whose size the caller gives. Not a ``.x`` kind: ValueError."""
    if not kind.startswith("x") or not (kind[1:].isdigit() or kind == "x"):
        raise ValueError(f"not a broadcast operand: {kind!r}")
    return int(kind[1:]) if kind[1:] else None


def reads_anchor_input(epilogue: str) -> bool:
    """Whether a token of ``epilogue`` reads the anchor's input (``multiply.i5`` after a mean: a gate scaling the
    map it was pooled from, so the kernel writes the input's size, not the anchor's)."""
    return any(t.kind == "i" and t.ref == 0 for t in _parse(epilogue))


def rescale_broadcast(epilogue: str, scale: Callable[[int], int]) -> str:
    """``epilogue`` with every ``.xN`` factor replaced by ``scale(N)`` (a sampler perturbing a gated map's size)."""
    tokens = []
    for token in split_epilogue(epilogue):
        op, _, kind = token.partition(".")
        factor = broadcast_factor(kind) if kind.startswith("x") else None
        tokens.append(f"{op}.x{max(2, scale(factor))}" if factor else token)
    return "+".join(tokens)


@functools.lru_cache(maxsize=4096)
def epilogue_counts(epilogue: str) -> Mapping[str, float]:
    """Feature counts of an epilogue (read-only: cached per epilogue).

    ``ep_ops``, ``ep_transcendental``, ``ep_full_inputs`` and ``ep_channel_inputs`` count tokens. The
    ``ep_scaled_*`` counts weigh each op by the size it runs at, in units of the anchor's output: 1 until
    a ``.xN`` token broadcasts the running value to N times its size, N after it (a squeeze-excite gate's
    sigmoid runs on C values, its multiply on C x H x W); ``ep_out_scale`` is the output's size so.
    """
    tokens = split_epilogue(epilogue)
    scale, work, inputs = 1.0, 0.0, 0.0
    for token in tokens:
        op, _, kind = token.partition(".")
        if kind.startswith("x"):
            scale *= broadcast_factor(kind) or 1
        if kind.startswith("x") or kind == "t":
            inputs += scale
        work += scale * (1.0 + 8.0 * (op in TRANSCENDENTAL))
    return types.MappingProxyType(
        {
            "ep_ops": float(len(tokens)),
            "ep_transcendental": float(sum(t.split(".")[0] in TRANSCENDENTAL for t in tokens)),
            "ep_full_inputs": float(sum(t.partition(".")[2][:1] in ("t", "x") for t in tokens)),
            "ep_channel_inputs": float(sum(t.endswith(".c") for t in tokens)),
            "ep_out_scale": scale,
            "ep_scaled_work": work,
            "ep_scaled_inputs": inputs,
        }
    )


def broadcast_shape(shape: Sequence[int], factor: int) -> list[int]:
    """A shape ``factor`` times larger that ``shape`` broadcasts to: the factor goes into ``shape``'s dims of one
    after the batch (a matrix's rows too), split over the last two as evenly as it divides (a gate of
    ``(1, C, 1, 1)`` and 49 give ``(1, C, 7, 7)``; the same elements in the same order whatever the split)."""
    ones = [i for i, d in enumerate(shape) if d == 1 and (i > 0 or len(shape) <= 2)][-2:]
    if not ones:
        raise ValueError(f"a value of shape {tuple(shape)} has no dim of one to broadcast over")
    out = list(shape)
    if len(ones) == 1:
        out[ones[0]] = factor
    else:
        a = max(d for d in range(1, math.isqrt(factor) + 1) if factor % d == 0)
        out[ones[0]], out[ones[1]] = a, factor // a
    return out


class EpilogueBuilder:
    """Emits a Relax function: inputs are collected as they are asked for."""

    def __init__(self) -> None:
        self.bb = relax.BlockBuilder()
        self.params: list[relax.Var] = []

    def input(self, shape: Sequence[int], name: str | None = None, dtype: str = "float32") -> relax.Var:
        var = relax.Var(name or f"p{len(self.params)}", relax.TensorType([int(s) for s in shape], dtype))
        self.params.append(var)
        return var

    def emit(self, expr: Any) -> Any:
        return self.bb.emit(expr)

    def epilogue(
        self, y: Any, epilogue: str, x_shape: Sequence[int] | None = None, anchor_input: Any = None, channel_axis: int | None = None
    ) -> Any:
        """Apply ``epilogue`` to ``y``, the anchor's result.

        ``x_shape`` is the shape of a bare ``.x`` operand; ``anchor_input`` is the anchor's first
        input, which ``.iN`` tokens may refer back to (as a squeeze-excite gate scales it);
        ``channel_axis`` is the axis a ``.c`` operand runs along (default: 1 for a 4-D value, else the last).
        """
        history = [y] if anchor_input is None else [anchor_input, y]
        for token in split_epilogue(epilogue):
            op, _, kind = token.partition(".")
            shape = [int(s) for s in self._shape(y)]
            if not kind:
                y = self.emit(UNARY[op](y))
            elif kind == "s":
                y = self.emit(BINARY[op](y, relax.const(3.0, "float32")))
            elif kind == "c":
                # one value per channel: (1, C, 1, 1) after a conv, (N,) after a matmul, (1, C, 1) after a conv1d
                axis = channel_axis if channel_axis is not None else 1 if len(shape) == 4 else len(shape) - 1
                small = [d if i == axis else 1 for i, d in enumerate(shape)] if axis != len(shape) - 1 else [shape[-1]]
                y = self.emit(BINARY[op](y, self.input(small)))
            elif kind == "t":
                y = self.emit(BINARY[op](y, self.input(shape)))
            elif kind.startswith("x"):
                factor = broadcast_factor(kind)
                if factor is not None:
                    y = self.emit(BINARY[op](self.input(broadcast_shape(shape, factor)), y))
                elif x_shape is None:
                    raise ValueError(f"epilogue token {token!r} needs the shape of its larger operand")
                else:
                    y = self.emit(BINARY[op](self.input(x_shape), y))
            elif kind.startswith("i"):
                back = int(kind[1:])
                y = self.emit(BINARY[op](history[max(0, len(history) - 1 - back)], y))
            else:
                raise ValueError(f"bad epilogue token {token!r}")
            history.append(y)
        return y

    @staticmethod
    def _shape(expr: Any) -> list[int]:
        from edgelat.ops.lowering import shape_of

        shape = shape_of(expr)
        assert shape is not None, "epilogues need static shapes"
        return list(shape)

    def build(self, body: Callable[[EpilogueBuilder], Any]) -> Any:
        """Run ``body(self)`` inside a dataflow block of ``main`` and return the IRModule."""
        with self.bb.function("main"):
            with self.bb.dataflow():
                out = body(self)
                gv = self.bb.emit_output(out)
            self.bb.emit_func_output(gv, params=self.params)
        return self.bb.get()
