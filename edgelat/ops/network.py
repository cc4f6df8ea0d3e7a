"""A whole network as the kernels a device runs: import into Relax, fuse, match the registry."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import tvm

from edgelat.errors import ModelImportError
from edgelat.ops.lowering import FusedGroup, fuse, fused_groups, without_views
from edgelat.ops.onnx_import import ShapeArg, _first_line, bind_input_shapes, graph_inputs, import_onnx, load_onnx, simplify
from edgelat.ops.registry import get_op, list_ops

__all__ = ["Kernel", "fold_batch_norms", "network_kernels", "relax_from_onnx", "relax_from_torch"]


@dataclass(frozen=True)
class Kernel:
    """One kernel of a network: its registry kind and config, or None when no kind matches."""

    group: FusedGroup
    op: str | None
    config: dict[str, Any] | None


def fold_batch_norms(module: Any) -> Any:
    """Fold each BatchNorm that follows a conv into the conv's weights, as deployments do.

    torch.fx finds every conv -> batch norm pair; a network torch.fx cannot trace gets the
    pairs that sit next to each other in an ``nn.Sequential`` folded (any other batch norm
    then runs as an elementwise epilogue, which is what TVM would run for it too).
    """
    import copy

    from torch.fx.experimental.optimization import fuse

    try:
        return fuse(module.eval())
    except Exception:  # noqa: BLE001 - tracing is best effort; the fallback below is still correct
        return _fold_sequential_conv_bn(copy.deepcopy(module).eval())


def _fold_sequential_conv_bn(module: Any) -> Any:
    from torch import nn
    from torch.nn.utils.fusion import fuse_conv_bn_eval

    for name, child in module.named_children():
        if isinstance(child, nn.Sequential):
            layers, folded = list(child), []
            while layers:
                layer = layers.pop(0)
                if isinstance(layer, nn.Conv2d) and layers and isinstance(layers[0], nn.BatchNorm2d):
                    layer = fuse_conv_bn_eval(layer, layers.pop(0))
                folded.append(layer)
            child = nn.Sequential(*folded)
            setattr(module, name, child)
        _fold_sequential_conv_bn(child)
    return module


class _Root(torch.nn.Module):
    def __init__(self, net: torch.nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, *args: Any) -> Any:
        return self.net(*args)


def relax_from_torch(module: Any, example: Any) -> tvm.IRModule:
    """Import a ``torch.nn.Module`` (eval mode, batch norms folded) with weights bound as constants.

    ``example`` is the input tensor, or a tuple of them for a module with several inputs.
    """
    import warnings

    import torch
    from tvm.relax.frontend.torch import from_exported_program

    with torch.no_grad(), warnings.catch_warnings():
        # torch 2.13 deprecates a pytree class its own export still uses
        warnings.filterwarnings("ignore", message=".*LeafSpec.*", category=FutureWarning)
        # Exported under a root of its own: a submodule named like a GraphModule attribute (``meta``,
        # ``graph``, ``code``) would clash with it when torch unlifts the exported program.
        module = fold_batch_norms(_Root(module))
        try:
            exported = torch.export.export(module, example if isinstance(example, tuple) else (example,))
        except Exception as exc:  # noqa: BLE001 - torch.export's many error types become one line
            raise ModelImportError(f"torch.export could not trace the module: {_first_line(exc)}") from None
        try:
            mod = from_exported_program(exported, keep_params_as_input=True)
        except Exception as exc:  # noqa: BLE001 - an op TVM's torch frontend lacks, say
            raise ModelImportError(f"TVM cannot import the exported module: {_first_line(exc)}") from None
    return _bind_params(mod)


def relax_from_onnx(path: str | Path, shapes: ShapeArg = None) -> tvm.IRModule:
    """Import an ONNX file with every shape static (see :mod:`edgelat.ops.onnx_import`), weights as constants.

    ``shapes`` binds the inputs' symbolic dims: one shape, one per input, or one per input name.
    """
    model = load_onnx(path)
    inputs = graph_inputs(model)
    bound = bind_input_shapes(inputs, shapes)
    mod = import_onnx(simplify(model, bound), bound, {i.name: i.dtype for i in inputs})
    return _bind_params(mod)


def _bind_params(mod: tvm.IRModule) -> tvm.IRModule:
    from tvm import relax

    mod, params = relax.frontend.detach_params(mod)
    if params.get("main"):
        names = [p.name for p in mod["main"].params]
        num_input = int(mod["main"].attrs["num_input"]) if mod["main"].attrs is not None and "num_input" in mod["main"].attrs else 1
        mod = relax.transform.BindParams("main", dict(zip(names[num_input:], params["main"], strict=True)))(mod)
    return mod


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
