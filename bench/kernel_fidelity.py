"""Is what edgelat profiles for a network's kernel the kernel the network runs? For every distinct kernel of the
test corpus (networks written by others, imported from PyTorch), its config is emitted as edgelat emits it for
profiling and fused; it must be one kernel that reads operands of the same sizes and writes an output of the
same size (one-element operands left out: a scalar is a scalar however it is held). Counts per kind of the
kernels that cannot be emitted (an epilogue op the builder does not know) and of those emitted at other sizes.
Imports only, no timing.

Usage: python bench/kernel_fidelity.py
Writes bench/out/kernel_fidelity.{json,csv}.
"""

from __future__ import annotations

import collections
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.ops import fuse, fused_groups, get_op  # noqa: E402
from edgelat.ops.lowering import traffic_sizes  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from tests.corpus import corpus, example_inputs  # noqa: E402


def main() -> None:
    start = time.time()
    seen: set[tuple[str, str]] = set()
    rows: list[dict[str, Any]] = []
    for net in corpus():
        example = example_inputs(net)
        kernels = network_kernels(relax_from_torch(net.build().eval(), example if len(example) > 1 else example[0]))
        for k in kernels:
            if k.op is None or k.config is None or get_op(k.op).composite:
                continue
            key = (k.op, repr(sorted(k.config.items())))
            if key in seen:
                continue
            seen.add(key)
            try:
                groups = fused_groups(*fuse(get_op(k.op).emit(k.config)))
            except Exception as exc:  # noqa: BLE001 - the survey goes on; the row says why
                rows.append({"network": net.name, "op": k.op, "config": key[1], "status": "not emitted", "why": f"{type(exc).__name__}: {exc}"[:160]})
                continue
            same = len(groups) == 1 and traffic_sizes(groups[0]) == traffic_sizes(k.group)
            rows.append({"network": net.name, "op": k.op, "config": key[1], "status": "same" if same else "other sizes",
                         "why": "" if same else f"network {traffic_sizes(k.group)}, emitted {[traffic_sizes(g) for g in groups]}"})  # fmt: skip
    status = collections.Counter(r["status"] for r in rows)
    by_op = collections.Counter((r["op"], r["status"]) for r in rows if r["status"] != "same")
    reasons = collections.Counter(r["why"].split(":")[-1].strip()[:40] for r in rows if r["status"] == "not emitted")
    summary = {
        "when": time.strftime("%Y-%m-%d %H:%M"),
        "networks": len(corpus()),
        "distinct_kernels": len(rows),
        "status": dict(status),
        "off_by_kind": {f"{op} {s}": n for (op, s), n in by_op.most_common()},
        "not_emitted_because": dict(reasons.most_common()),
        "seconds": round(time.time() - start),
    }
    print(summary)
    write_outputs("kernel_fidelity", summary, rows)


if __name__ == "__main__":
    main()
