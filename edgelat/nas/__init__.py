"""Latency-constrained search and pruning: search spaces, proxies, latency oracles, search loops.

The registries of this package are declared here by name, so that listing them (``--help``, error
messages) imports neither torch nor the modules that define the entries:

- search spaces: :data:`edgelat.nas.spaces.SPACES` (a new space: a module in ``spaces/`` and its line there);
- accuracy proxies: :data:`PROXIES`, functions ``(module, input_shape) -> float`` registered in
  :mod:`edgelat.nas.proxies` (a new proxy: a function there with ``@PROXIES.register(name)``, and its line below);
- pruning importances: :data:`IMPORTANCES`, factories of Torch-Pruning importance criteria registered in
  :mod:`edgelat.nas.prune` (same pattern).
"""

from collections.abc import Callable
from typing import Any

from edgelat.nas.spaces import SPACES, SearchSpace, get_space, list_spaces, register_space
from edgelat.registry import Registry

__all__ = ["IMPORTANCES", "PROXIES", "SPACES", "SearchSpace", "get_space", "list_spaces", "register_space"]

PROXIES: Registry[Callable[[Any, tuple[int, ...]], float]] = Registry("proxy", sort=True)
for _name in ("flops", "params", "synflow", "zico"):
    PROXIES.declare(_name, "edgelat.nas.proxies")

IMPORTANCES: Registry[Callable[[], Any]] = Registry("importance")
for _name in ("magnitude", "taylor"):
    IMPORTANCES.declare(_name, "edgelat.nas.prune")
