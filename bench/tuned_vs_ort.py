"""What a user would pick instead: networks on `local`, one thread, side by side in one run, built tuned (the
workspace's tuning database; kernels it lacks are transferred or tuned with --trials, as `measure --recipe tuned`
does), built untuned (`default`), and run by ONNX Runtime (CPU provider, one thread, all graph optimisations) from
the same weights. TVM builds are timed by the device agent, ONNX Runtime in this process, with the same protocol
(a warm-up, then 7 repeats of at least 100 ms each; medians). Each network is also predicted by the workspace's
tuned and default models (what `validate` does, measured here side by side with the rest).

Also the tuning cost of each network: the seconds its tuned build took (tuning included) and how many kernels the
tuning database learnt for it.

Usage: python bench/tuned_vs_ort.py --workspace WS [--networks quick,mobilenetv2_100@160,resnet18@160] [--trials 16] [--rep-trials 256] [--tag T]
Writes bench/out/tuned_vs_ort[_T].{json,csv}.
"""

from __future__ import annotations

import argparse
import csv
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

import numpy as np  # noqa: E402
import torch  # noqa: E402

from edgelat.datasets.zoo.export import export_module_onnx  # noqa: E402
from edgelat.ops.network import network_kernels, relax_from_torch  # noqa: E402
from edgelat.predictors.predict import load_model, predict_kernels  # noqa: E402
from edgelat.profiler.builds import Builder  # noqa: E402
from edgelat.profiler.e2e import build_network  # noqa: E402
from edgelat.profiler.inventory import agent_session, get_device  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.profiler.tuning import KernelTuner, Representatives  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import Workspace, open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def ort_ms(model: torch.nn.Module, x: torch.Tensor, repeat: int = 7, min_repeat_ms: float = 100.0) -> float:
    import onnxruntime as ort

    with tempfile.TemporaryDirectory() as tmp:
        path = export_module_onnx(model, tuple(x.shape), Path(tmp) / "net.onnx")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    feed = {sess.get_inputs()[0].name: x.numpy()}
    sess.run(None, feed)
    once = time.perf_counter()
    sess.run(None, feed)
    number = max(1, int(min_repeat_ms / 1000 / max(time.perf_counter() - once, 1e-7)))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            sess.run(None, feed)
        times.append((time.perf_counter() - start) / number * 1000)
    return statistics.median(times)


def workloads(ws: Workspace) -> int:
    return sum(len(f.read_text().splitlines()) for f in ws.tuning_dir("local").glob("*workload*.json"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", required=True, help="a workspace whose `local` device has a tuning database")
    parser.add_argument("--networks", default="quick,mobilenetv2_100@160,resnet18@160", help="as `edgelat validate --zoo`")
    parser.add_argument("--trials", type=int, default=16)
    parser.add_argument("--rep-trials", type=int, default=256, help="representatives' trials, as `measure --recipe tuned` (0: none)")
    parser.add_argument("--tag", default="", help="written to bench/out/tuned_vs_ort_TAG.{json,csv} (to keep an earlier run's)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    rows: list[dict[str, Any]] = []
    failed: dict[str, str] = {}  # network -> why its tuned build failed
    with (
        open_workspace(args.workspace) as ws,
        tempfile.TemporaryDirectory() as tmp,
        agent_session(ws, get_device(ws, "local"), threads=1) as agent,
        Builder(ws.cache_dir) as builder,
    ):
        device = get_device(ws, "local")
        models = {r: load_model(ws, "local", r) for r in ("default", "tuned") if (ws.model_dir("local", r) / "meta.json").exists()}
        # One tuner for the run (opening a large tuning database takes minutes), as `measure --recipe tuned` uses.
        tuner = KernelTuner(
            ws.tuning_dir("local"),
            device.target("tuned"),
            1,
            None,
            lambda p, a: agent.time_library(Path(p), a, caches=get_recipe("tuned").candidate_caches),  # (as `measure` times them)
            builder=builder,
            representatives=Representatives(args.rep_trials) if args.rep_trials else None,
        )

        def timed(mod: Any, recipe: str, n: int) -> tuple[float, float]:
            """(median ms on the device, seconds the build took)"""
            lib = Path(tmp) / f"net{n}-{recipe}.so"  # a new name each time: a library the agent loaded stays mapped
            start = time.perf_counter()
            inputs = build_network(mod, device.target(recipe), lib, None, get_recipe(recipe), tuner, args.trials)
            built = time.perf_counter() - start
            remote = agent.remote_path(lib.name)
            agent.transport.put(lib, remote)
            reply = agent.request(
                "bench_network", {"lib": remote, "inputs": inputs, "repeat": 7, "min_repeat_ms": 100.0, "per_kernel": False}, timeout=1800
            )
            return statistics.median(reply["seconds"]) * 1000, built

        for n, (label, factory, res) in enumerate(validation_networks(args.networks)):
            torch.manual_seed(0)
            model = factory().eval()
            x = torch.randn(1, 3, res, res)
            mod = relax_from_torch(model, x)
            kernels = network_kernels(mod)
            before = workloads(ws)
            try:
                tuned_ms, tuned_s = timed(mod, "tuned", n)
            except Exception as exc:  # noqa: BLE001 - a network that does not build is reported, the others go on
                failed[label] = str(exc).splitlines()[0][:300]
                print({"network": label, "failed": failed[label]}, flush=True)
                continue
            default_ms, _ = timed(mod, "default", n)
            row = {
                "network": label,
                "kernels": len(kernels),
                "kernels_tuned_now": workloads(ws) - before,
                "tuned_build_s": round(tuned_s, 1),
                "tuned_ms": tuned_ms,
                "default_ms": default_ms,
                "ort_ms": ort_ms(model, x),
            }
            for r in ("tuned", "default"):  # a recipe without models (none trained in the workspace) is not predicted
                predicted = predict_kernels(models[r], kernels).total_ms if r in models else None
                row[f"{r}_predicted_ms"] = predicted
                row[f"{r}_error_pct"] = 100 * (predicted / row[f"{r}_ms"] - 1) if predicted is not None else None
            row["tuned_over_ort"] = row["tuned_ms"] / row["ort_ms"]
            row["default_over_ort"] = row["default_ms"] / row["ort_ms"]
            row["default_over_tuned"] = row["default_ms"] / row["tuned_ms"]
            rows.append(row)
            print({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}, flush=True)
        tuner.close()
    summary: dict[str, Any] = {
        "networks": len(rows),
        "median_tuned_over_ort": float(np.median([r["tuned_over_ort"] for r in rows])),
        "median_default_over_ort": float(np.median([r["default_over_ort"] for r in rows])),
        "median_default_over_tuned": float(np.median([r["default_over_tuned"] for r in rows])),
        "rep_trials": args.rep_trials,
        "tuning_s_total": float(sum(r["tuned_build_s"] for r in rows)),
        "failed": failed,
    }
    for r in ("tuned", "default"):
        errors = [row[f"{r}_error_pct"] for row in rows if row[f"{r}_error_pct"] is not None]
        summary[f"{r}_within_10"] = float(np.mean([abs(e) <= 10 for e in errors]) * 100) if errors else None
    print(summary)
    OUT.mkdir(exist_ok=True)
    report = {"when": time.strftime("%Y-%m-%d"), "trials": args.trials, "summary": summary, "rows": rows}
    name = f"tuned_vs_ort_{args.tag}" if args.tag else "tuned_vs_ort"
    (OUT / f"{name}.json").write_text(json.dumps(report, indent=2))
    with (OUT / f"{name}.csv").open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
