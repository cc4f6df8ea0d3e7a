"""Kernel latency estimators, following scikit-learn's estimator contract.

:class:`KernelLatencyRegressor` is the product's model: a non-negative linear prior in work and
traffic (latency = a*FLOPs + b*bytes + c*elements + d*epilogue work, fitted for relative error),
and XGBoost learning log(latency / prior) on top of it. Trees are piecewise constant, so on log
latency alone a leaf cannot follow latency as work grows inside it; on the ratio to a prior that
already scales with work, they only learn how efficiency varies (5-fold CV on 855 local conv2d
kernels: 59% -> 79% within 10%; 628 depthwise: 43% -> 71%).

The baselines are fitted on the same features and folds for comparison: :class:`FlopsLinear`
(latency proportional to FLOPs and bytes), a random forest (nn-Meter's choice) and
:class:`NearestNeighbour` (a lookup table of measured configs).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.validation import check_is_fitted

__all__ = [
    "MODEL_FORMAT",
    "FlopsLinear",
    "KernelLatencyRegressor",
    "NearestNeighbour",
    "RandomForestLatency",
    "load_estimator",
    "make_baselines",
    "save_estimator",
]

# Bump when a saved model's layout changes (2: the linear prior under XGBoost; 3: XGBoost's own JSON and a
# JSON file for the rest, no pickles).
MODEL_FORMAT = 3
# Latency cannot fall when a kernel does more work or moves more bytes.
MONOTONE_INCREASING = ("log_flops", "log_bytes", "log_out_elems", "flops", "bytes", "out_elems", "ep_work")
# The prior's terms: work and traffic, each with a non-negative cost per unit.
PRIOR_TERMS = ("flops", "bytes", "out_elems", "ep_work")
# Milliseconds added to the prior so that it is never zero (a kernel costs at least a call).
PRIOR_FLOOR_MS = 1e-6


def fit_prior(A: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Non-negative weights ``w`` minimising the relative error of ``A @ w`` against ``y`` (NNLS)."""
    from scipy.optimize import nnls

    weights, _ = nnls(A / y[:, None], np.ones(len(y)))
    return weights


class KernelLatencyRegressor(RegressorMixin, BaseEstimator):
    """XGBoost on log(latency / prior), the prior linear and non-negative in work and traffic.

    ``prior=False`` gives plain XGBoost on log latency, monotone increasing in work and traffic
    (``monotone``). With the prior, the physics is in the prior (non-negative costs per FLOP, byte
    and element) and the trees learn efficiency without constraints.

    Example:
        >>> model = KernelLatencyRegressor().fit(X, y_ms)  # doctest: +SKIP
        >>> model.predict(X[:3])  # milliseconds  # doctest: +SKIP
    """

    def __init__(self, n_estimators: int = 600, max_depth: int = 6, learning_rate: float = 0.05, subsample: float = 0.9, colsample_bytree: float = 0.9,
                 min_child_weight: float = 1.0, monotone: bool = True, prior: bool = True, random_state: int = 0) -> None:  # fmt: skip
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.monotone = monotone
        self.prior = prior
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any) -> KernelLatencyRegressor:
        import xgboost as xgb

        columns = list(X.columns)
        self.feature_names_in_ = np.asarray(columns, dtype=object)
        Xa, ya = X.to_numpy(dtype=float), np.asarray(y, dtype=float)
        self.prior_index_ = np.array([columns.index(c) for c in PRIOR_TERMS if self.prior and c in columns], dtype=int)
        self.prior_weights_ = fit_prior(Xa[:, self.prior_index_], ya) if len(self.prior_index_) else np.zeros(0)
        constraints = tuple(int(self.monotone and not self.prior and c in MONOTONE_INCREASING) for c in columns)
        self.booster_ = xgb.XGBRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate, subsample=self.subsample,
            colsample_bytree=self.colsample_bytree, min_child_weight=self.min_child_weight, monotone_constraints=constraints,
            random_state=self.random_state, n_jobs=1, tree_method="hist", base_score=0.0,
        )  # fmt: skip
        self.booster_.fit(Xa, np.log(ya), base_margin=self._margin(Xa))
        return self

    def _margin(self, X: np.ndarray) -> np.ndarray:
        """log of the prior's milliseconds for each row of ``X``."""
        return np.log(X[:, self.prior_index_] @ self.prior_weights_ + PRIOR_FLOOR_MS)

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "booster_")
        return self.predict_array(X[list(self.feature_names_in_)].to_numpy(dtype=float))

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        """Predict from a float array whose columns are ``feature_names_in_``: the fast path."""
        check_is_fitted(self, "booster_")
        # The trees' sum plus the prior's margin (base_score is 0; passing base_margin to inplace_predict costs ~7 ms a call).
        return np.exp(self.booster_.get_booster().inplace_predict(X) + self._margin(X))

    def to_json(self, stem: Path) -> dict[str, Any]:
        """The trees go to ``stem.xgb.json`` in XGBoost's own format; the rest is returned."""
        check_is_fitted(self, "booster_")
        self.booster_.get_booster().save_model(str(stem.with_name(stem.name + ".xgb.json")))
        return {
            "params": self.get_params(),
            "features": list(self.feature_names_in_),
            "prior_index": self.prior_index_.tolist(),
            "prior_weights": self.prior_weights_.tolist(),
            "trees": stem.name + ".xgb.json",
        }

    @classmethod
    def from_json(cls, data: dict[str, Any], stem: Path) -> KernelLatencyRegressor:
        import xgboost as xgb

        model = cls(**data["params"])
        model.feature_names_in_ = np.asarray(data["features"], dtype=object)
        model.prior_index_ = np.asarray(data["prior_index"], dtype=int)
        model.prior_weights_ = np.asarray(data["prior_weights"], dtype=float)
        booster = xgb.XGBRegressor()
        booster.load_model(str(stem.with_name(data["trees"])))
        model.booster_ = booster
        return model


