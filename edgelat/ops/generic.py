"""Features every kernel has, whatever its kind: what the fallback model prices odd kernels with.

A kernel that no registered kind claims (a gather by index, a reflection pad, an odd norm) is
still a fused group of legalized TIR ops with shapes. :func:`group_features` describes any group
by its work (FLOPs as TVM's own estimator counts them), its traffic (bytes read from outside the
kernel and written), its output size and how many ops of each pattern it fuses. Training computes
the same features for every profiled config (emitted and fused exactly as a network's kernel is),
so one model fitted on all of a device's kernels can price any kernel, less precisely than a
dedicated kind.
"""

from __future__ import annotations

import math
from typing import Any

from edgelat.ops.epilogue import TRANSCENDENTAL
from edgelat.ops.lowering import FusedGroup, fuse, fused_groups
from edgelat.ops.registry import Config, get_op

__all__ = ["GENERIC_FEATURES", "config_group", "group_features"]

# TVM's op patterns (AnnotateTIROpPattern), as the counts are named.
_PATTERNS = {0: "n_elementwise", 1: "n_elementwise", 2: "n_injective", 3: "n_reduce", 4: "n_anchor"}
GENERIC_FEATURES = (
    "flops", "log_flops", "bytes", "log_bytes", "in_bytes", "out_bytes", "out_elems", "log_out_elems", "intensity", "ep_work",
    "n_calls", "n_elementwise", "n_injective", "n_reduce", "n_anchor", "n_opaque", "n_transcendental", "n_inputs",
)  # fmt: skip


def _numel(shape: Any) -> int:
    return math.prod(shape) if shape is not None else 0


def _flops(func: Any) -> float:
    import tvm
    from tvm.s_tir.analysis import estimate_tir_flops

    try:
        return float(estimate_tir_flops(tvm.IRModule({"main": func})))
    except Exception:  # noqa: BLE001 - an op the estimator cannot walk counts as moving data only
        return 0.0


def group_features(group: FusedGroup) -> dict[str, float]:
    """The generic features of one kernel (a fused group), in the order of :data:`GENERIC_FEATURES`."""
    counts = dict.fromkeys(("n_elementwise", "n_injective", "n_reduce", "n_anchor", "n_opaque", "n_transcendental"), 0.0)
    flops = 0.0
    in_elems = 0
    n_inputs = 0
    for position, call in enumerate(group.calls):
        counts[_PATTERNS.get(call.pattern, "n_opaque")] += 1
        counts["n_transcendental"] += call.op in TRANSCENDENTAL or f"tir_{call.op}" in TRANSCENDENTAL
        flops += _flops(call.func)
        for arg, chained in zip(call.args, call.chained, strict=False):
            # inputs from outside the kernel: all of the first call's, and later calls' operands that are
            # neither the running value nor a value computed earlier in the kernel
            if position == 0 or not (chained or call.internal_back):
                in_elems += _numel(arg)
                n_inputs += 1
    last = group.calls[-1]
    out_elems = float(_numel(last.out) if last.out is not None else _numel(last.args[0] if last.args else None))
    in_bytes, out_bytes = 4.0 * in_elems, 4.0 * out_elems
    total = in_bytes + out_bytes
    feats = {
        "flops": flops,
        "log_flops": math.log1p(flops),
        "bytes": total,
        "log_bytes": math.log1p(total),
        "in_bytes": in_bytes,
        "out_bytes": out_bytes,
        "out_elems": out_elems,
        "log_out_elems": math.log1p(out_elems),
        "intensity": flops / max(total, 1.0),
        "ep_work": out_elems * (counts["n_elementwise"] + 8.0 * counts["n_transcendental"]),
        "n_calls": float(len(group.calls)),
        **counts,
        "n_inputs": float(n_inputs),
    }
    return {name: float(feats[name]) for name in GENERIC_FEATURES}


def config_group(op: str, cfg: Config) -> FusedGroup:
    """The kernel a profiled config is: emitted and fused as a network's kernel is (one group)."""
    fused, attrs = fuse(get_op(op).emit(cfg))
    return fused_groups(fused, attrs)[0]
