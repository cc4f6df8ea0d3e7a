"""What one more kernel costs a network on a device beyond the kernel's own work: the runtime's dispatch, argument
packing and storage handling per call. Measured to see whether it explains why a network's kernels, each timed warm
and alone, add up to less than the network (it does not: see the README, "Caches").

Usage: python bench/call_cost.py [--workspace WS] [--device local] [--rounds 5]
Writes bench/out/call_cost.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgelat.profiler.e2e import _build_for  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workspace import Workspace, open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"
def call_cost_ms(ws: Workspace, device_name: str, *, short: int = 8, long: int = 72, repeat: int = 7) -> float:
    """What one more kernel costs a network on ``device_name`` beyond the kernel's own work: the runtime's
    dispatch, argument packing and storage handling per call (milliseconds).

    Two chains of trivial kernels (a sum over one element, which does not fuse with the next) are built
    untuned and timed end to end side by side in one agent session; the cost is the slope between them. A
    kernel timed alone does not pay it, so a network's kernels timed warm add up to less than the network."""
    import torch

    from edgelat.ops.network import relax_from_torch

    class _Chain(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.n = n

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            for _ in range(self.n):
                x = x.sum(dim=-1, keepdim=True)
            return x

    device = get_device(ws, device_name)
    chosen = get_recipe("default")
    medians: dict[int, float] = {}
    with agent_session(ws, device, threads=1) as agent, tempfile.TemporaryDirectory(prefix="edgelat-calls-") as tmp:
        built = {}
        for n in (short, long):
            mod = relax_from_torch(_Chain(n), torch.randn(1, 1))
            lib = Path(tmp) / f"chain{n}.so"
            inputs = _build_for(ws, device, agent, mod, lib, chosen, 1, 0)
            remote = agent.remote_library(lib)
            agent.transport.put(lib, remote)
            built[n] = (remote, inputs)
        for n, (remote, inputs) in built.items():
            reply = agent.request("bench_network", {"lib": remote, "inputs": inputs, "repeat": repeat, "min_repeat_ms": 50.0, "per_kernel": False})
            medians[n] = statistics.median(reply["seconds"]) * 1000
    return max(medians[long] - medians[short], 0.0) / (long - short)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, default=None, help="default: a temporary one with the local device")
    parser.add_argument("--device", default="local")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="edgelat-calls-ws-") as scratch, open_workspace(args.workspace or Path(scratch)) as ws:
        rounds = [call_cost_ms(ws, args.device) * 1000 for _ in range(args.rounds)]
    report = {"device": args.device, "us_per_call": statistics.median(rounds), "rounds_us": rounds}
    print(json.dumps(report))
    OUT.mkdir(exist_ok=True)
    (OUT / "call_cost.json").write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
