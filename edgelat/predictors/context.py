"""Where a device's networks run between their kernels timed two ways, by how much memory they touch.

A kernel timed alone meets its weights where the timing left them: in the last-level cache (the tuned recipe's
``llc`` way) or in memory (its far way, ``flushed``: :attr:`edgelat.profiler.recipes.Recipe.far_caches`). In a
network, a kernel last read its weights one inference ago, and everything the network touched since went through
the caches: a network whose weights and activations fit the last level finds most of them there, a larger one
finds more of them in memory. So a network is priced, kernel by kernel,

    near + share(footprint) * (far - near)

where ``footprint`` is the megabytes a run touches (weights and planned activations,
:func:`edgelat.ops.footprint.network_footprint`) and ``share`` a logistic in its logarithm: about 0 well below the
last level's effective size, rising around it to ``height``. Its three numbers are fitted to networks the device
ran (``edgelat validate`` fits them, each network's error there from a fit on the others) and saved beside the
models, with a tag of the models they were fitted to (:func:`models_tag`): models trained again do not take a curve
fitted to their predecessors' sums. A device without a curve for its models is priced the recipe's way alone
(share 0).
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

__all__ = ["MIN_NETWORKS", "CacheContext", "ContextRow", "cross_fitted", "models_tag"]

log = logging.getLogger(__name__)

# Networks a fit needs (three numbers).
MIN_NETWORKS = 4


@dataclass(frozen=True)
class ContextRow:
    """One network the device ran: its footprint, its kernels' predicted sums both ways, its measured time."""

    name: str
    footprint_mb: float
    near_ms: float
    far_ms: float
    measured_ms: float


@dataclass(frozen=True)
class CacheContext:
    # The footprint where the share is half its height, in MB.
    center_mb: float
    # How sharply it rises: the logistic's scale in natural-log units of footprint.
    width: float
    # The share a network far larger than the last level reaches (1: its kernels as timed the far way).
    height: float
    # The networks it was fitted to.
    networks: tuple[str, ...] = ()
    # The models whose kernel sums it was fitted to (:func:`models_tag`; "": not said).
    models: str = ""

    def share(self, footprint_mb: float) -> float:
        """Of the way from the near sum to the far sum, where a network touching ``footprint_mb`` runs."""
        z = (math.log(max(footprint_mb, 1e-6)) - math.log(self.center_mb)) / self.width
        return self.height / (1.0 + math.exp(-max(min(z, 60.0), -60.0)))

    def price(self, row: ContextRow) -> float:
        return row.near_ms + self.share(row.footprint_mb) * (row.far_ms - row.near_ms)

    @classmethod
    def fit(cls, rows: Sequence[ContextRow]) -> CacheContext:
        """The curve that best prices ``rows`` (robust least squares on relative errors); at least MIN_NETWORKS of them."""
        from scipy.optimize import least_squares

        if len(rows) < MIN_NETWORKS:
            raise ValueError(f"a context fit needs at least {MIN_NETWORKS} networks, not {len(rows)}")
        f = np.log([max(r.footprint_mb, 1e-6) for r in rows])
        near, far, measured = (np.array([getattr(r, k) for r in rows]) for k in ("near_ms", "far_ms", "measured_ms"))

        def residuals(p: np.ndarray) -> np.ndarray:
            share = p[2] / (1.0 + np.exp(-np.clip((f - p[0]) / p[1], -60, 60)))
            return (near + share * (far - near)) / measured - 1.0

        # Bounds keep the curve a rise within the footprints seen, and its height within three times the far way.
        low, high = [f.min() - 1.0, 0.05, 0.0], [f.max() + 1.0, 2.0, 3.0]
        start = [float(np.median(f)), 0.3, 1.0]
        # A robust loss (squares up to about 5%, then linear): a network whose kernels the model misses whatever its
        # share (README: efficientnet_b0) must not bend a curve that describes the caches.
        p = least_squares(residuals, start, bounds=(low, high), loss="soft_l1", f_scale=0.05).x
        return cls(float(math.exp(p[0])), float(p[1]), float(p[2]), tuple(r.name for r in rows))

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2))

    @classmethod
    def load(cls, path: Path, models: str | None = None) -> CacheContext | None:
        """The curve saved at ``path``; None if there is none, it cannot be read, or (given ``models``, the tag of the
        models it would place) it was fitted to other models, with a warning: the network is then priced the recipe's
        way alone."""
        try:
            data = json.loads(path.read_text())
            curve = cls(
                float(data["center_mb"]), float(data["width"]), float(data["height"]), tuple(data.get("networks", ())), str(data.get("models", ""))
            )
        except (OSError, ValueError, KeyError, TypeError):
            return None
        if models is not None and curve.models != models:
            log.warning(
                "the cache-context curve %s was fitted to models since trained again: networks are priced the recipe's way "
                "alone until `edgelat validate` fits it to these",
                path,
            )
            return None
        return curve


def models_tag(folder: Path) -> str:
    """What tells a device's trained models apart: a hash of the ``meta.json`` that ``train`` writes in ``folder``
    ("" where there is none)."""
    try:
        return hashlib.sha256((folder / "meta.json").read_bytes()).hexdigest()[:12]
    except OSError:
        return ""


def cross_fitted(rows: Sequence[ContextRow]) -> list[float | None]:
    """Each row priced by a curve fitted to the others (None where the others are too few): what a network the
    fit has not seen would be told."""
    out: list[float | None] = []
    for i, row in enumerate(rows):
        others = [r for j, r in enumerate(rows) if j != i]
        out.append(CacheContext.fit(others).price(row) if len(others) >= MIN_NETWORKS else None)
    return out
