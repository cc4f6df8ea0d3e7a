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

__all__ = ["Kernel", "KernelRecord", "fold_batch_norms", "network_kernels", "relax_from_onnx", "relax_from_torch"]


@dataclass(frozen=True)
class Kernel:
    """One kernel of a network: its registry kind and config, or None when no kind matches."""

    group: FusedGroup
    op: str | None
    config: dict[str, Any] | None

    @property
    def name(self) -> str:
        return self.group.name

    @property
    def label(self) -> str:
        """Its kind, or the ops it fuses where no kind claims it."""
        return self.op or "+".join(dict.fromkeys(self.group.ops))

    def generic_features(self) -> dict[str, float]:
        """What the fallback model prices it by (:func:`edgelat.ops.generic.group_features`)."""
        from edgelat.ops.generic import group_features

        return group_features(self.group)

    def record(self) -> KernelRecord:
        """Everything a prediction needs of this kernel, without TVM objects (it can be kept as JSON)."""
        return KernelRecord(self.name, self.label, self.op, self.config, self.generic_features())


@dataclass(frozen=True)
class KernelRecord:
    """A :class:`Kernel` as plain data: what pricing needs, kept in caches as JSON (:meth:`as_dict`)."""

    name: str
    label: str
    op: str | None
    config: dict[str, Any] | None
    generic: dict[str, float]

    def generic_features(self) -> dict[str, float]:
        return self.generic

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "label": self.label, "op": self.op, "config": self.config, "generic": self.generic}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> KernelRecord:
        config = data["config"]
        # JSON has no tuples; configs hold them (and are hashed as memo keys)
        config = {k: _tuples(v) for k, v in config.items()} if config is not None else None
        return cls(data["name"], data["label"], data["op"], config, {k: float(v) for k, v in data["generic"].items()})


def _tuples(value: Any) -> Any:
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


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
    fused, attrs = fuse(mod, values=False)
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
