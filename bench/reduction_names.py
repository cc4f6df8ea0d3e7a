"""Network kernels whose blocks TVM named otherwise than the profiled kernel of their shape: tuned builds before and now.

TVM names a reduction's block after the tensor it reads: a network's global pools are ``lv9_red``, ``lv82_red``...,
the pool a campaign profiles from its config ``x_red``. The tuning database matches a network's pool to the profiled
record by structure, but MetaSchedule's anchor-trace scheduling looks the anchor block up by name: it failed, and
the pool ran untuned in the tuned build while the predictor charged it the profiled (tuned) time. The tuner now
looks each block of a record up under the kernel's own name for a block of its kind (``anchor_trace``,
``block_kind``).

For each network, its kernels' configs are first profiled as a campaign profiles them (each config emitted and
tuned with ``--trials``, one database, transfer first); then the network is built from that database twice: as
before (``_renamed`` and ``block_kind`` patched back to the names as they are) and now. Reported per build: how
many of the network's kernels with an anchor run untuned, and the network's time on `local` (1 thread, the agent's
median of 7 repeats of at least 100 ms), the two builds timed alternately for ``--rounds`` rounds, medians.

Usage: python bench/reduction_names.py [--networks efficientnet_b0@96,mobilenetv3_small_100@160,ghostnet_100@96]
       [--trials 16] [--rounds 5]
Writes bench/out/reduction_names.{json,csv}.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from unittest import mock

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)

import edgelat.profiler.tuning as tuning  # noqa: E402
from edgelat.ops import config_id, fuse, get_op, kernel_funcs, main_module  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.profiler.builds import Builder  # noqa: E402
from edgelat.profiler.e2e import build_network  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.profiler.tuning import KernelTuner  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

WAYS = ("before", "now")


@contextlib.contextmanager
def names_as_they_are() -> Iterator[None]:
    """The tuner as it was before: a record's anchor looked up under its own block name, kinds by block name."""
    with mock.patch.object(tuning, "_renamed", lambda trace, names: trace), mock.patch.object(tuning, "block_kind", lambda mod, name: name):
        yield


def untuned_kernels(tuner: KernelTuner, mod: Any) -> tuple[int, int, list[str]]:
    """(kernels with an anchor, how many of those run untuned, their anchors' names) of the network ``mod``, as its
    tuned build schedules them from the database."""
    import tvm
    import tvm_ffi

    funcs = kernel_funcs(fuse(mod)[0])
    anchored, untuned, names = 0, 0, []
    for func in funcs.functions.values():
        if not isinstance(func, tvm.tirx.PrimFunc):
            continue
        anchor = tuning._anchor(main_module(func))
        if anchor is None:
            continue
        anchored += 1
        scheduled = tuner.scheduled(func)
        if scheduled is None or tvm_ffi.structural_equal(scheduled.body, func.body):
            untuned += 1
            names.append(anchor[0])
    return anchored, untuned, names


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", default="efficientnet_b0@96,mobilenetv3_small_100@160,ghostnet_100@96")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(1)
    recipe = get_recipe("tuned")
    rows: list[dict[str, Any]] = []
    with (
        tempfile.TemporaryDirectory() as tmpdir,
        open_workspace(Path(tmpdir) / "ws") as ws,
        Builder(Path(tmpdir) / "cache", workers=2) as pool,
    ):
        tmp = Path(tmpdir)
        device = get_device(ws, "local")
        target = device.target("tuned")
        with agent_session(ws, device, threads=1) as agent:
            tuner = KernelTuner(tmp / "db", target, 1, None, lambda p, a: agent.time_library(Path(p), a), builder=pool)
            networks = []
            profiled: set[str] = set()
            start = time.perf_counter()
            for label, factory, res in validation_networks(args.networks):
                torch.manual_seed(0)
                mod = relax_from_torch(factory().eval(), torch.randn(1, 3, res, res))
                for k in network_kernels(mod):  # the network's kernels, profiled from their configs
                    key = config_id(k.op, k.config)
                    if key in profiled:
                        continue
                    profiled.add(key)
                    funcs = kernel_funcs(fuse(get_op(k.op).emit(k.config))[0])
                    prims = {gv.name_hint: f for gv, f in funcs.functions.items() if gv.name_hint != "main"}
                    recipe.schedule(prims, tuner, args.trials)
                print(f"{label}: {len(profiled)} configs profiled so far, {time.perf_counter() - start:.0f} s", flush=True)
                networks.append((label, mod))
            profile_s = time.perf_counter() - start

            libs: dict[tuple[str, str], tuple[str, list[list[Any]]]] = {}
            for label, mod in networks:
                for way in ("now", "before"):  # now first: a kernel without a record is tuned once, under its own name
                    with names_as_they_are() if way == "before" else contextlib.nullcontext():
                        anchored, untuned, names = untuned_kernels(tuner, mod)
                        lib = tmp / f"{label}-{way}.so"
                        inputs = build_network(mod, target, lib, None, recipe, tuner, args.trials)
                    remote = agent.remote_path(lib.name)
                    agent.transport.put(lib, remote)
                    libs[label, way] = remote, inputs
                    rows.append(
                        {
                            "network": label,
                            "way": way,
                            "kernels": anchored,
                            "untuned": untuned,
                            "untuned_anchors": " ".join(sorted(set(names))),
                        }
                    )
                    print(rows[-1], flush=True)
            tuner.close()

            times: dict[tuple[str, str], list[float]] = {key: [] for key in libs}
            for r in range(args.rounds):
                for label, _ in networks:
                    for way in WAYS if r % 2 == 0 else WAYS[::-1]:
                        remote, inputs = libs[label, way]
                        reply = agent.request(
                            "bench_network",
                            {"lib": remote, "inputs": inputs, "repeat": 7, "min_repeat_ms": 100.0, "per_kernel": False},
                            timeout=1800,
                        )
                        times[label, way].append(statistics.median(reply["seconds"]) * 1000)
    for row in rows:
        row["ms"] = statistics.median(times[row["network"], row["way"]])
        row["ms_rounds"] = " ".join(f"{t:.3f}" for t in times[row["network"], row["way"]])
    summary = {
        "networks": args.networks,
        "trials": args.trials,
        "rounds": args.rounds,
        "configs_profiled": len(profiled),
        "profile_s": round(profile_s),
        "now_over_before": {
            label: statistics.median(times[label, "now"]) / statistics.median(times[label, "before"]) for label, _ in networks
        },
    }
    write_outputs("reduction_names", summary, rows)
    print(summary)


if __name__ == "__main__":
    main()