class FlopsLinear(RegressorMixin, BaseEstimator):
    """The FLOPs baseline: latency = a * FLOPs + b * bytes + c, least squares."""

    COLUMNS = ("flops", "bytes")

    def fit(self, X: pd.DataFrame, y: Any) -> FlopsLinear:
        self.feature_names_in_ = np.asarray(self.COLUMNS, dtype=object)
        fitted = LinearRegression(positive=True).fit(X[list(self.COLUMNS)].to_numpy(dtype=float), np.asarray(y, dtype=float))
        self.coef_, self.intercept_ = np.asarray(fitted.coef_, dtype=float), float(fitted.intercept_)
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "coef_")
        return self.predict_array(X[list(self.COLUMNS)].to_numpy(dtype=float))

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        """Predict from a float array whose columns are ``feature_names_in_``."""
        check_is_fitted(self, "coef_")
        return np.maximum(X @ self.coef_ + self.intercept_, 1e-6)

    def to_json(self, stem: Path) -> dict[str, Any]:
        check_is_fitted(self, "coef_")
        return {"features": list(self.feature_names_in_), "coef": self.coef_.tolist(), "intercept": self.intercept_}

    @classmethod
    def from_json(cls, data: dict[str, Any], stem: Path) -> FlopsLinear:
        model = cls()
        model.feature_names_in_ = np.asarray(data["features"], dtype=object)
        model.coef_, model.intercept_ = np.asarray(data["coef"], dtype=float), float(data["intercept"])
        return model


class RandomForestLatency(RegressorMixin, BaseEstimator):
    """nn-Meter's choice: a random forest on the same features (on log latency here too)."""

    def __init__(self, n_estimators: int = 300, random_state: int = 0) -> None:
        self.n_estimators = n_estimators
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any) -> RandomForestLatency:
        self.model_ = RandomForestRegressor(n_estimators=self.n_estimators, random_state=self.random_state, n_jobs=1)
        self.model_.fit(X.to_numpy(dtype=float), np.log(np.asarray(y, dtype=float)))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "model_")
        return np.exp(self.model_.predict(X.to_numpy(dtype=float)))


class NearestNeighbour(RegressorMixin, BaseEstimator):
    """A lookup table: the latency of the nearest measured config (log-scaled features)."""

    def fit(self, X: pd.DataFrame, y: Any) -> NearestNeighbour:
        Z = np.log1p(np.abs(X.to_numpy(dtype=float)))
        self.scale_ = Z.std(axis=0) + 1e-9
        self.model_ = KNeighborsRegressor(n_neighbors=1).fit(Z / self.scale_, np.asarray(y, dtype=float))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.model_.predict(np.log1p(np.abs(X.to_numpy(dtype=float))) / self.scale_)


def make_baselines() -> dict[str, BaseEstimator]:
    return {"flops_linear": FlopsLinear(), "random_forest": RandomForestLatency(), "lookup_1nn": NearestNeighbour()}


# The estimators a workspace saves, by the name written into their files.
_SAVED: dict[str, Any] = {"KernelLatencyRegressor": KernelLatencyRegressor, "FlopsLinear": FlopsLinear}


def save_estimator(model: KernelLatencyRegressor | FlopsLinear, stem: Path) -> Path:
    """Save a fitted model as ``stem.json`` (plus files it names); no pickles, so any later version can read it."""
    data = {"estimator": type(model).__name__, "model_format": MODEL_FORMAT, **model.to_json(stem)}
    path = stem.with_name(stem.name + ".json")
    path.write_text(json.dumps(data, indent=1))
    return path


def load_estimator(stem: Path) -> KernelLatencyRegressor | FlopsLinear:
    """The model saved at ``stem`` by :func:`save_estimator`.

    Raises:
        ModelFileError: the file is missing, unreadable or of another format; the message says which.
    """
    from edgelat.errors import ModelFileError

    path = stem.with_name(stem.name + ".json")
    try:
        data = json.loads(path.read_text())
        kind = _SAVED.get(data.get("estimator"))
        if data.get("model_format") != MODEL_FORMAT or kind is None:
            raise ModelFileError(
                f"{path} holds model format {data.get('model_format')} ({data.get('estimator')}), this edgelat reads {MODEL_FORMAT}"
            )
        return kind.from_json(data, stem)
    except ModelFileError:
        raise
    except FileNotFoundError as exc:
        raise ModelFileError(f"{exc.filename} is missing") from None
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes json or XGBoost raise, it is one reason
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelFileError(f"{path} cannot be read ({reason[:200]})") from None
