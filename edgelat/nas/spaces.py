"""Search spaces: architecture strings that build networks. A new space is one registration here.

Each space turns an architecture string into a ``torch.nn.Module`` and its input shape; the
search issue adds sampling, mutation and crossover to the same entries.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from edgelat.errors import UsageError

__all__ = ["SearchSpace", "get_space", "list_spaces", "register_space"]


@dataclass(frozen=True)
class SearchSpace:
    name: str
    description: str
    # arch string -> torch module (random weights)
    build: Callable[[str], Any]
    input_shape: tuple[int, ...]


_SPACES: dict[str, SearchSpace] = {}


def register_space(space: SearchSpace) -> SearchSpace:
    if space.name in _SPACES:
        raise ValueError(f"space {space.name!r} is registered twice")
    _SPACES[space.name] = space
    return space


def get_space(name: str) -> SearchSpace:
    try:
        return _SPACES[name]
    except KeyError:
        raise UsageError(f"unknown search space {name!r}; known: {', '.join(list_spaces())}") from None


def list_spaces(pattern: str = "*") -> list[str]:
    return [n for n in _SPACES if fnmatch.fnmatch(n, pattern)]


def _nb201(arch: str) -> Any:
    from edgelat.datasets.nb201 import build_nb201

    return build_nb201(arch)


def _fbnet(arch: str) -> Any:
    from edgelat.datasets.fbnet import build_fbnet

    return build_fbnet(arch)


register_space(SearchSpace("nb201", "NAS-Bench-201 cells, CIFAR-10 macro network (3x32x32)", _nb201, (1, 3, 32, 32)))
register_space(SearchSpace("fbnet", "FBNet's 22 searchable layers, CIFAR-100 adaptation (3x32x32)", _fbnet, (1, 3, 32, 32)))
