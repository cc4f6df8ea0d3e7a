"""Epilogues: the elementwise ops TVM fuses after an anchor op, as a string of tokens.

A token names one legalized op and where its other operand comes from:

- ``relu``, ``tir_clip``, ``tir_sigmoid``, ``gelu``, ...: unary;
- ``add.s``: binary with a scalar constant (``x + 3`` in hard-swish);
- ``add.c``: with a small broadcast operand (bias, folded batch norm: ``(1, C, 1, 1)``);
- ``add.t``: with another input of the same shape (a residual);
- ``mul.x``: with a larger input that the running value is broadcast to (squeeze-excite);
- ``multiply.i2``: with a value computed earlier in the same kernel, 2 steps back
  (swish's ``x * sigmoid(x)``).

Tokens are joined with ``+``. The same string is recovered from a network's fused kernel
(:func:`match_epilogue`) and turned back into Relax ops (:func:`emit_epilogue`), so what
is profiled is what networks run.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from tvm import relax
from tvm.relax import op as R

from edgelat.ops.lowering import TirCall

__all__ = ["ACTIVATIONS", "EpilogueBuilder", "epilogue_counts", "match_epilogue", "split_epilogue"]

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
}


def split_epilogue(epilogue: str) -> list[str]:
    return [t for t in epilogue.split("+") if t]


def match_epilogue(calls: Sequence[TirCall], values: Sequence[Any] | None = None) -> str | None:
    """The epilogue string of ``calls`` (the ops after the anchor), or None if not expressible."""
    tokens: list[str] = []
    for call in calls:
        if len(call.args) == 1:
            if call.op in UNARY:
                tokens.append(call.op)
            elif call.op in BINARY:
                tokens.append(f"{call.op}.s")
            else:
                return None
            continue
        if len(call.args) != 2 or call.op not in BINARY:
            return None
        if call.chained.count(True) != 1:
            if call.internal_back:
                tokens.append(f"{call.op}.i{call.internal_back}")
                continue
            return None
        other = call.args[call.chained.index(False)]
        running = call.args[call.chained.index(True)]
        if call.internal_back:
            tokens.append(f"{call.op}.i{call.internal_back}")
        elif other == call.out and running == call.out:
            tokens.append(f"{call.op}.t")
        elif other == call.out:
            tokens.append(f"{call.op}.x")
        else:
            tokens.append(f"{call.op}.c")
    return "+".join(tokens)


@functools.lru_cache(maxsize=4096)
def epilogue_counts(epilogue: str) -> Mapping[str, float]:
    """Feature counts of an epilogue: ops, transcendental ops, extra full-size inputs (read-only: cached per epilogue)."""
    tokens = split_epilogue(epilogue)
    return types.MappingProxyType(
        {
            "ep_ops": float(len(tokens)),
            "ep_transcendental": float(sum(t.split(".")[0] in TRANSCENDENTAL for t in tokens)),
            "ep_full_inputs": float(sum(t.endswith((".t", ".x")) for t in tokens)),
            "ep_channel_inputs": float(sum(t.endswith(".c") for t in tokens)),
        }
    )


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

    def epilogue(self, y: Any, epilogue: str, x_shape: Sequence[int] | None = None, anchor_input: Any = None) -> Any:
        """Apply ``epilogue`` to ``y``, the anchor's result.

        ``x_shape`` is the shape of a ``.x`` operand; ``anchor_input`` is the anchor's first
        input, which ``.iN`` tokens may refer back to (as a squeeze-excite gate scales it).
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
                small = [1, shape[1], 1, 1] if len(shape) == 4 else [shape[-1]]
                y = self.emit(BINARY[op](y, self.input(small)))
            elif kind == "t":
                y = self.emit(BINARY[op](y, self.input(shape)))
            elif kind == "x":
                if x_shape is None:
                    raise ValueError(f"epilogue token {token!r} needs the shape of its larger operand")
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
