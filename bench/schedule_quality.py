"""Does the device's tuning database tell the tuned conv2d model how well a kernel will be scheduled?

How fast a tuned kernel runs depends on the schedule it got, which its shape does not say. A tuned build gets its
schedules from the device's tuning database (transferred from the nearest tuned kernels of the same anchor), so
the throughput those neighbours reached is known at prediction time. This bench adds it as features to the conv2d
model and compares, on the workspace of ``bench/sampler_coverage.py``:

- features: ``q_near`` (log anchor iterations per second of the nearest tuned workload, by
  :func:`~edgelat.profiler.tuning.shape_distance`), ``q_max3`` / ``q_med3`` (the best / median of the 3 nearest),
  ``q_dist`` (how far the nearest is). A training kernel's own workload is left out (leave one out), and so are the
  workloads of the test networks' kernels: the database as a new network's prediction would find it;
- trained on the arms' campaigns (``--train``), tested on the networks' kernels profiled exactly (``--reference``),
  kernel by kernel and summed per network; then ``--resamples`` refits on random 80% subsets for the spread.

Usage: python bench/schedule_quality.py --workspace WS [--train 1,2] [--reference 3] [--resamples 30]
Writes bench/out/schedule_quality.{json,csv}.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from _workspace import write_outputs  # noqa: E402  (bench/ is the script's folder)
from sampler_coverage import HEAVY_BYTES, OP, campaign_rows, conv_kernels  # noqa: E402

from edgelat.ops import config_id, get_op, kernel_funcs  # noqa: E402
from edgelat.predictors.estimators import KernelLatencyRegressor  # noqa: E402
from edgelat.predictors.train import accuracy_metrics, feature_frame  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

Anchor = tuple[str, tuple[int, ...]]
FEATURES = {"shape only": (), "+nearest": ("q_near", "q_dist"), "+best of 3": ("q_max3", "q_dist"), "+all": ("q_near", "q_max3", "q_med3", "q_dist")}


def tuned_anchors(tuning_dir: Path) -> dict[Anchor, float]:
    """The fastest tuned (not untuned) record's mean seconds for each anchor shape in the device's database."""
    from tvm.s_tir import meta_schedule as ms

    from edgelat.profiler.tuning import MODULE_EQUALITY, _anchor, _is_untuned

    db = ms.database.JSONDatabase(work_dir=str(tuning_dir), module_equality=MODULE_EQUALITY)
    best: dict[Anchor, float] = {}
    for record in db.get_all_tuning_records():
        anchor = _anchor(record.workload.mod) if record.run_secs and not _is_untuned(record.trace) else None
        if anchor is not None:
            seconds = sum(float(t) for t in record.run_secs) / len(record.run_secs)
            best[anchor] = min(best.get(anchor, math.inf), seconds)
    return best


def kernel_anchor(cfg: dict[str, Any]) -> Anchor:
    """The anchor block of the kernel ``cfg`` lowers to (as the tuner sees it)."""
    import tvm

    from edgelat.ops.lowering import fuse
    from edgelat.profiler.tuning import _anchor

    funcs = kernel_funcs(fuse(get_op(OP).emit(cfg))[0])
    (name,) = [gv.name_hint for gv in funcs.functions if gv.name_hint != "main"]
    anchor = _anchor(tvm.IRModule({"main": funcs[name]}))
    assert anchor is not None
    return anchor


def quality(anchor: Anchor, sources: dict[Anchor, float], k: int = 3) -> dict[str, float]:
    """The features of a kernel with ``anchor`` from the other tuned anchors of its kind in ``sources``."""
    from edgelat.profiler.tuning import shape_distance

    name, extents = anchor
    near = sorted(
        (shape_distance(e, extents), math.prod(e) / s) for (n, e), s in sources.items() if n == name and len(e) == len(extents) and e != extents
    )[:k]
    rates = [rate for _, rate in near]
    return {"q_near": math.log(rates[0]), "q_max3": math.log(max(rates)), "q_med3": math.log(float(np.median(rates))), "q_dist": near[0][0]}


def frame(cfgs: list[dict[str, Any]], q: list[dict[str, float]], columns: tuple[str, ...]) -> pd.DataFrame:
    X = feature_frame(OP, cfgs)
    for column in columns:
        X[column] = [d[column] for d in q]
    return X


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--train", default="1,2", help="the campaigns trained on")
    parser.add_argument("--reference", type=int, default=3, help="the campaign that profiled the networks' conv2d kernels")
    parser.add_argument("--networks", default="resnet18@96,resnet18@160,squeezenet1_1@128,mobilenetv2_100@160")
    parser.add_argument("--resamples", type=int, default=30)
    args = parser.parse_args()
    nets = conv_kernels(args.networks)
    with open_workspace(args.workspace) as ws:
        rows = [r for c in args.train.split(",") for r in campaign_rows(ws, int(c))]
        ref_rows = campaign_rows(ws, args.reference)
        tuned = tuned_anchors(ws.tuning_dir("local"))
    train_cfgs = [json.loads(r["params"]) for r in rows]
    y = np.array([r["median_ms"] for r in rows])
    test_ids = [r["config_id"] for r in ref_rows]
    test_cfgs = [json.loads(r["params"]) for r in ref_rows]
    yt = np.array([r["median_ms"] for r in ref_rows])
    train_anchors, test_anchors = [kernel_anchor(c) for c in train_cfgs], [kernel_anchor(c) for c in test_cfgs]
    # The database a new network's prediction would find: none of the test networks' own kernels.
    sources = {a: s for a, s in tuned.items() if a not in set(test_anchors) - set(train_anchors)}
    q_train, q_test = [quality(a, sources) for a in train_anchors], [quality(a, sources) for a in test_anchors]
    heavy = feature_frame(OP, test_cfgs)["param_bytes"].to_numpy() >= HEAVY_BYTES
    summary: dict[str, Any] = {"trained_on": len(rows), "tested_on": len(ref_rows), "heavy": int(heavy.sum()), "sources": len(sources)}
    print(json.dumps(summary), flush=True)

    def figures(model: KernelLatencyRegressor, Xt: pd.DataFrame) -> dict[str, float]:
        p = model.predict(Xt)
        pred = dict(zip(test_ids, p, strict=True))
        out = {f"rmspe_{label}": accuracy_metrics(yt[m], p[m])["rmspe"] for label, m in (("all", heavy | ~heavy), ("heavy", heavy), ("light", ~heavy))}
        for net, cfgs in nets.items():
            ids = [config_id(OP, c) for c in cfgs]
            out[f"{net}_error"] = 100 * (sum(pred[i] for i in ids) / sum(yt[test_ids.index(i)] for i in ids) - 1)
        return out

    rng = np.random.default_rng(0)
    picks = [rng.choice(len(y), size=int(0.8 * len(y)), replace=False) for _ in range(args.resamples)]
    out_rows = []
    for label, columns in FEATURES.items():
        X, Xt = frame(train_cfgs, q_train, columns), frame(test_cfgs, q_test, columns)
        whole = figures(KernelLatencyRegressor().fit(X, y), Xt)
        spread: dict[str, list[float]] = {}
        for pick in picks:
            for k, v in figures(KernelLatencyRegressor().fit(X.iloc[pick].reset_index(drop=True), y[pick]), Xt).items():
                spread.setdefault(k, []).append(v)
        summary[label] = {"all_kernels": whole, "resampled_p10_p50_p90": {k: np.percentile(v, [10, 50, 90]).round(1).tolist() for k, v in spread.items()}}
        out_rows.append({"features": label, **{k: round(v, 1) for k, v in whole.items()}})
        print(label, json.dumps(summary[label]), flush=True)
    write_outputs("schedule_quality", summary, out_rows)


if __name__ == "__main__":
    main()
