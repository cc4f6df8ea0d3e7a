"""Kernel builds per minute through each executor, side by side in one run on this machine.

The same plan of default-recipe kernels (conv2d, dwconv2d, dense; `local` target and the aarch64
cross build of `rpi4`) is built from an empty cache with 1 and 2 local worker processes and on a
Dask cluster of 2 single-threaded workers started here (a real `dask scheduler` and `dask worker`
processes on 127.0.0.1). Prints and saves bench/out/build_scaling.json: builds per minute and the
median seconds of one build, per executor and target.

Usage: python bench/build_scaling.py [--samples 10]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from distributed.utils import open_port

from edgelat.profiler.builds import Builder, BuildRequest
from edgelat.profiler.campaign import plan_configs
from edgelat.profiler.presets import get_preset
from edgelat.profiler.recipes import get_recipe

OUT = Path(__file__).parent / "out"


def _cluster(workers: int, logs: Path) -> tuple[str, list[subprocess.Popen[bytes]]]:
    from distributed import Client

    address = f"tcp://127.0.0.1:{open_port('127.0.0.1')}"
    port = address.rsplit(":", 1)[1]
    procs = [subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1", "--port", port,
                               "--no-dashboard"], stderr=open(logs / "scheduler.log", "ab"))]  # fmt: skip
    for i in range(workers):
        procs.append(subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1", "--no-dashboard",
                                       "--host", "127.0.0.1"], stderr=open(logs / f"worker{i}.log", "ab")))  # fmt: skip
    with Client(address, timeout=60, set_as_default=False) as client:
        client.wait_for_workers(workers, timeout=120)
    return address, procs


def _rate(configs: list[tuple[str, dict]], preset: str, workers: int, scheduler: str | None) -> dict[str, float]:
    p = get_preset(preset)
    target = get_recipe("default").target(p.target())  # what a default campaign builds for
    with tempfile.TemporaryDirectory(prefix="edgelat-scaling-") as cache:
        builder = Builder(Path(cache), workers=workers, scheduler=scheduler, cross_compiler=p.cross_compiler)
        try:
            # Warm every worker (TVM imported, code paged in) on two builds not counted.
            for future in [builder.submit(BuildRequest(op, cfg, target, p.cross_compiler, p.arch)) for op, cfg in configs[:2]]:
                future.result()
            start = time.perf_counter()
            futures = [builder.submit(BuildRequest(op, cfg, target, p.cross_compiler, p.arch)) for op, cfg in configs[2:]]
            results = [f.result() for f in futures]
            elapsed = time.perf_counter() - start
        finally:
            builder.close()
    built = [r for r in results if r.error is None and not r.cached]
    return {"builds": len(built), "failed": sum(r.error is not None for r in results), "seconds": elapsed,
            "per_minute": len(built) / elapsed * 60, "median_build_s": statistics.median(r.build_s for r in built)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=10, help="configs per op kind")
    args = parser.parse_args()
    configs = plan_configs(("conv2d", "dwconv2d", "dense"), args.samples, seed=3, weighted=False)
    results: dict[str, dict[str, dict[str, float]]] = {}
    with tempfile.TemporaryDirectory(prefix="edgelat-dask-") as logs:
        address, procs = _cluster(2, Path(logs))
        try:
            for preset in ("local", "rpi4"):
                for label, workers, scheduler in (("local x1", 1, None), ("local x2", 2, None), ("dask 2 workers", 0, address)):
                    results.setdefault(preset, {})[label] = row = _rate(configs, preset, workers, scheduler)
                    print(f"{preset:6s} {label:15s} {row['per_minute']:7.1f} builds/min  (median build {row['median_build_s']:.2f} s, "
                          f"{row['builds']} built, {row['failed']} failed)", flush=True)  # fmt: skip
        finally:
            for proc in procs:
                proc.terminate()
            for proc in procs:
                proc.wait(30)
    OUT.mkdir(exist_ok=True)
    (OUT / "build_scaling.json").write_text(json.dumps({"when": time.strftime("%Y-%m-%d"), "configs": len(configs), "results": results}, indent=2))


if __name__ == "__main__":
    main()
