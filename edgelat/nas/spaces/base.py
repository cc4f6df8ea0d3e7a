"""The base class of search spaces and their registry (see the package for what a space is)."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from edgelat.registry import Registry

__all__ = ["SPACES", "SearchSpace", "get_space", "list_spaces", "register_space"]


class SearchSpace(ABC):
    """An architecture space: integer genes <-> architecture strings -> torch networks."""

    name: ClassVar[str]
    description: ClassVar[str]
    # Number of choices of each gene.
    choices: tuple[int, ...]

    @abstractmethod
    def decode(self, genes: Sequence[int] | np.ndarray) -> str:
        """The architecture string of a gene vector (genes a string does not use are ignored)."""

    @abstractmethod
    def encode(self, arch: str) -> np.ndarray:
        """The gene vector of an architecture string; unused genes are 0.

        Raises:
            UsageError: ``arch`` is not an architecture of this space (the message says why).
        """

    @abstractmethod
    def build(self, arch: str) -> Any:
        """A freshly initialised ``torch.nn.Module`` of ``arch``."""

    @abstractmethod
    def input_shape(self, arch: str) -> tuple[int, ...]:
        """The input shape (batch 1) ``arch`` runs at."""

    @abstractmethod
    def blocks(self, arch: str) -> list[str]:
        """Keys of the blocks ``arch`` is made of, repeated as often as they run.

        The network's latency is the sum of its blocks' latencies: a block holds whole fused
        kernels (a residual add goes with the conv it follows), so nothing is lost at the seams.
        """

    @abstractmethod
    def build_block(self, key: str) -> tuple[Any, tuple[int, ...] | list[tuple[int, ...]]]:
        """The module of one block key and its input shape (a list of shapes for a block with several inputs)."""

    def proxy_input_shape(self, arch: str) -> tuple[int, ...]:
        """The input shape training-free accuracy proxies score ``arch`` at (default: its own)."""
        return self.input_shape(arch)

    def canonical(self, arch: str) -> str:
        return self.decode(self.encode(arch))

    def sample(self, rng: np.random.Generator) -> str:
        return self.decode(rng.integers(0, self.choices))

    def mutate(self, arch: str, rng: np.random.Generator, rate: float | None = None) -> str:
        """Resample each gene with probability ``rate`` (default one gene in ``len(choices)``); at least one changes."""
        genes = self.encode(arch)
        rate = 1.0 / len(self.choices) if rate is None else rate
        for _ in range(100):
            flip = rng.random(len(genes)) < rate
            if not flip.any():
                flip[rng.integers(len(genes))] = True
            new = np.where(flip, rng.integers(0, self.choices), genes)
            child = self.decode(new)
            if child != arch:
                return child
        return arch  # only when a space has a single architecture

    def crossover(self, a: str, b: str, rng: np.random.Generator) -> str:
        """Uniform crossover: each gene from either parent."""
        ga, gb = self.encode(a), self.encode(b)
        return self.decode(np.where(rng.random(len(ga)) < 0.5, ga, gb))

    def export_onnx(self, arch: str, path: str | Path) -> Path:
        """Write ``arch`` as an ONNX file (the zoo's exporter, so it imports like any zoo model)."""
        from edgelat.datasets.zoo import export_module_onnx

        return export_module_onnx(self.build(arch), self.input_shape(arch), path)

    @property
    def size(self) -> float:
        """Number of gene vectors (distinct architectures may be fewer where genes go unused)."""
        return float(np.prod(np.asarray(self.choices, dtype=float)))


SPACES: Registry[SearchSpace] = Registry("search space", sort=True)


def register_space(cls: type[SearchSpace]) -> type[SearchSpace]:
    """Class decorator: register a space (instantiated with no arguments) under its ``name``."""
    SPACES.register(cls.name, cls())
    return cls


def get_space(name: str) -> SearchSpace:
    return SPACES.get(name)


def list_spaces(pattern: str = "*") -> list[str]:
    return SPACES.names(pattern)
