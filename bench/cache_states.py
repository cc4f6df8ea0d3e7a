"""How a kernel is timed alone against what it takes inside its network: every kernel of a built network timed as
the Relax VM calls it (in flow: weights and output last touched a whole network ago), then at once again on the
same tensors, warm (repeated calls, everything cached), and after its arguments but the first are flushed from
every cache level (TVM's ``cache_flush_cpu_non_first_arg``, what the tuned recipe's profiling does). Same
library, same buffers, same moment; medians over 5 runs of the network after a warm-up. In this process on this
host, one thread; a kernel's in-flow time includes the VM's instrumentation callback (a few microseconds).

Usage: python bench/cache_states.py --workspace WS [--networks ghostnet_100@96,mnasnet_050@128,resnet18@160]
       [--recipes tuned,default] [--trials 16]
Writes bench/out/cache_states.{json,csv}.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import torch  # noqa: E402
import tvm  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)
from tvm.runtime.vm import VirtualMachine  # noqa: E402

from edgelat.ops.network import relax_from_torch  # noqa: E402
from edgelat.profiler.e2e import _build_for  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

RUNS = 6  # the first is a warm-up
CALLS = 5


def kernel_times(lib_path: Path, resolution: int) -> list[dict[str, Any]]:
    """Per kernel of the network, in call order: median ms in flow, warm and flushed."""
    flush = tvm.get_global_func("cache_flush_cpu_non_first_arg")
    dev = tvm.cpu(0)
    vm = VirtualMachine(tvm.runtime.load_module(str(lib_path)), dev)
    x = np.random.default_rng(0).uniform(0.1, 1.0, (1, 3, resolution, resolution)).astype("float32")
    vm.set_input("main", tvm.runtime.tensor(x, dev))
    started: dict[str, float] = {}
    runs: list[list[tuple[str, float, float, float]]] = []

    def instrument(func: Any, name: str, before_run: bool, ret_val: Any, *args: Any) -> int:
        if name.startswith("vm.builtin"):
            return 0
        if before_run:
            started[name] = time.perf_counter()
            return 0
        flow = time.perf_counter() - started[name]
        warm, flushed = [], []
        for _ in range(CALLS):
            t = time.perf_counter()
            func(*args)
            warm.append(time.perf_counter() - t)
        for _ in range(CALLS):
            flush(*args)
            t = time.perf_counter()
            func(*args)
            flushed.append(time.perf_counter() - t)
        runs[-1].append((name, flow, statistics.median(warm), statistics.median(flushed)))
        return 0

    vm.set_instrument(instrument)
    for _ in range(RUNS):
        runs.append([])
        vm.invoke_stateful("main")
    return [
        {"kernel": calls[0], **{key: statistics.median(run[i][c] for run in runs[1:]) * 1e3 for c, key in enumerate(("flow_ms", "warm_ms", "flushed_ms"), 1)}}
        for i, calls in enumerate(runs[0])
    ]  # fmt: skip


def kind(kernel: str) -> str:
    """A kernel's name without TVM's numbering: fused_conv2d3_add_relu -> conv2d_add_relu."""
    return re.sub(r"(?<=[a-z])\d+(?=_|$)", "", kernel.removeprefix("fused_"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--networks", default="ghostnet_100@96,mnasnet_050@128,resnet18@160")
    parser.add_argument("--recipes", default="tuned,default")
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    rows: list[dict[str, Any]] = []
    summary: dict[str, Any] = {}
    with open_workspace(args.workspace) as ws, tempfile.TemporaryDirectory() as tmp:
        device = get_device(ws, "local")
        for name, factory, resolution in validation_networks(args.networks):
            mod = relax_from_torch(factory(), torch.randn(1, 3, resolution, resolution))
            for recipe in args.recipes.split(","):
                lib = Path(tmp) / f"{name}-{recipe}.so"  # one path per library: dlopen hands back a path it has loaded
                with agent_session(ws, device, threads=1) as agent:
                    _build_for(ws, device, agent, mod, lib, get_recipe(recipe), 1, args.trials)
                kernels = kernel_times(lib, resolution)
                rows += [{"network": name, "recipe": recipe, "kind": kind(k["kernel"]), **k} for k in kernels]
                totals = {key: sum(k[key] for k in kernels) for key in ("flow_ms", "warm_ms", "flushed_ms")}
                summary[f"{name} {recipe}"] = {
                    "kernels": len(kernels),
                    **totals,
                    "warm_over_flow": totals["warm_ms"] / totals["flow_ms"],
                    "flushed_over_flow": totals["flushed_ms"] / totals["flow_ms"],
                    "median_kernel_warm_over_flow": statistics.median(k["warm_ms"] / k["flow_ms"] for k in kernels),
                    "median_kernel_flushed_over_flow": statistics.median(k["flushed_ms"] / k["flow_ms"] for k in kernels),
                }
                print(name, recipe, {k: round(v, 3) for k, v in summary[f"{name} {recipe}"].items()}, flush=True)
    write_outputs("cache_states", summary, rows)


if __name__ == "__main__":
    main()
