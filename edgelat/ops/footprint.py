"""What a network needs in storage and memory once built, read from its Relax module (no device).

The network goes through the fusion pipeline every build uses (:mod:`edgelat.ops.lowering`), with
stand-in constants (the same shapes and types, so the same bytes), then through the CPU backend's
passes up to and including Relax's static memory planning (``StaticPlanBlockMemory``), which gives each
intermediate tensor a place in a few storages the VM allocates once per run. What is left unplanned
(``alloc_tensor``: the outputs) is counted at its size. Inside kernels, the buffers a kernel allocates for
itself (a padded copy of its input, say) come from TVM's workspace pool at run time: the largest kernel's
is counted. A symbolic size cannot be counted and is said.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import tvm
from tvm import relax

from edgelat.ops.lowering import fuse, kernel_funcs

__all__ = ["Footprint", "network_footprint"]


@dataclass(frozen=True)
class Footprint:
    # The constants the build embeds in the library: weights (folded where the build folds them).
    params_bytes: int
    # The storages Relax's static planner allocates for intermediate tensors, plus the tensors it leaves to be
    # allocated on their own (outputs).
    activation_bytes: int
    # The kernels (PrimFuncs) the build compiles.
    kernels: int
    # The largest scratch one kernel allocates for itself (its intermediate buffers: TVM workspace).
    workspace_bytes: int = 0
    # Allocations whose size is symbolic (dynamic shapes): not in activation_bytes.
    unsized: int = 0

    @property
    def params_mb(self) -> float:
        return self.params_bytes / 2**20

    @property
    def activation_mb(self) -> float:
        return self.activation_bytes / 2**20

    @property
    def workspace_mb(self) -> float:
        return self.workspace_bytes / 2**20

    @property
    def touched_mb(self) -> float:
        """What one run reads and writes at least once: its weights and its planned activations."""
        return (self.params_bytes + self.activation_bytes) / 2**20


def _bytes(shape: relax.ShapeExpr, dtype: str) -> int | None:
    dims = [int(d) if isinstance(d, tvm.tirx.IntImm) else None for d in shape.values]
    if any(d is None for d in dims):
        return None
    return math.prod(d for d in dims if d is not None) * tvm.runtime.DataType(dtype).bits // 8


def _kernel_buffers(node: object, found: list[tvm.tirx.Buffer]) -> None:
    """The buffers a kernel's body allocates (block-level ``alloc_buffer`` and ``AllocBuffer`` statements)."""
    found.extend(getattr(node, "alloc_buffers", None) or [])
    if type(node).__name__ == "AllocBuffer":
        found.append(node.buffer)  # type: ignore[attr-defined]
    for name in ("body", "block", "init", "then_case", "else_case"):
        child = getattr(node, name, None)
        if isinstance(child, tvm.runtime.Object):
            _kernel_buffers(child, found)
    for child in getattr(node, "seq", None) or []:
        _kernel_buffers(child, found)


def _buffer_bytes(buffer: tvm.tirx.Buffer) -> int | None:
    dims = [int(d) if isinstance(d, tvm.tirx.IntImm) else None for d in buffer.shape]
    if any(d is None for d in dims):
        return None
    return math.prod(d for d in dims if d is not None) * tvm.runtime.DataType(str(buffer.dtype)).bits // 8


def network_footprint(mod: tvm.IRModule) -> Footprint:
    """Parameter bytes, planned activation bytes and kernel count of ``mod`` as it is built for a CPU."""
    from tvm.relax.backend.cpu_generic import pipeline

    merged = kernel_funcs(fuse(mod, values=False)[0])
    prims = [f for f in merged.functions.values() if isinstance(f, tvm.tirx.PrimFunc)]
    workspace, unsized = 0, 0
    for func in prims:
        found: list[tvm.tirx.Buffer] = []
        _kernel_buffers(func.body, found)
        sizes = [_buffer_bytes(b) for b in found]
        unsized += sum(size is None for size in sizes)
        workspace = max(workspace, sum(size for size in sizes if size is not None))
    params = 0

    def count_constant(expr: relax.Expr) -> None:
        nonlocal params
        value = getattr(expr, "value", None) if isinstance(expr, tvm.ir.expr.Constant) else None
        if isinstance(value, tvm.runtime.Tensor):
            params += math.prod(int(d) for d in value.shape) * tvm.runtime.DataType(str(value.dtype)).bits // 8

    relax.analysis.post_order_visit(merged["main"], count_constant)
    target = tvm.target.Target({"kind": "llvm"})
    with target:
        passes = pipeline.library_dispatch_passes(target) + pipeline.legalize_passes(target) + pipeline.dataflow_lower_passes(target)
        planned = tvm.transform.Sequential([*passes, relax.transform.StaticPlanBlockMemory()])(merged)
    activations = 0

    def count_allocation(expr: relax.Expr) -> None:
        nonlocal activations, unsized
        if not (isinstance(expr, relax.Call) and isinstance(expr.op, tvm.ir.Op)):
            return
        if expr.op.name == "relax.memory.alloc_storage":  # (size in bytes, offset, scope, dtype)
            size = _bytes(expr.args[0], "uint8")
        elif expr.op.name == "relax.builtin.alloc_tensor":  # (shape, dtype, runtime device index, scope)
            size = _bytes(expr.args[0], str(expr.args[1].value))
        else:
            return
        if size is None:
            unsized += 1
        else:
            activations += size

    relax.analysis.post_order_visit(planned["main"], count_allocation)
    return Footprint(params, activations, len(prims), workspace, unsized)
