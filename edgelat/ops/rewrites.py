"""Rewrites before fusion: what a network means, built the way a deployment would build it.

A zero ``pad`` followed by a convolution (``nn.ZeroPad2d``, ``F.pad`` before a stride-2 conv in
TF-"same" style) is one padded convolution; built as written, TVM runs the pad as a kernel of its
own and the conv over the padded copy. The ONNX path gets the same from onnxslim's Pad-Conv
fusion; this pass gives it to every path (torch.export too), inside the one pass list profiling,
prediction and measurement share (:mod:`edgelat.ops.lowering`).
"""

from __future__ import annotations

from typing import Any

import tvm
from tvm import relax
from tvm.relax.dpl import is_op, rewrite_call, wildcard

__all__ = ["FoldPadIntoConv"]


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
