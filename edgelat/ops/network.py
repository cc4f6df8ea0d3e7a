"""A whole network as the kernels a device runs: import into Relax, fuse, match the registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm

from edgelat.ops.lowering import FusedGroup, fuse, fused_groups, without_views
from edgelat.ops.onnx_import import ShapeArg, bind_input_shapes, graph_inputs, import_onnx, load_onnx, simplify
from edgelat.ops.registry import get_op, list_ops
from edgelat.ops.torch_import import bind_params, fold_batch_norms, relax_from_torch

__all__ = ["Kernel", "fold_batch_norms", "network_kernels", "relax_from_onnx", "relax_from_torch"]


@dataclass(frozen=True)
class Kernel:
    """One kernel of a network: its registry kind and config, or None when no kind matches."""

    group: FusedGroup
    op: str | None
    config: dict[str, Any] | None


def relax_from_onnx(path: str | Path, shapes: ShapeArg = None) -> tvm.IRModule:
    """Import an ONNX file with every shape static (see :mod:`edgelat.ops.onnx_import`), weights as constants.

    ``shapes`` binds the inputs' symbolic dims: one shape, one per input, or one per input name.
    """
    model = load_onnx(path)
    inputs = graph_inputs(model)
    bound = bind_input_shapes(inputs, shapes)
    mod = import_onnx(simplify(model, bound), bound, {i.name: i.dtype for i in inputs})
    return bind_params(mod)


def is_view(group: FusedGroup) -> bool:
    """Whether the build runs ``group`` as a view, not a kernel.

    TVM's build (``RewriteDataflowReshape``) turns every kernel that only reshapes (element i of
    the output is element i of the input: reshape, squeeze, flatten, a transpose that moves dims
    of one) into a view that copies nothing; TVM's own analysis decides which.
    """
    from tvm.relax.analysis import has_reshape_pattern

    return all(has_reshape_pattern(c.func) for c in group.calls)


def network_kernels(mod: tvm.IRModule) -> list[Kernel]:
    """Every kernel ``mod`` runs after fusion, matched to the first registered kind that claims it."""
    fused, attrs = fuse(mod)
    specs = [get_op(name) for name in list_ops() if not get_op(name).composite]
    kernels = []
    for group in fused_groups(fused, attrs):
        if is_view(group):
            continue
        kernels.append(match_kernel(group, specs))
    return kernels


def match_kernel(group: FusedGroup, specs: list[Any] | None = None) -> Kernel:
    """``group`` matched to the first kind that claims it, as it is or without the reshapes around it."""
    specs = specs if specs is not None else [get_op(name) for name in list_ops() if not get_op(name).composite]
    candidates = [group]
    stripped = without_views(group)
    if stripped.calls != group.calls:
        candidates.append(stripped)
    for candidate in candidates:
        for spec in specs:
            cfg = spec.match(candidate)
            if cfg is not None:
                return Kernel(group, spec.name, cfg)
    return Kernel(group, None, None)
