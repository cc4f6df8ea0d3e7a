"""What the target's CPU flags do to the code: the `local` preset's target (`mcpu` = the host CPU as LLVM
names it), the same with `+prefer-no-gather`, and a generic one (no `mcpu`), for untuned (`default`) and tuned builds of zoo networks.

Each network is built both ways and timed end to end on `local` (one thread) by the device agent, side
by side in one run. Tuned builds tune every kernel (`--trials`, the campaign's search and transfer) into
one database per target.

Usage: python bench/target_flags.py [--networks mobilenetv2_100,resnet18] [--resolution 160] [--trials 16] [--skip-tuned]
Writes bench/out/target_flags.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from edgelat.datasets.zoo import create_model, example_input  # noqa: E402
from edgelat.ops.network import relax_from_torch  # noqa: E402
from edgelat.profiler.e2e import build_network  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.profiler.tuning import KernelTuner  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default="mobilenetv2_100,resnet18")
    parser.add_argument("--resolution", type=int, default=160)
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--skip-tuned", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"when": time.strftime("%Y-%m-%d"), "networks": {}}
    with tempfile.TemporaryDirectory() as tmpdir, open_workspace(Path(tmpdir) / "ws") as ws:
        tmp = Path(tmpdir)
        device = get_device(ws, "local")
        host = device.preset_info.target()
        generic = {k: v for k, v in host.items() if k not in ("mcpu", "mattr")}
        # LLVM's cost model for AVX-512 CPUs turns the strided loads of untuned loops into gathers; this
        # tuning feature keeps the wide vectors and forbids the gathers.
        no_gather = {**host, "mattr": [*host.get("mattr", []), "+prefer-no-gather"]}
        targets = {"host": host, "host_no_gather": no_gather, "generic": generic}
        if "mtriple" in host:  # not x86: the feature is LLVM's x86 one
            del targets["host_no_gather"]
        results["targets"] = targets
        recipes = ["default"] if args.skip_tuned else ["default", "tuned"]
        with agent_session(ws, device, threads=1) as agent:

            def measure(path: str, a: list[list[Any]]) -> list[float]:
                return agent.time_library(Path(path), a, repeat=3, min_repeat_ms=2.0)

            tuners = {t: KernelTuner(tmp / f"db-{t}", target, 1, None, measure) for t, target in targets.items()}
            for net in args.networks.split(","):
                mod = relax_from_torch(create_model(net).eval(), example_input(args.resolution))
                row: dict[str, Any] = {}
                for recipe in recipes:
                    for name, target in targets.items():
                        lib = tmp / f"{net}-{recipe}-{name}.so"
                        start = time.perf_counter()
                        inputs = build_network(mod, target, lib, None, get_recipe(recipe), tuners[name], args.trials)
                        built = time.perf_counter() - start
                        remote = agent.remote_path(lib.name)
                        agent.transport.put(lib, remote)
                        reply = agent.request("bench_network", {"lib": remote, "inputs": inputs, "repeat": 7, "min_repeat_ms": 200.0, "per_kernel": False}, timeout=1800)
                        row[f"{recipe}_{name}_ms"] = statistics.median(reply["seconds"]) * 1000
                        row[f"{recipe}_{name}_build_s"] = built
                    for name in targets:
                        row[f"{recipe}_{name}_over_generic"] = row[f"{recipe}_{name}_ms"] / row[f"{recipe}_generic_ms"]
                results["networks"][f"{net}@{args.resolution}"] = row
                print(net, {k: round(v, 3) for k, v in row.items()}, flush=True)
            for t in tuners.values():
                t.close()
    OUT.mkdir(exist_ok=True)
    (OUT / "target_flags.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
