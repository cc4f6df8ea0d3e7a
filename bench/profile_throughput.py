"""Profiling throughput and quality on this machine, measured side by side in one run.

Prints (and saves to bench/out/profile_throughput.json):
- kernels built per minute on the host (local target and aarch64 cross builds);
- kernels measured per minute on the `local` device, builds cached;
- the repeat-to-repeat spread (coefficient of variation) of those measurements;
- MetaSchedule tuning cost per kernel for the `tuned` recipe;
- per op kind, on the same configurations: default and tuned latency, and their ratio to
  ONNX Runtime (one thread) running the same op.

Usage: python bench/profile_throughput.py [--samples 4] [--tuned-ops conv2d,dwconv2d,dense,add] [--trials 16]
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

os.environ.setdefault("TVM_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from edgelat.ops import get_op, list_ops  # noqa: E402
from edgelat.profiler.builds import Builder, BuildRequest  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig, plan_configs, profile  # noqa: E402
from edgelat.profiler.presets import get_preset  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

OUT = Path(__file__).parent / "out"


def build_rate(configs: list[tuple[str, dict]], preset: str, cache: Path) -> float:
    p = get_preset(preset)
    target = get_recipe("default").target(p.target())  # what a default campaign builds for
    start = time.perf_counter()
    with Builder(cache, workers=2) as builder:
        results = [f.result() for f in [builder.submit(BuildRequest(op, cfg, target, p.cross_compiler, p.arch)) for op, cfg in configs]]
    elapsed = time.perf_counter() - start
    failed = [r.error for r in results if r.error]
    if failed:
        print(f"{len(failed)} {preset} builds failed, first: {failed[0][:300]}", file=sys.stderr)
    return len(results) / elapsed * 60


def torch_module(op: str, cfg: dict):  # noqa: ANN201 - bench-only: the same op in torch, for ONNX Runtime
    import torch
    from torch import nn

    act = {"relu": nn.ReLU(), "tir_clip": nn.ReLU6()}.get(cfg.get("epilogue", "").split("+")[-1], nn.Identity())
    if op in ("conv2d", "dwconv2d"):
        conv = nn.Conv2d(
            cfg["cin"], cfg["cout"], cfg["k"], cfg["stride"], cfg["pad"], cfg["dilation"], cfg["groups"], bias="add.c" in cfg["epilogue"]
        )
        return nn.Sequential(conv, act), (1, cfg["cin"], cfg["h"], cfg["w"])
    if op == "dense":
        return nn.Sequential(nn.Linear(cfg["k"], cfg["n"], bias="add.c" in cfg["epilogue"]), act), (cfg["m"], cfg["k"])
    if op in ("max_pool2d", "avg_pool2d"):
        pool = (
            nn.MaxPool2d(cfg["k"], cfg["stride"], cfg["pad"])
            if op == "max_pool2d"
            else nn.AvgPool2d(cfg["k"], cfg["stride"], cfg["pad"], count_include_pad=False)
        )
        return nn.Sequential(pool, act), (1, cfg["c"], cfg["h"], cfg["w"])
    if op == "global_avg_pool" and not cfg["epilogue"]:
        return nn.AdaptiveAvgPool2d(1), (1, cfg["c"], cfg["h"], cfg["w"])
    if op == "add":
        shape = (1, cfg["c"], cfg["h"], cfg["w"])

        class Add(nn.Module):  # one Add of two tensors (the second an initializer), like the kernel
            def __init__(self) -> None:
                super().__init__()
                self.register_buffer("other", torch.rand(*shape))

            def forward(self, x: torch.Tensor) -> torch.Tensor:
                return act(x + self.other)

        return Add(), shape
    if op == "softmax":
        return nn.Softmax(-1), (cfg["rows"], cfg["cols"])
    return None, None


def ort_ms(op: str, cfg: dict, repeat: int = 7) -> float | None:
    import onnxruntime as ort
    import torch

    module, shape = torch_module(op, cfg)
    if module is None:
        return None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "op.onnx"
        torch.onnx.export(module.eval(), (torch.randn(*shape),), str(path), dynamo=False, input_names=["x"])
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    x = np.random.rand(*shape).astype("float32")
    sess.run(None, {"x": x})
    once = time.perf_counter()
    sess.run(None, {"x": x})
    number = max(1, int(0.04 / max(time.perf_counter() - once, 1e-7)))
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        for _ in range(number):
            sess.run(None, {"x": x})
        times.append((time.perf_counter() - start) / number * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=int, default=4, help="configs per op kind for the throughput runs")
    parser.add_argument("--tuned-ops", default="conv2d,dwconv2d,dense,add")
    parser.add_argument("--trials", type=int, default=16)
    args = parser.parse_args()
    ops = [o for o in list_ops() if not get_op(o).composite]
    report: dict = {"machine": os.uname().machine, "threads": os.environ["TVM_NUM_THREADS"]}
    with tempfile.TemporaryDirectory(prefix="edgelat-bench-") as tmp, open_workspace(Path(tmp) / "ws") as ws:
        configs = plan_configs(ops, args.samples, seed=1, weighted=False)
        report["build_per_min_local"] = build_rate(configs, "local", ws.cache_dir)
        report["build_per_min_aarch64"] = build_rate(configs, "rpi4", Path(tmp) / "arm-cache")
        start = time.perf_counter()
        result = profile(ws, "local", ProfileConfig(ops=tuple(ops), samples=args.samples, seed=1, weighted=False))
        report["measured_per_min_local"] = result.measured / (time.perf_counter() - start) * 60
        rows = ws.store.rows("SELECT cv, unstable, status FROM measurements WHERE campaign_id = :campaign_id", {"campaign_id": result.campaign_id})
        cvs = [r["cv"] for r in rows if r["status"] == "ok"]
        report["kernels"] = len(rows)
        report["failed"] = sum(r["status"] != "ok" for r in rows)
        report["cv_median_pct"] = 100 * statistics.median(cvs)
        report["cv_p90_pct"] = 100 * float(np.percentile(cvs, 90))
        report["unstable"] = sum(r["unstable"] or 0 for r in rows)

        tuned_ops = tuple(args.tuned_ops.split(","))
        default = profile(ws, "local", ProfileConfig(ops=tuned_ops, samples=1, seed=2))
        tuned = profile(ws, "local", ProfileConfig(ops=tuned_ops, samples=1, seed=2, recipe="tuned", trials=args.trials))
        per_op = []
        for row in ws.store.rows(
            """SELECT d.op, d.median_ms AS d_ms, t.median_ms AS t_ms, t.tune_s, k.params FROM measurements d
               JOIN measurements t ON t.config_id = d.config_id AND t.campaign_id = :tuned JOIN kernel_configs k ON k.config_id = d.config_id
               WHERE d.campaign_id = :default""",
            {"tuned": tuned.campaign_id, "default": default.campaign_id},
        ):
            ort_latency = ort_ms(row["op"], json.loads(row["params"]))
            per_op.append(
                {
                    "op": row["op"],
                    "config": json.loads(row["params"]),
                    "default_ms": row["d_ms"],
                    "tuned_ms": row["t_ms"],
                    "tune_s": row["tune_s"],
                    "ort_ms": ort_latency,
                    "default_over_ort": row["d_ms"] / ort_latency if ort_latency and row["d_ms"] else None,
                    "tuned_over_ort": row["t_ms"] / ort_latency if ort_latency and row["t_ms"] else None,
                }
            )
        report["per_op"] = per_op
        report["tune_s_per_kernel_mean"] = statistics.fmean([p["tune_s"] for p in per_op if p["tune_s"]]) if per_op else None
    OUT.mkdir(exist_ok=True)
    (OUT / "profile_throughput.json").write_text(json.dumps(report, indent=2))
    print("| figure | value |\n|---|---|")
    print(f"| kernels built per minute, host, local target (2 workers) | {report['build_per_min_local']:.0f} |")
    print(f"| kernels built per minute, host, aarch64 cross (2 workers) | {report['build_per_min_aarch64']:.0f} |")
    print(f"| kernels measured per minute on `local` (builds cached, 7 repeats x >= 40 ms) | {report['measured_per_min_local']:.0f} |")
    print(
        f"| repeat-to-repeat CV, median / p90 ({report['kernels']} kernels) | {report['cv_median_pct']:.1f}% / {report['cv_p90_pct']:.1f}% |"
    )
    print(f"| unstable after 3 attempts / failed | {report['unstable']} / {report['failed']} |")
    if report["tune_s_per_kernel_mean"]:
        print(f"| MetaSchedule tuning per kernel ({args.trials} trials) | {report['tune_s_per_kernel_mean']:.0f} s |")
    print(
        "\n| op | default ms | tuned ms | ONNX Runtime ms (1 thread) | default / ORT | tuned / ORT | tuning s |\n|---|---|---|---|---|---|---|"
    )
    for p in per_op:
        ort_s = f"{p['ort_ms']:.4f}" if p["ort_ms"] else "n/a"
        ratio = lambda v: f"{v:.2f}" if v else "n/a"  # noqa: E731
        print(
            f"| {p['op']} | {p['default_ms']:.4f} | {p['tuned_ms']:.4f} | {ort_s} | {ratio(p['default_over_ort'])} | {ratio(p['tuned_over_ort'])} | {p['tune_s'] or 0:.0f} |"
        )


if __name__ == "__main__":
    main()
