"""torch modules into Relax through ``torch.export``, batch norms folded as deployments fold them.

``torch.export`` traces the module and TVM's ``from_exported_program`` translates it. Where TVM's
translator lacks an ATen op that has a plain Relax equivalent (``amax``, ``amin``, an adaptive max
pool, ``Tensor.unfold``), a converter here supplies it. Failures are one
:class:`~edgelat.errors.ModelImportError` line.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Callable
from typing import Any

import torch
import tvm
from tvm import relax

from edgelat.errors import ModelImportError
from edgelat.ops.onnx_import import _first_line

__all__ = ["bind_params", "fold_batch_norms", "relax_from_torch"]


def fold_batch_norms(module: Any) -> Any:
    """Fold each BatchNorm that follows a conv into the conv's weights, as deployments do.

    torch.fx finds every conv -> batch norm pair; a network torch.fx cannot trace gets the
    pairs that sit next to each other in an ``nn.Sequential`` folded (any other batch norm
    then runs as an elementwise epilogue, which is what TVM would run for it too).
    """
    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module.eval())
    except Exception:  # noqa: BLE001 - tracing is best effort; the fallback below is still correct
        return _fold_sequential_conv_bn(copy.deepcopy(module).eval())


def _fold_sequential_conv_bn(module: Any) -> Any:
    """Fold conv -> batch norm pairs that sit next to each other in a Sequential, in place: the batch
    norm becomes an identity, so a Sequential subclass keeps its own forward and its indices."""
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for child in module.children():
        if isinstance(child, nn.Sequential):
            for i in range(len(child) - 1):
                conv, bn = child[i], child[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d):
                    child[i] = fuse_conv_bn_eval(conv, bn)
                    child[i + 1] = nn.Identity()
        _fold_sequential_conv_bn(child)
    return module


class _Root(torch.nn.Module):
    """Exported under a root of its own: a submodule named like a GraphModule attribute (``meta``,
    ``graph``, ``code``) would clash with it when torch unlifts the exported program."""

    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args: Any) -> Any:
        return self.net(*args)


def relax_from_torch(module: Any, example: Any) -> tvm.IRModule:
    """Import a ``torch.nn.Module`` (eval mode, batch norms folded) with weights bound as constants.

    ``example`` is the input tensor, or a tuple of them for a module with several inputs. When the
    module with its batch norms folded by torch.fx does not export (fx can specialise shape
    arithmetic), the batch norms are folded only where a Sequential pairs them with a conv, and
    failing that not at all.
    """
    from tvm.relax.frontend.torch import from_exported_program

    args = example if isinstance(example, tuple) else (example,)
    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 deprecates a pytree class its own export still uses
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        root = _Root(module).eval()
        exported, error = None, None
        for fold in (fold_batch_norms, lambda m: _fold_sequential_conv_bn(copy.deepcopy(m)), lambda m: m):
            try:
                exported = torch.export.export(fold(root), args)
                break
            except Exception as exc:  # noqa: BLE001 - torch.export's many error types become one line
                error = error or exc
        if exported is None:
            assert error is not None  # every failed attempt keeps its error
            raise ModelImportError(f"torch.export could not trace the module: {_first_line(error)}") from None
        try:
            mod = from_exported_program(exported, keep_params_as_input=True, custom_convert_map=CONVERTERS)
        except Exception as exc:  # noqa: BLE001 - an op TVM's torch frontend lacks, say
            raise ModelImportError(f"TVM cannot import the exported module: {_first_line(exc)}") from None
    return bind_params(mod)


def bind_params(mod: tvm.IRModule) -> tvm.IRModule:
    """``mod`` with the weights it takes as inputs bound as constants."""
    mod, params = relax.frontend.detach_params(mod)
    if params.get("main"):
        names = [p.name for p in mod["main"].params]
        attrs = mod["main"].attrs
        num_input = int(attrs["num_input"]) if attrs is not None and "num_input" in attrs else 1
        mod = relax.transform.BindParams("main", dict(zip(names[num_input:], params["main"], strict=True)))(mod)
    return mod


# -- ATen ops TVM's translator lacks ---------------------------------------------------------------


def _dims(value: Any, rank: int) -> list[int]:
    dims = [value] if isinstance(value, int) else list(value or range(rank))
    return [int(d) % rank for d in dims]


def _reduce(op: Callable[..., Any]) -> Callable[[Any, Any], relax.Var]:
    def convert(node: Any, importer: Any) -> relax.Var:
        x = importer.env[node.args[0]]
        rank = len(x.ty.shape)
        dims = _dims(node.args[1] if len(node.args) > 1 else node.kwargs.get("dim"), rank)
        keepdim = bool(node.args[2] if len(node.args) > 2 else node.kwargs.get("keepdim", False))
        return importer.block_builder.emit(op(x, dims, keepdims=keepdim))

    return convert


def _adaptive_max_pool2d(node: Any, importer: Any) -> relax.Var:
    """An adaptive max pool whose output divides its input is a max pool with a fixed window."""
    x = importer.env[node.args[0]]
    size = node.args[1]
    oh, ow = (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))
    h, w = int(x.ty.shape[2]), int(x.ty.shape[3])
    if h % oh or w % ow:
        raise ValueError(f"adaptive_max_pool2d from {h}x{w} to {oh}x{ow}: only outputs that divide the input are supported")
    bb = importer.block_builder
    values = bb.emit(relax.op.nn.max_pool2d(x, (h // oh, w // ow), (h // oh, w // ow)))
    indices = bb.emit(relax.op.zeros(values.ty.shape, "int64"))  # networks use the values only
    return bb.emit(relax.Tuple([values, indices]))


def _unfold(node: Any, importer: Any) -> relax.Var:
    """``Tensor.unfold(dim, size, step)``: the windows along ``dim`` stacked there, each as a new last dim."""
    x = importer.env[node.args[0]]
    rank = len(x.ty.shape)
    dim, size, step = int(node.args[1]) % rank, int(node.args[2]), int(node.args[3])
    length = int(x.ty.shape[dim])
    order = [d for d in range(rank) if d != dim] + [dim]
    bb = importer.block_builder
    windows = []
    for start in range(0, length - size + 1, step):
        window = bb.emit(relax.op.strided_slice(x, axes=[dim], begin=[start], end=[start + size]))
        windows.append(bb.emit(relax.op.expand_dims(bb.emit(relax.op.permute_dims(window, order)), dim)))
    return bb.emit(relax.op.concat(windows, axis=dim))


def _integer_op(op: Callable[..., Any]) -> Callable[[Any, Any], relax.Var]:
    """A binary op whose operands may be integer tensors of different widths (int64 indices and an
    int32 shape constant): both taken to the wider type first, as torch does."""

    def convert(node: Any, importer: Any) -> relax.Var:
        bb = importer.block_builder
        lhs, rhs = importer.retrieve_args(node)[:2]
        dtypes: list[Any] = [getattr(getattr(v, "ty", None), "dtype", None) for v in (lhs, rhs)]
        if None in dtypes:  # a Python number: take the tensor's type
            dtype = next(d for d in dtypes if d is not None)
            lhs, rhs = (v if getattr(v, "ty", None) is not None else relax.const(v, dtype) for v in (lhs, rhs))
        elif dtypes[0] != dtypes[1]:
            wide = max(dtypes, key=lambda d: (d.startswith("float"), int("".join(c for c in d if c.isdigit()) or 0)))
            lhs, rhs = (v if d == wide else bb.emit(relax.op.astype(v, wide)) for v, d in zip((lhs, rhs), dtypes, strict=True))
        return bb.emit(op(lhs, rhs))

    return convert


def _div_mode(node: Any, importer: Any) -> relax.Var:
    """``a // b`` (``div`` with ``rounding_mode``), with integer operands of different widths."""
    mode = node.kwargs.get("rounding_mode")
    if mode == "floor":
        return _integer_op(relax.op.floor_divide)(node, importer)
    quotient = _integer_op(relax.op.divide)(node, importer)
    return importer.block_builder.emit(relax.op.trunc(quotient)) if mode == "trunc" else quotient


CONVERTERS: dict[str, Callable[[Any, Any], relax.Var]] = {
    "floor_divide.default": _integer_op(relax.op.floor_divide),
    "div.Tensor_mode": _div_mode,
    "remainder.Scalar": _integer_op(relax.op.floor_mod),
    "remainder.Tensor": _integer_op(relax.op.floor_mod),
    "amax.default": _reduce(relax.op.max),
    "amin.default": _reduce(relax.op.min),
    "adaptive_max_pool2d.default": _adaptive_max_pool2d,
    "unfold.default": _unfold,
}
