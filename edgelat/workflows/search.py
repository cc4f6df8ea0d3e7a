"""Latency-constrained search on a device: NSGA-II with the device's predictor as the oracle, the picks
measured on the device, the predictor refitted where it was wrong (:func:`edgelat.nas.search.search_and_verify`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelat.errors import UsageError
from edgelat.nas.search import Limits, Verified, VerifiedSearch, search_and_verify
from edgelat.nas.spaces import get_space
from edgelat.predictors.predict import load_model
from edgelat.workflows.oracle import arch_lightness, device_oracle, measure_arch_lightness, refit_on_archs
from edgelat.workspace import Workspace

__all__ = ["DeviceSearch", "SearchOptions", "search_device"]

# Architectures the ensemble proxy places others among.
ENSEMBLE_REFERENCE = 32


@dataclass
class DeviceSearch:
    result: VerifiedSearch
    paths: dict[str, str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        chosen = self.result.chosen
        return {
            "arch": chosen.arch if chosen else None,
            "predicted_ms": chosen.predicted_ms if chosen else None,
            "measured_ms": chosen.measured_ms if chosen else None,
            "onnx": self.paths.get("onnx"),
            "measured_memory_mb": chosen.measured_memory_mb if chosen else None,
            "measured_size_mb": chosen.measured_size_mb if chosen else None,
            "budget_ms": self.result.budget_ms,
            "memory_limit_mb": self.result.limits.memory_mb,
            "size_limit_mb": self.result.limits.size_mb,
            "met_budget": chosen is not None,
            "rounds": self.result.rounds,
            "refits": self.result.refits,
            "oracle_scaled_by": self.result.scaled_by,
            "seconds": self.seconds,
            "out_dir": str(Path(self.paths["best_json"]).parent),
            "verified": self.result.as_dict()["verified"],
        }


@dataclass(frozen=True)
class SearchOptions:
    """How a search goes, whoever starts it (the CLI, search-then-prune, Python)."""

    # Accuracy proxy: a name of edgelat.nas.PROXIES, or "ensemble" (their mean rank).
    proxy: str = "ensemble"
    # Compile recipe whose models are the oracle and whose builds are measured (default: the device's).
    recipe: str | None = None
    # NSGA-II population and generations per round, and an optional time limit per round.
    population: int = 32
    generations: int = 20
    time_limit_s: float | None = None
    # Verify-and-refit rounds, and picks measured per round.
    rounds: int = 3
    top_k: int = 3
    seed: int = 0
    # Hard limits on peak memory and library size, next to the latency budget (predicted in the search,
    # measured on the picks).
    limits: Limits = Limits()
    # The Pareto plot's axes (x, y), names of edgelat.nas.report.PLOT_AXES.
    plot: tuple[str, str] = ("latency", "accuracy")


def search_device(
    ws: Workspace,
    device: str,
    space_name: str,
    budget_ms: float,
    options: SearchOptions = SearchOptions(),
    *,
    out_dir: str | Path | None = None,
    on_block: Callable[[int, int], None] | None = None,
    on_generation: Callable[[int, int], None] | None = None,
    on_verified: Callable[[Verified], None] | None = None,
) -> DeviceSearch:
    """The best architecture of ``space_name`` under ``budget_ms`` on ``device``, verified there.

    Searches with the device's predictor as the oracle and ``options.proxy`` as the accuracy score,
    measures the top picks, refits the predictor on picks it mispredicted, and repeats (see
    :func:`edgelat.nas.search.search_and_verify`). Writes the outputs of
    :func:`edgelat.nas.report.write_search_outputs` into ``out_dir``.
    """
    from edgelat.nas.proxies import ProxyScorer
    from edgelat.nas.report import write_search_outputs
    from edgelat.profiler.inventory import default_recipe

    o = options
    start = time.time()
    space = get_space(space_name)
    recipe = o.recipe or default_recipe(ws, device)
    load_model(ws, device, recipe)  # a clear error before anything else when there is no model
    reference_rng = np.random.default_rng([o.seed, 1])
    reference = [space.sample(reference_rng) for _ in range(ENSEMBLE_REFERENCE)] if o.proxy == "ensemble" else []
    scorer = ProxyScorer(o.proxy, space.build, space.proxy_input_shape, reference=reference)
    if o.rounds < 1 or o.top_k < 1:
        raise UsageError("--rounds and --top-k must be at least 1")
    if o.limits.any:
        from edgelat.predictors.memory import measured_memory

        if not measured_memory(ws, device):  # the runtime's own memory on this device is learnt from one network
            measure_arch_lightness(ws, device, space, space.sample(np.random.default_rng([o.seed, 2])), recipe)
    result = search_and_verify(
        space,
        lambda: device_oracle(ws, device, space, recipe, on_block),
        scorer.score,
        budget_ms,
        lambda arch: measure_arch_lightness(ws, device, space, arch, recipe),
        lambda archs: refit_on_archs(ws, device, space, archs, recipe),
        rounds=o.rounds,
        top_k=o.top_k,
        on_verified=on_verified,
        limits=o.limits,
        make_lightness=lambda: arch_lightness(ws, device, space),
        population=o.population,
        generations=o.generations,
        time_limit_s=o.time_limit_s,
        seed=o.seed,
        on_generation=on_generation,
    )
    out = Path(out_dir) if out_dir else ws.run_dir("searches", device, f"{space.name}-{budget_ms:g}ms")
    info = {"device": device, "recipe": recipe, "proxy": o.proxy, "population": o.population, "generations": o.generations, "seed": o.seed}
    paths = write_search_outputs(space, result, out, info, o.plot, lambda archs: arch_lightness(ws, device, space)(archs))
    return DeviceSearch(result, paths, time.time() - start)
