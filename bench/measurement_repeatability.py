"""How well the `local` device's kernel measurements repeat, with builds beside the timing or not.

The same kernel configs (20 per op kind, drawn by the default sampler) are profiled four times,
each in a fresh workspace so every kernel is built anew, alternating: builds taking turns with
timing (what `local` does), builds overlapped with timing (what remote devices do), and again
both. Pairs of runs are compared: the share of kernels whose two medians agree within ±5% and
±10%. This bounds what any predictor can score against held-out kernels on this machine.

Then, side by side in one process, a few kernels are timed alone and while two build workers
compile other kernels, alternating (``--builds-only`` runs just this part).

Usage: python bench/measurement_repeatability.py [--per-op 20] [--out DIR] [--builds-only]
Writes bench/out/measurement_repeatability.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from edgelat.ops import get_op, list_ops  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig, plan_configs, profile  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"
RUNS = (("turns-1", False), ("overlap-1", True), ("turns-2", False), ("overlap-2", True))


def agreement(a: dict[str, float], b: dict[str, float], keys: list[str]) -> dict[str, float]:
    ratio = np.array([b[k] / a[k] for k in keys if k in a and k in b])
    return {
        "n": int(len(ratio)),
        "within_5": float(np.mean(np.abs(ratio - 1) <= 0.05) * 100),
        "within_10": float(np.mean(np.abs(ratio - 1) <= 0.10) * 100),
        "median_ratio": float(np.median(ratio)),
        "p90_abs_log_ratio": float(np.percentile(np.abs(np.log(ratio)), 90)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--per-op", type=int, default=20)
    parser.add_argument("--out", default=None, help="where the four workspaces go (default: a temporary directory)")
    parser.add_argument("--builds-only", action="store_true", help="only time kernels alone vs beside builds")
    args = parser.parse_args()
    report_file = OUT / "measurement_repeatability.json"
    if args.builds_only:
        report = json.loads(report_file.read_text()) if report_file.exists() else {}
        report["beside_builds"] = beside_builds()
        report_file.write_text(json.dumps(report, indent=2))
        return
    from edgelat.datasets.shapes import real_network_configs

    ops = [op for op in list_ops() if not get_op(op).composite]
    plan = plan_configs(ops, args.per_op, seed=11, seeds=real_network_configs(), weighted=False)
    root = Path(args.out or tempfile.mkdtemp(prefix="edgelat-repeat-"))
    medians: dict[str, dict[str, float]] = {}
    kinds: dict[str, str] = {}
    for tag, overlap in RUNS:
        shutil.rmtree(root / tag, ignore_errors=True)
        start = time.time()
        with open_workspace(root / tag) as ws:
            profile(ws, "local", ProfileConfig(configs=tuple(plan), overlap_builds=overlap))
            rows = ws.store.rows("SELECT config_id, op, median_ms FROM measurements WHERE status = 'ok'")
        medians[tag] = {r["config_id"]: r["median_ms"] for r in rows}
        kinds.update({r["config_id"]: r["op"] for r in rows})
        print(f"{tag}: {len(rows)} kernels in {time.time() - start:.0f} s", flush=True)
    keys = sorted(kinds)
    report: dict = {"kernels": len(keys), "pairs": {}, "per_op_within_10": {}}
    for a, b in (("turns-1", "turns-2"), ("overlap-1", "overlap-2"), ("turns-1", "overlap-1"), ("turns-2", "overlap-2")):
        report["pairs"][f"{a} vs {b}"] = agreement(medians[a], medians[b], keys)
    for op in ops:
        op_keys = [k for k in keys if kinds[k] == op]
        report["per_op_within_10"][op] = {
            "turns": agreement(medians["turns-1"], medians["turns-2"], op_keys)["within_10"],
            "overlap": agreement(medians["overlap-1"], medians["overlap-2"], op_keys)["within_10"],
        }
    report["beside_builds"] = beside_builds()
    OUT.mkdir(exist_ok=True)
    report_file.write_text(json.dumps(report, indent=2))
    print(
        f"\n{len(keys)} kernels, each measured in four runs\n\n| runs compared | within ±5% | within ±10% | p90 abs log ratio |\n|---|---|---|---|"
    )
    for name, m in report["pairs"].items():
        print(f"| {name} | {m['within_5']:.1f}% | {m['within_10']:.1f}% | {m['p90_abs_log_ratio']:.3f} |")
    print("\n| op | within ±10%, builds taking turns | within ±10%, builds overlapped |\n|---|---|---|")
    for op, m in report["per_op_within_10"].items():
        print(f"| {op} | {m['turns']:.0f}% | {m['overlap']:.0f}% |")


def beside_builds(rounds: int = 4) -> dict:
    """Kernels timed alone and while the build pool compiles other kernels, alternating; their ratio."""
    import platform
    import statistics

    import tvm

    from edgelat.profiler.builds import Builder, BuildRequest, build_kernel
    from edgelat.profiler.presets import get_preset

    target, arch, dev = get_preset("local").target(), platform.machine(), tvm.cpu(0)
    cache = tempfile.mkdtemp(prefix="edgelat-probe-")
    probes = []
    for op, cfg in plan_configs(["conv2d", "dwconv2d", "add", "dense"], 2, seed=3, weighted=False):
        built = build_kernel(BuildRequest(op, cfg, target, None, arch), cache)
        module, kernel = tvm.runtime.load_module(built.lib), built.kernels[0]
        arrays = [
            tvm.runtime.tensor(np.random.default_rng(0).uniform(0.1, 1, size=shape).astype(dtype), dev) for shape, dtype in kernel["args"]
        ]
        module[kernel["name"]](*arrays)
        start = time.perf_counter()
        module[kernel["name"]](*arrays)
        number = max(1, int(0.04 / max(time.perf_counter() - start, 1e-7) + 0.999))
        probes.append((op, module.time_evaluator(kernel["name"], dev, number=number, repeat=7), arrays))
    ops = [op for op in list_ops() if not get_op(op).composite]
    ms: dict[str, list[list[float]]] = {"alone": [], "beside builds": []}
    with Builder(Path(tempfile.mkdtemp(prefix="edgelat-bg-")), None) as builder:
        for r in range(rounds):
            for mode in ms:
                futures = []
                if mode == "beside builds":  # a fresh cache each round, so the workers really compile
                    background = plan_configs(ops, 3, seed=100 + r, weighted=False)
                    builder.cache_dir = tempfile.mkdtemp(prefix="edgelat-bg-")
                    futures = [builder.submit(BuildRequest(op, cfg, target, None, arch)) for op, cfg in background]
                    time.sleep(1.0)  # let the workers start
                ms[mode].append([statistics.median(timer(*arrays).results) * 1000 for _, timer, arrays in probes])
                for future in futures:
                    future.result()
    ratio = np.array(ms["beside builds"]) / np.array(ms["alone"])
    result = {
        "kernels": [op for op, _, _ in probes],
        "rounds": rounds,
        "median_ratio": float(np.median(ratio)),
        "max_ratio": float(ratio.max()),
        "alone_ms": np.median(ms["alone"], axis=0).tolist(),
        "beside_builds_ms": np.median(ms["beside builds"], axis=0).tolist(),
    }
    print(
        f"\nbeside builds / alone, {len(probes)} kernels x {rounds} rounds: median {result['median_ratio']:.3f}, max {result['max_ratio']:.2f}"
    )
    for op, a, b in zip(result["kernels"], result["alone_ms"], result["beside_builds_ms"], strict=True):
        print(f"  {op}: {a:.4f} ms alone, {b:.4f} ms beside builds")
    return result


if __name__ == "__main__":
    main()
