"""Kernel latency estimators, following scikit-learn's estimator contract.

:class:`KernelLatencyRegressor` is the product's model (XGBoost on log latency, monotone in
work and traffic). The baselines are fitted on the same features and split for comparison:
:class:`FlopsLinear` (latency proportional to FLOPs and bytes), a random forest (nn-Meter's
choice) and :class:`NearestNeighbour` (a lookup table of measured configs).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.ensemble import RandomForestRegressor
from sklearn.linear_model import LinearRegression
from sklearn.neighbors import KNeighborsRegressor
from sklearn.utils.validation import check_is_fitted

__all__ = ["FlopsLinear", "KernelLatencyRegressor", "NearestNeighbour", "RandomForestLatency", "make_baselines"]

# Latency cannot fall when a kernel does more work or moves more bytes.
MONOTONE_INCREASING = ("log_flops", "log_bytes", "log_out_elems", "flops", "bytes", "out_elems", "ep_work")


class KernelLatencyRegressor(RegressorMixin, BaseEstimator):
    """XGBoost on log(latency), monotone increasing in work and traffic features.

    Example:
        >>> model = KernelLatencyRegressor().fit(X, y_ms)  # doctest: +SKIP
        >>> model.predict(X[:3])  # milliseconds  # doctest: +SKIP
    """

    def __init__(self, n_estimators: int = 600, max_depth: int = 6, learning_rate: float = 0.05, subsample: float = 0.9, colsample_bytree: float = 0.9,
                 min_child_weight: float = 1.0, monotone: bool = True, random_state: int = 0) -> None:  # fmt: skip
        self.n_estimators = n_estimators
        self.max_depth = max_depth
        self.learning_rate = learning_rate
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.min_child_weight = min_child_weight
        self.monotone = monotone
        self.random_state = random_state

    def fit(self, X: pd.DataFrame, y: Any) -> KernelLatencyRegressor:
        import xgboost as xgb

        self.feature_names_in_ = np.asarray(list(X.columns), dtype=object)
        constraints = tuple(int(self.monotone and c in MONOTONE_INCREASING) for c in X.columns)
        self.booster_ = xgb.XGBRegressor(
            n_estimators=self.n_estimators, max_depth=self.max_depth, learning_rate=self.learning_rate, subsample=self.subsample,
            colsample_bytree=self.colsample_bytree, min_child_weight=self.min_child_weight, monotone_constraints=constraints,
            random_state=self.random_state, n_jobs=1, tree_method="hist",
        )  # fmt: skip
        self.booster_.fit(X.to_numpy(dtype=float), np.log(np.asarray(y, dtype=float)))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "booster_")
        return self.predict_array(X[list(self.feature_names_in_)].to_numpy(dtype=float))

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        """Predict from a float array whose columns are ``feature_names_in_``: the fast path."""
        check_is_fitted(self, "booster_")
        return np.exp(self.booster_.get_booster().inplace_predict(X))


class FlopsLinear(RegressorMixin, BaseEstimator):
    """The FLOPs baseline: latency = a * FLOPs + b * bytes + c, least squares."""

    COLUMNS = ("flops", "bytes")

    def fit(self, X: pd.DataFrame, y: Any) -> FlopsLinear:
        self.feature_names_in_ = np.asarray(self.COLUMNS, dtype=object)
        self.model_ = LinearRegression(positive=True).fit(X[list(self.COLUMNS)].to_numpy(dtype=float), np.asarray(y, dtype=float))
        return self

    def predict(self, X: pd.DataFrame) -> np.ndarray:
        check_is_fitted(self, "model_")
        return self.predict_array(X[list(self.COLUMNS)].to_numpy(dtype=float))

    def predict_array(self, X: np.ndarray) -> np.ndarray:
        """Predict from a float array whose columns are ``feature_names_in_``."""
        check_is_fitted(self, "model_")
        return np.maximum(self.model_.predict(X), 1e-6)


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
