"""How a Relax module becomes the kernels a device runs: one pass list, used everywhere.

The kernels edgelat profiles, the kernels it predicts for a network, and the network it
measures end to end all come out of :func:`fuse`, so a kernel sum is a sum of what the
measured build really runs. The pass list is TVM's own fusion (``FuseOps``/``FuseTIR``)
after zero pads are folded into the convs they feed (:mod:`edgelat.ops.rewrites`) and
inference-time decomposition; ``CanonicalizeBindings`` first removes the tuple
that batch norm leaves behind, which otherwise keeps activations out of the conv kernel.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from typing import Any

import tvm
from tvm import relax

__all__ = [
    "FUSION_PIPELINE_VERSION",
    "FusedGroup",
    "TirCall",
    "fuse",
    "fused_groups",
    "kernel_funcs",
    "op_attrs",
    "shape_of",
    "traffic_sizes",
    "without_views",
]

# Bump when the pass list changes: cached builds and stored configs depend on it.
FUSION_PIPELINE_VERSION = 2


def _passes(values: bool = True) -> list[tvm.transform.Pass]:
    from edgelat.ops.rewrites import FoldPadIntoConv, StandInConstants

    return [
        FoldPadIntoConv,
        relax.transform.DecomposeOpsForInference(),
        relax.transform.CanonicalizeBindings(),
        relax.transform.DeadCodeElimination(),
        relax.transform.LegalizeOps(),
        relax.transform.AnnotateTIROpPattern(),
        *([] if values else [StandInConstants]),
        relax.transform.FoldConstant(),
        relax.transform.FuseOps(),
    ]


def fuse(mod: tvm.IRModule, values: bool = True) -> tuple[tvm.IRModule, OpAttrs]:
    """Legalize and group ``mod`` into fused functions (not yet merged into single PrimFuncs).

    Also returns the attributes of the ops that legalization turns into plain loops. With
    ``values=False`` the constants computed from weights alone are zeros of the right shape (the
    same kernels, far sooner, for prediction; never for a build that runs).
    """
    passes = _passes(values)
    decomposed = tvm.transform.Sequential(passes[:4])(mod)
    return tvm.transform.Sequential(passes[4:])(decomposed), op_attrs(decomposed)


def kernel_funcs(fused: tvm.IRModule) -> tvm.IRModule:
    """Merge each fused group of ``fuse(mod)`` into one PrimFunc (what gets compiled)."""
    return tvm.transform.Sequential([relax.transform.FuseTIR(), relax.transform.DeadCodeElimination()])(fused)


def main_module(func: Any) -> tvm.IRModule:
    """``func`` (one kernel's PrimFunc) as the one function of a module, named main: what a kernel's own build
    compiles and how MetaSchedule keys a workload."""
    return tvm.IRModule({"main": func.with_attr("global_symbol", "main")})


def shape_of(expr: Any) -> tuple[int, ...] | None:
    ty = getattr(expr, "ty", None)
    shape = getattr(ty, "shape", None)
    if shape is None:
        return None
    try:
        values = getattr(shape, "values", shape)
        return tuple(int(v) for v in values)
    except (TypeError, ValueError):
        return None


_DIGITS = re.compile(r"\d+$")


@dataclass(frozen=True)
class TirCall:
    """One legalized op inside a kernel: its name (without TVM's numeric suffix) and shapes."""

    op: str
    args: tuple[tuple[int, ...] | None, ...]
    out: tuple[int, ...] | None
    # Which args are the value computed by the previous call in the group (the running value).
    chained: tuple[bool, ...]
    func: Any  # the legalized tirx.PrimFunc
    # Attributes of the op before legalization (strides, padding, ...), where recorded.
    attrs: dict[str, Any] | None = None
    # For a binary op whose other operand was computed earlier in the same kernel (not by
    # the previous call): how many results back it is. 0 when it is not.
    internal_back: int = 0

    @property
    def pattern(self) -> int:
        """TVM's op pattern of the legalized op: 0 elementwise, 1 broadcast, 2 injective, 3 reduction,
        4 output-fusable (conv, matmul), 8 opaque (what ``AnnotateTIROpPattern`` decided)."""
        attrs = getattr(self.func, "attrs", None)
        return int(attrs["op_pattern"]) if attrs is not None and "op_pattern" in attrs else 8


@dataclass(frozen=True)
class FusedGroup:
    """One kernel as it will run: the calls FuseOps grouped together, in order."""

    name: str
    calls: tuple[TirCall, ...]

    @property
    def ops(self) -> list[str]:
        return [c.op for c in self.calls]


def without_views(group: FusedGroup) -> FusedGroup:
    """``group`` without the reshapes it starts or ends with: they copy nothing (the kernel reads and
    writes the same elements in the same order), so ``reshape + add + reshape`` is an add."""
    from tvm.relax.analysis import has_reshape_pattern

    calls = list(group.calls)
    while len(calls) > 1 and has_reshape_pattern(calls[-1].func):
        calls.pop()
    dropped = 0
    while len(calls) > 1 and has_reshape_pattern(calls[0].func):
        calls.pop(0)
        dropped += 1
    if not dropped:
        return FusedGroup(group.name, tuple(calls))
    # A value computed earlier in the kernel is now that many results nearer; the dropped reshapes'
    # results are the kernel's input seen another way.
    fixed = []
    for position, call in enumerate(calls):
        if call.internal_back:
            index = position + dropped + 1 - call.internal_back  # in the old history
            back = position + 1 - max(index - dropped, 0)
            call = replace(call, internal_back=back)
        fixed.append(call)
    first = fixed[0]
    fixed[0] = replace(first, chained=tuple(c or (not any(first.chained) and i == 0) for i, c in enumerate(first.chained)))
    return FusedGroup(group.name, tuple(fixed))


def traffic_sizes(group: FusedGroup) -> tuple[tuple[int, ...], int]:
    """What a kernel reads and writes, by size: its distinct operand sizes (one-element operands left out: a
    scalar is a scalar however it is held) and its output's, views stripped. Two kernels that agree here
    move the same data, whatever their ops are called."""
    calls = without_views(group).calls
    operands = {math.prod(a) for c in calls for a in c.args if a is not None}
    return tuple(sorted(s for s in operands if s > 1)), math.prod(calls[-1].out or ())


def _call_tir_op() -> Any:
    return tvm.ir.Op.get("relax.call_tir")


# Relax ops whose attributes the shapes alone do not tell, keyed by the name legalization gives them.
_ATTR_OPS = {
    "relax.nn.conv2d": "conv2d",
    "relax.nn.conv1d": "conv1d",
    "relax.nn.conv2d_transpose": "conv2d_transpose",
    "relax.nn.max_pool2d": "max_pool2d",
    "relax.nn.avg_pool2d": "avg_pool2d",
    "relax.nn.adaptive_avg_pool2d": "adaptive_avg_pool2d",
    "relax.permute_dims": "transpose",
    "relax.take": "take",
    "relax.image.resize2d": "resize2d",
    "relax.mean": "mean",
    "relax.sum": "sum",
    "relax.max": "max",
    "relax.min": "min",
    "relax.prod": "prod",
    "relax.variance": "variance",
    "relax.nn.softmax": "softmax",
    "relax.nn.log_softmax": "log_softmax",
    "relax.concat": "concatenate",
    "relax.nn.group_norm": "group_norm",
    "relax.nn.instance_norm": "instance_norm",
    "relax.split": "split",
}
# strided_slice carries its slice as arguments, not attributes.
_SLICE_ARGS = ("axes", "begin", "end", "strides")
OpAttrs = dict[tuple[str, Any, Any], dict[str, Any]]


def _plain(value: Any) -> Any:
    """An attribute value as plain Python (ints, floats, strings, bools, lists of them)."""
    if isinstance(value, (bool, int, float, str)) or value is None:
        return value
    if hasattr(value, "value"):  # IntImm, FloatImm, PrimValue
        return _plain(value.value)
    if hasattr(value, "fields"):  # relax.Tuple
        return [_plain(v) for v in value.fields]
    if hasattr(value, "__len__") and not isinstance(value, str):
        return [_plain(v) for v in value]
    return str(value)


def _attrs_of(call: relax.Call) -> dict[str, Any]:
    if call.op.name == "relax.strided_slice":
        return {name: _plain(arg) for name, arg in zip(_SLICE_ARGS, call.args[1:], strict=False)}
    info = getattr(type(call.attrs), "__tvm_ffi_type_info__", None)
    if call.attrs is None or info is None:
        return {}
    return {f.name: _plain(getattr(call.attrs, f.name)) for f in info.fields}


def op_attrs(mod: tvm.IRModule, entry: str = "main") -> OpAttrs:
    """Attributes of the ops in ``mod`` before legalization, keyed by (name, input shapes, output shape).

    Two ops of one name and shapes with different attributes (a nearest and a bilinear resize of the
    same map) are told apart by the PrimFunc each legalizes to: under ``(key, body hash)``.
    """
    names = {**_ATTR_OPS, "relax.strided_slice": "strided_slice"}
    table: OpAttrs = {}
    seen: dict[tuple[str, Any, Any], list[tuple[relax.Call, dict[str, Any]]]] = {}
    for block in mod[entry].body.blocks:
        for binding in block.bindings:
            value = binding.value
            if isinstance(value, relax.Call) and isinstance(value.op, tvm.ir.Op) and value.op.name in names:
                # Keyed by every input's shape (a 1x1 conv and a depthwise conv can share input and output shapes).
                tensors = [a for a in value.args if isinstance(getattr(a, "ty", None), relax.TensorType)]
                key = (names[value.op.name], tuple(shape_of(a) for a in tensors), shape_of(value))
                seen.setdefault(key, []).append((value, _attrs_of(value)))
    for key, calls in seen.items():
        table[key] = calls[0][1]
        if any(attrs != calls[0][1] for _, attrs in calls[1:]):
            table[key] = _AMBIGUOUS
            for call, attrs in calls:
                table[(key, _body_hash(_legalize_one(call)))] = attrs  # type: ignore[index]
    return table


_AMBIGUOUS: dict[str, Any] = {"ambiguous": True}


def _body_hash(func: Any) -> int:
    import tvm_ffi

    return int(tvm_ffi.structural_hash(func.body, map_free_vars=True))


def _legalize_one(call: relax.Call) -> Any:
    """The PrimFunc ``call`` alone legalizes to."""
    bb = relax.BlockBuilder()
    params = [relax.Var(f"a{i}", a.ty) for i, a in enumerate(call.args) if isinstance(getattr(a, "ty", None), relax.TensorType)]
    it = iter(params)
    args = [next(it) if isinstance(getattr(a, "ty", None), relax.TensorType) else a for a in call.args]
    with bb.function("main", params):
        with bb.dataflow():
            out = bb.emit_output(relax.Call(call.op, args, call.attrs, call.ty_args))
        bb.emit_func_output(out)
    legal = relax.transform.LegalizeOps()(bb.get())
    return next(f for f in legal.functions.values() if isinstance(f, tvm.tirx.PrimFunc))


def _lookup(attrs: OpAttrs, name: str, shapes: Any, out: Any, func: Any) -> dict[str, Any] | None:
    found = attrs.get((name, shapes, out))
    if found is _AMBIGUOUS:
        found = attrs.get(((name, shapes, out), _body_hash(func)))  # type: ignore[arg-type]
    return found


def _tir_calls(func: relax.Function, mod: tvm.IRModule, attrs: OpAttrs) -> list[TirCall]:
    call_tir = _call_tir_op()
    calls: list[TirCall] = []
    previous: Any = None
    # Values of the kernel so far; the first call's input counts as the value before it, so
    # a standalone activation can refer back to its input (hard-swish's x * relu6(x + 3)).
    produced: list[Any] = []
    for block in func.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if not (isinstance(value, relax.Call) and value.op.same_as(call_tir)):
                continue
            gv = value.args[0]
            args = list(value.args[1].fields) if isinstance(value.args[1], relax.Tuple) else [value.args[1]]
            if not produced and args:
                produced.append(args[0])
            # The first call's first input is the running value the kernel starts from.
            chained = tuple(a.same_as(previous) for a in args) if previous is not None else tuple(i == 0 for i in range(len(args)))
            back = 0
            for a in args:
                for j, earlier in enumerate(produced[:-1]):
                    if a.same_as(earlier):
                        back = len(produced) - 1 - j
            name = _DIGITS.sub("", gv.name_hint)
            shapes = tuple(shape_of(a) for a in args)
            out = shape_of(value)
            calls.append(TirCall(name, shapes, out, chained, mod[gv], _lookup(attrs, name, shapes, out, mod[gv]), back))
            previous = binding.var
            produced.append(binding.var)
    return calls


def fused_groups(fused: tvm.IRModule, attrs: OpAttrs | None = None, entry: str = "main") -> list[FusedGroup]:
    """The kernels ``entry`` calls, in call order, each as a :class:`FusedGroup`.

    Calls to fused functions become one group each; a lone ``call_tir`` in ``entry`` (ops
    FuseOps left alone, such as reductions) is a group of one.
    """
    call_tir = _call_tir_op()
    attrs = attrs or {}
    groups: list[FusedGroup] = []
    main = fused[entry]
    for block in main.body.blocks:
        for binding in block.bindings:
            value = binding.value
            if not isinstance(value, relax.Call):
                continue
            if value.op.same_as(call_tir):
                gv = value.args[0]
                args = list(value.args[1].fields) if isinstance(value.args[1], relax.Tuple) else [value.args[1]]
                name = _DIGITS.sub("", gv.name_hint)
                shapes = tuple(shape_of(a) for a in args)
                call = TirCall(
                    name,
                    shapes,
                    shape_of(value),
                    tuple(i == 0 for i in range(len(args))),
                    fused[gv],
                    _lookup(attrs, name, shapes, shape_of(value), fused[gv]),
                )
                groups.append(FusedGroup(gv.name_hint, (call,)))
            elif isinstance(value.op, tvm.ir.GlobalVar):
                callee = fused[value.op]
                if isinstance(callee, relax.Function) and callee.attrs is not None and "Primitive" in callee.attrs:
                    groups.append(
                        FusedGroup(value.op.name_hint, _drop_small_side(_hoist_side_input(tuple(_tir_calls(callee, fused, attrs)))))
                    )
    return groups


_SIDE_OPS = {"add", "multiply", "subtract", "maximum", "minimum"}


def _hoist_side_input(calls: tuple[TirCall, ...]) -> tuple[TirCall, ...]:
    """Move an elementwise op of two kernel inputs that FuseOps put before the anchor to the epilogue.

    ``a + b + conv(x)`` (NB201 cells sum several edges) becomes ``conv(x) + a + b``: the kernel
    reads the same tensors and does the same adds, and the anchor comes first as matchers expect.
    """
    if len(calls) < 3:
        return calls
    side, anchor = calls[0], calls[1]
    if side.op not in _SIDE_OPS or len(side.args) != 2 or any(a != side.out for a in side.args) or any(anchor.chained):
        return calls
    users = [j for j, c in enumerate(calls) if j > 1 and c.internal_back and j - 1 - c.internal_back == 0]
    if len(users) != 1 or any(c.internal_back for j, c in enumerate(calls) if j > users[0]):
        return calls
    j = users[0]
    consumer = replace(calls[j], chained=(True, False), internal_back=0)
    extra = replace(side, chained=(True, False))
    return (*calls[1:j], consumer, extra, *calls[j + 1 :])


def _drop_small_side(calls: tuple[TirCall, ...]) -> tuple[TirCall, ...]:
    """Small computations FuseOps put before the anchor, read later as operands (a FiLM scale sliced out of a
    vector and expanded to (1, C, 1, 1)), are operands the kernel reads, not work: dropped, their results read
    as the kernel's inputs, and the anchor comes first as matchers expect."""
    anchor = next((i for i, c in enumerate(calls) if c.pattern == 4), 0)
    if anchor == 0 or (anchor_out := calls[anchor].out) is None:
        return calls
    size = math.prod(anchor_out)
    side = calls[:anchor]
    if any(c.pattern > 2 or c.out is None or 8 * math.prod(c.out) > size for c in side):
        return calls
    if any(calls[anchor].chained) or calls[anchor].internal_back:
        return calls  # the anchor reads what they compute
    kept = []
    for position, call in enumerate(calls[anchor:], start=anchor):
        if call.internal_back and position + 1 - call.internal_back <= anchor:
            call = replace(call, internal_back=0)  # it read a dropped value: now an input
        elif position == anchor:
            call = replace(call, chained=tuple(i == 0 for i in range(len(call.args))))
        kept.append(call)
    return tuple(kept)
