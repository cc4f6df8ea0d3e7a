"""Device-side wiring of the search and pruning loops: the one place where nas meets predictors and profiler.

``edgelat.nas`` takes a latency oracle, a measure function and a refit function as arguments;
this package builds them for a device of the inventory (one module per workflow):

- the oracle prices a space's blocks with the device's kernel predictor and caches them per
  trained model (``<workspace>/oracle/<device>/<recipe>/``), from each block's kernels, kept once per
  workspace for any model (``<workspace>/blocks/``);
- measure builds an architecture with TVM and times it on the device through the agent;
- refit profiles the kernels of the architectures whose prediction was off, exactly as the
  network runs them, adds them to the device's data and retrains its predictors.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgelat.workflows.adapt import AdaptReport, adapt_device, source_features
    from edgelat.workflows.oracle import ArchPrediction, arch_kernels, device_oracle, measure_arch, predict_archs, refit_on_archs
    from edgelat.workflows.prune import DevicePrune, PruneOptions, load_factory, load_pruned, prune_device
    from edgelat.workflows.routes import search_then_prune
    from edgelat.workflows.search import DeviceSearch, SearchOptions, search_device

# Each name is imported from its module on first use: pricing cached architectures needs none of TVM,
# torch or the predictors' libraries, and a command should not wait seconds for them.
_MODULES = {
    "adapt": ("AdaptReport", "adapt_device", "source_features"),
    "oracle": ("ArchPrediction", "arch_kernels", "device_oracle", "measure_arch", "predict_archs", "refit_on_archs"),
    "prune": ("DevicePrune", "PruneOptions", "load_factory", "load_pruned", "prune_device"),
    "search": ("DeviceSearch", "SearchOptions", "search_device"),
    "routes": ("search_then_prune",),
}
_WHERE = {name: module for module, names in _MODULES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)


__all__ = [
    "AdaptReport",
    "ArchPrediction",
    "DevicePrune",
    "DeviceSearch",
    "PruneOptions",
    "SearchOptions",
    "adapt_device",
    "arch_kernels",
    "device_oracle",
    "load_factory",
    "load_pruned",
    "measure_arch",
    "predict_archs",
    "prune_device",
    "refit_on_archs",
    "search_device",
    "search_then_prune",
    "source_features",
]
