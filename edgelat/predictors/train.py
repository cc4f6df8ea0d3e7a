"""Training per-device kernel latency models, with held-out metrics next to baselines."""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from edgelat.errors import UsageError
from edgelat.ops import get_op
from edgelat.ops.registry import FEATURE_SCHEMA_VERSION
from edgelat.predictors import CONTEXT_FILE, FALLBACK, FAR
from edgelat.predictors.estimators import MODEL_FORMAT, FlopsLinear, KernelLatencyRegressor, make_baselines, save_estimator
from edgelat.profiler.recipes import get_recipe
from edgelat.workspace import Workspace

__all__ = ["FALLBACK", "OpReport", "TrainReport", "accuracy_metrics", "feature_frame", "generic_frame", "train_device"]


def feature_frame(op: str, configs: list[dict[str, Any]]) -> pd.DataFrame:
    """The one feature function, for training and prediction alike: the registry's, on all configs at once."""
    return get_op(op).feature_table(configs)


def generic_frame(items: list[tuple[str, dict[str, Any]]]) -> pd.DataFrame:
    """Generic features (:mod:`edgelat.ops.generic`) of profiled configs, each fused as a network's kernel is."""
    from edgelat.ops.generic import GENERIC_FEATURES, config_group, group_features

    return pd.DataFrame([group_features(config_group(op, cfg)) for op, cfg in items], columns=list(GENERIC_FEATURES))


def _cross_validate(X: pd.DataFrame, y: np.ndarray, name: str, folds: int, seed: int) -> OpReport:
    from sklearn.model_selection import KFold

    splits = list(KFold(n_splits=min(folds, len(y)), shuffle=True, random_state=seed).split(X))
    report = OpReport(name, len(y), len(splits))
    for model_name, model in {"xgboost": KernelLatencyRegressor(), **make_baselines()}.items():
        out_of_fold = np.empty(len(y))
        for train, test in splits:
            out_of_fold[test] = model.fit(X.iloc[train], y[train]).predict(X.iloc[test])
        report.metrics[model_name] = accuracy_metrics(y, out_of_fold)
    return report


def accuracy_metrics(y: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """RMSPE (%) and the share of predictions within 5% and 10% of the truth."""
    rel = (np.asarray(pred, float) - np.asarray(y, float)) / np.asarray(y, float)
    return {
        "rmspe": float(np.sqrt(np.mean(rel**2)) * 100),
        "within_5": float(np.mean(np.abs(rel) <= 0.05) * 100),
        "within_10": float(np.mean(np.abs(rel) <= 0.10) * 100),
    }


@dataclass
class OpReport:
    op: str
    # configs measured; each is held out once, in one of ``folds`` folds
    n: int
    folds: int
    # model name -> metrics over the out-of-fold predictions
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)


@dataclass
class TrainReport:
    device: str
    recipe: str
    ops: list[OpReport]
    skipped: dict[str, str]
    model_dir: str
    seconds: float


def _training_data(ws: Workspace, device: str, recipe: str, target: dict[str, Any], caches: str) -> tuple[pd.DataFrame, int, int]:
    """The device's successful ``recipe`` measurements built for ``target`` and timed ``caches``; how many
    were built for another target or timed another way; how many a group member measured whose sentinels were
    off the group's (flagged: :mod:`edgelat.profiler.fleet`)."""
    rows = ws.store.rows(
        """SELECT m.op, m.config_id, k.params, m.median_ms, m.target, m.caches, m.flagged
           FROM measurements m JOIN kernel_configs k USING (config_id)
           WHERE m.device = :device AND m.recipe = :recipe AND m.status = 'ok' AND m.median_ms > 0""",
        {"device": device, "recipe": recipe},
    )
    built = [dict(r) for r in rows if r["target"] is not None and json.loads(r["target"]) == target]
    same = [r for r in built if r["caches"] == caches]
    kept = [r for r in same if r["flagged"] is None]
    frame = pd.DataFrame(kept, columns=["op", "config_id", "params", "median_ms"])
    # A config measured in several campaigns counts once, at the median of its medians.
    grouped = frame.groupby(["op", "config_id", "params"], as_index=False)["median_ms"].median()
    ways = (get_recipe(recipe).caches, get_recipe(recipe).far_caches)  # the recipe's other way is not "otherwise"
    otherwise = len(rows) - len(built) + sum(r["caches"] not in ways for r in built)
    return grouped, otherwise, len(same) - len(kept)


