"""Rewrites before fusion: what a network means, built the way a deployment would build it.

A zero ``pad`` followed by a convolution (``nn.ZeroPad2d``, ``F.pad`` before a stride-2 conv in
TF-"same" style) is one padded convolution; built as written, TVM runs the pad as a kernel of its
own and the conv over the padded copy. The ONNX path gets the same from onnxslim's Pad-Conv
fusion; this pass gives it to every path (torch.export too), inside the one pass list profiling,
prediction and measurement share (:mod:`edgelat.ops.lowering`).

Prediction needs the kernels a network runs, not the values of its constants: ``FoldConstant``
compiles and runs every computation on weights alone (a conv's bias reshaped for broadcasting, a
batch norm's ``rsqrt(var + eps) * gamma`` where none was folded into a conv) with LLVM, one build
each, and a network can have hundreds. :data:`StandInConstants` folds those into zeros of the right shape and type instead, so
the kernels come out the same, without a build (small integer results may be shapes, and are
left to ``FoldConstant``).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import tvm
from tvm import relax
from tvm.relax.dpl import is_op, rewrite_call, wildcard
from tvm.relax.expr_functor import PyExprMutator, mutator

__all__ = ["FoldPadIntoConv", "StandInConstants"]


def _fold_pad(func: relax.Function) -> relax.Function:
    data, weight = wildcard(), wildcard()
    pad = is_op("relax.nn.pad")(data)
    conv = is_op("relax.nn.conv2d")(pad, weight)

    def rewrite(expr: Any, matches: dict[Any, Any]) -> Any:
        p, c = matches[pad].attrs, matches[conv].attrs
        widths = [int(v) for v in p.pad_width]
        if str(p.pad_mode) != "constant" or float(p.pad_value) != 0.0 or len(widths) != 8 or any(widths[:4]) or c.data_layout != "NCHW":
            return expr
        top, left, bottom, right = (int(v) for v in c.padding)
        padding = [top + widths[4], left + widths[6], bottom + widths[5], right + widths[7]]
        return relax.op.nn.conv2d(matches[data], matches[weight], strides=c.strides, padding=padding, dilation=c.dilation,
                                  groups=c.groups, data_layout=c.data_layout, kernel_layout=c.kernel_layout,
                                  out_layout=c.out_layout, out_dtype=c.out_dtype or None)  # fmt: skip

    return rewrite_call(conv, rewrite, func)


@tvm.transform.module_pass(opt_level=0, name="FoldPadIntoConv")
def FoldPadIntoConv(mod: tvm.IRModule, _ctx: Any) -> tvm.IRModule:  # noqa: N802 - a TVM pass, named as TVM's are
    """Fold each zero pad that feeds a conv2d into the conv's padding."""
    functions = {gv: _fold_pad(f) if isinstance(f, relax.Function) else f for gv, f in mod.functions.items()}
    return tvm.IRModule(functions, attrs=mod.attrs, global_infos=mod.global_infos)


# An integer result this small may be a shape (for a reshape, a resize): computed for real.
_SHAPE_LIKE_ELEMENTS = 64
# TVM's FoldConstant does not materialise a tensor made from no inputs (``full``, ``arange``) above this
# many elements (its ShouldBeFolded); neither does this pass, so the kernels stay the same.
_LARGEST_CREATED = 1024


@mutator
class _StandIns(PyExprMutator):
    """Replaces each ``call_tir`` whose arguments are all constants with zeros of its result's shape."""

    def _constant(self, expr: Any) -> bool:
        if isinstance(expr, relax.Var):
            expr = self.lookup_binding(expr)
        return isinstance(expr, tvm.ir.expr.Constant)

    def visit_call_(self, call: Any) -> Any:
        call = super().visit_call_(call)
        if call.op != tvm.ir.Op.get("relax.call_tir"):
            return call
        args = call.args[1]
        fields = list(args.fields) if isinstance(args, relax.Tuple) else [args]
        if not all(self._constant(a) for a in fields):
            return call
        shape, dtype = getattr(call.ty, "shape", None), getattr(call.ty, "dtype", None)
        try:
            dims = [int(d) for d in getattr(shape, "values", shape)]  # type: ignore[union-attr]
        except (TypeError, ValueError):  # no shape, or a symbolic one
            return call
        if dtype is None or ("int" in str(dtype) and math.prod(dims) <= _SHAPE_LIKE_ELEMENTS):
            return call
        if not fields and math.prod(dims) > _LARGEST_CREATED:  # FoldConstant leaves these to run
            return call
        return relax.const(np.zeros(dims, dtype=str(dtype)))


@tvm.transform.module_pass(opt_level=0, name="StandInConstants")
def StandInConstants(mod: tvm.IRModule, _ctx: Any) -> tvm.IRModule:  # noqa: N802 - a TVM pass, named as TVM's are
    """Fold computations on constants alone into zeros of their shape (after ``LegalizeOps``); for
    prediction only, since the values are wrong."""
    functions = {gv: _StandIns(mod).visit_expr(f) if isinstance(f, relax.Function) else f for gv, f in mod.functions.items()}
    return tvm.IRModule(functions, attrs=mod.attrs, global_infos=mod.global_infos)