def train_device(
    ws: Workspace, device: str, recipe: str | None = None, *, folds: int = 5, seed: int = 0, min_samples: int = 8
) -> TrainReport:
    """Fit one regressor per op kind on ``device``'s measurements and save it in the workspace.

    Accuracy is cross-validated: every config is predicted once by models fitted on the other
    folds (a single 20% split left 20 test configs for most kinds, 5 points a config). A fallback
    model is fitted too, on all kernels of every kind and the features all kernels have
    (:mod:`edgelat.ops.generic`): it prices the kernels of a network that no kind claims.
    """
    import sklearn
    import tvm
    import xgboost

    import edgelat

    start = time.time()
    from edgelat.profiler.inventory import default_recipe, get_device

    recipe = recipe or default_recipe(ws, device)
    target, caches = get_device(ws, device).target(recipe), get_recipe(recipe).caches
    data, other_target, flagged = _training_data(ws, device, recipe, target, caches)
    if data.empty and other_target:
        raise UsageError(
            f"{device}'s {other_target} {recipe} measurements were built for another target or timed with other cache states than "
            f"{recipe} uses now ({json.dumps(target)}, {caches} caches): profile again (edgelat profile {device} --recipe {recipe}; "
            "add --retime to time the same kernels again where only the cache states changed)"
        )
    if data.empty:
        raise UsageError(f"{device} has no successful {recipe} measurements to train on")
    out = ws.model_dir(device, recipe)
    skipped = {"(built or timed otherwise)": f"{other_target} built for another target or timed otherwise"} if other_target else {}
    if flagged:
        skipped["(flagged members)"] = f"{flagged} measured by group members whose sentinels were off the group's"
    reports, saved, fallback = _fit_models(data, out, folds, seed, min_samples, skipped)
    # The recipe's far way (flushed caches for tuned): the same kinds timed as a network too large for the last
    # level meets them, fitted alike beside the others (edgelat.predictors.context puts a network between the two).
    far_way, far = get_recipe(recipe).far_caches, None
    far_data = _training_data(ws, device, recipe, target, far_way)[0] if far_way else pd.DataFrame()
    if far_way and not far_data.empty:
        far_skipped: dict[str, str] = {}
        far_reports, far_saved, far_fallback = _fit_models(far_data, out / FAR, folds, seed, min_samples, far_skipped)
        reports += [OpReport(f"{r.op} ({far_way})", r.n, r.folds, r.metrics) for r in far_reports]
        skipped.update({f"{op} ({far_way})": why for op, why in far_skipped.items()})
        far = {"caches": far_way, "ops": far_saved, FALLBACK: far_fallback}
    elif (out / FAR).exists():
        shutil.rmtree(out / FAR)
    dataset_hash = hashlib.sha256(data.sort_values("config_id").to_csv(index=False).encode()).hexdigest()[:16]
    meta = {
        "device": device,
        "recipe": recipe,
        "feature_schema": FEATURE_SCHEMA_VERSION,
        "model_format": MODEL_FORMAT,
        "dataset_hash": dataset_hash,
        "target": target,
        "caches": caches,
        "versions": {
            "edgelat": edgelat.__version__,
            "xgboost": xgboost.__version__,
            "tvm": tvm.__version__,
            "sklearn": sklearn.__version__,
        },
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "ops": saved,
        FALLBACK: fallback,
        FAR: far,
    }
    (out / "meta.json").write_text(json.dumps(meta, indent=2))
    return TrainReport(device, recipe, reports, skipped, str(out), time.time() - start)


def _fit_models(
    data: pd.DataFrame, out: Path, folds: int, seed: int, min_samples: int, skipped: dict[str, str]
) -> tuple[list[OpReport], dict[str, Any], dict[str, Any] | None]:
    """One model per kind with enough measurements in ``data``, and the fallback, saved in ``out``: their
    cross-validated reports, what ``meta.json`` says of each kind, and of the fallback (None: too few kernels).
    Kinds with too few measurements go in ``skipped``."""
    out.mkdir(parents=True, exist_ok=True)
    reports, saved = [], {}
    for op, group in data.groupby("op"):
        if len(group) < min_samples:
            skipped[str(op)] = f"{len(group)} measurements, fewer than {min_samples}"
            continue
        X = feature_frame(str(op), [json.loads(p) for p in group["params"]])
        y = group["median_ms"].to_numpy()
        report = _cross_validate(X, y, str(op), folds, seed)
        save_estimator(KernelLatencyRegressor().fit(X, y), out / str(op))
        save_estimator(FlopsLinear().fit(X, y), out / f"{op}.flops")  # the baseline networks are compared with
        saved[str(op)] = {"n": len(group), "features": list(X.columns), "held_out": report.metrics}
        reports.append(report)
    # The fallback: every kernel of every kind this device measured, on the features all kernels have.
    simple = data[[not get_op(str(op)).composite for op in data["op"]]]
    fallback = None
    if len(simple) >= min_samples:
        X = generic_frame([(str(op), json.loads(p)) for op, p in zip(simple["op"], simple["params"], strict=True)])
        y = simple["median_ms"].to_numpy()
        report = _cross_validate(X, y, FALLBACK, folds, seed)
        save_estimator(KernelLatencyRegressor().fit(X, y), out / FALLBACK)
        save_estimator(FlopsLinear().fit(X, y), out / f"{FALLBACK}.flops")
        fallback = {"n": len(simple), "features": list(X.columns), "held_out": report.metrics}
        reports.append(report)
    for stale in [*out.glob("*.joblib"), *out.glob("*.json")]:  # pickles of older versions, kinds no longer trained
        if stale.suffix == ".joblib" or stale.name.split(".")[0] not in (*saved, FALLBACK, "meta", CONTEXT_FILE.split(".")[0]):
            stale.unlink()
    return reports, saved, fallback


def report_dict(report: TrainReport) -> dict[str, Any]:
    return asdict(report)
