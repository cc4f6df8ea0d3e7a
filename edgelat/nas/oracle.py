"""Latency oracles: anything with a batched ``predict(archs) -> ms`` the search can ask.

Two kinds live here. :class:`TableOracle` looks latencies up (a benchmark's table, to study
the search itself). :class:`BlockOracle` sums per-block latencies from any ``block_ms(module,
input_shape)`` function (in edgelat, a device's kernel predictor): each block of a space is
priced once, kept in a JSON cache, and every architecture after that is a few dictionary
lookups, which is what lets a search score tens of thousands of architectures per second.
Where a device's networks run between their kernels' two timing ways by their footprint
(:mod:`edgelat.predictors.context`), blocks carry their far price and footprint too, and an
architecture is placed between its two sums as ``predict`` places a network.

Example:
    >>> oracle = BlockOracle(get_space("nb201"), block_ms=my_predictor)  # doctest: +SKIP
    >>> oracle.predict(["|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|"])
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edgelat.errors import UsageError
from edgelat.files import write_text_atomic
from edgelat.nas.spaces import SearchSpace

__all__ = ["ACTIVATION_MB", "FAR_MS", "PARAMS_MB", "BlockOracle", "LatencyOracle", "TableOracle"]

# (module, input shape) -> predicted milliseconds, or a breakdown of them by named group
# (keys starting with "n_" are not part of the latency: counts, and what placing a network needs, below)
BlockMs = Callable[[Any, Any], "float | Mapping[str, float]"]
# Many block keys at once -> the price of each (for a pricer with caches of its own, or that batches)
BlocksMs = Callable[[Sequence[str]], Mapping[str, "float | Mapping[str, float]"]]

# A block's price the far way, and its footprint: its weights (they add up over a network's blocks) and its planned
# activations (the planner reuses storage, so a network's are taken as its largest block's).
FAR_MS, PARAMS_MB, ACTIVATION_MB = "n_far_ms", "n_params_mb", "n_activation_mb"


class LatencyOracle(Protocol):
    def predict(self, archs: Sequence[str]) -> np.ndarray:
        """Milliseconds of each architecture."""
        ...


class TableOracle:
    """Latencies looked up in a table keyed by (canonical) architecture string."""

    def __init__(self, table: Mapping[str, float], space: SearchSpace | None = None) -> None:
        self.space = space
        self.table = {self._key(a): float(ms) for a, ms in table.items()}

    def _key(self, arch: str) -> str:
        return self.space.canonical(arch) if self.space is not None else arch

    def predict(self, archs: Sequence[str]) -> np.ndarray:
        out = np.empty(len(archs))
        for i, arch in enumerate(archs):
            try:
                out[i] = self.table[arch] if arch in self.table else self.table[self._key(arch)]
            except KeyError:
                raise UsageError(f"architecture {arch!r} is not in the latency table ({len(self.table)} rows)") from None
        return out


class BlockOracle:
    """The sum of per-block latencies, each block priced once by ``block_ms`` and cached.

    Args:
        space: the search space whose ``blocks`` and ``build_block`` split architectures.
        block_ms: prices one block (its module and input shape) in milliseconds, or as a
            breakdown ``{group: ms}`` whose groups :meth:`features` sums separately (keys
            starting with ``n_`` are counts and not part of the latency).
        blocks_ms: instead of ``block_ms``, prices many block keys at once (it builds the
            blocks itself, or finds them in caches of its own).
        cache_file: JSON file the block prices are kept in across runs (written atomically);
            it must be specific to whatever ``block_ms`` predicts with.
        on_block: called with (blocks priced, blocks to price) while pricing new blocks.
        share: where an architecture touching so many MB runs between its blocks' near and far sums
            (:meth:`edgelat.predictors.context.CacheContext.share`); the blocks' prices then carry ``FAR_MS``,
            ``PARAMS_MB`` and ``ACTIVATION_MB``. None: the blocks' sum.
    """

    def __init__(
        self,
        space: SearchSpace,
        block_ms: BlockMs | None = None,
        cache_file: str | Path | None = None,
        on_block: Callable[[int, int], None] | None = None,
        *,
        blocks_ms: BlocksMs | None = None,
        share: Callable[[float], float] | None = None,
    ) -> None:
        if (block_ms is None) == (blocks_ms is None):
            raise ValueError("give one of block_ms and blocks_ms")
        self.space = space
        self.block_ms = block_ms
        self.blocks_ms = blocks_ms
        self.cache_file = Path(cache_file) if cache_file is not None else None
        self.on_block = on_block
        self.share = share
        self.blocks: dict[str, dict[str, float]] = {}
        if self.cache_file is not None and self.cache_file.exists():
            self.blocks = json.loads(self.cache_file.read_text())
        self._archs: dict[str, float] = {}

    def price_blocks(self, keys: Sequence[str]) -> None:
        """Price every key not yet cached (sorted, so runs are reproducible), then save the cache."""
        todo = sorted(set(keys) - self.blocks.keys())
        if self.blocks_ms is not None:
            if todo:
                self.blocks.update((key, _price(price)) for key, price in self.blocks_ms(todo).items())
                if self.cache_file is not None:
                    self._save()
            return
        assert self.block_ms is not None
        for i, key in enumerate(todo):
            module, shape = self.space.build_block(key)
            self.blocks[key] = _price(self.block_ms(module, shape))
            if self.on_block is not None:
                self.on_block(i + 1, len(todo))
            if self.cache_file is not None and (i + 1) % 50 == 0:
                self._save()
        if todo and self.cache_file is not None:
            self._save()

    def _save(self) -> None:
        assert self.cache_file is not None
        write_text_atomic(self.cache_file, json.dumps(self.blocks, indent=0, sort_keys=True))

    def predict(self, archs: Sequence[str]) -> np.ndarray:
        new = [a for a in dict.fromkeys(archs) if a not in self._archs]
        if new:
            keys = {a: self.space.blocks(a) for a in new}
            self.price_blocks([k for ks in keys.values() for k in ks])
            block_ms = {k: _total(self.blocks[k]) for ks in keys.values() for k in ks}
            for arch, ks in keys.items():
                near = sum(block_ms[k] for k in ks)
                self._archs[arch] = near if self.share is None else near + self._share(ks) * (self._far(ks) - near)
        return np.fromiter((self._archs[a] for a in archs), dtype=float, count=len(archs))

    def breakdown(self, arch: str) -> list[tuple[str, float]]:
        """(block key, ms) of each block of ``arch``, in network order (placed as the architecture is)."""
        keys = self.space.blocks(arch)
        self.price_blocks(keys)
        share = self._share(keys) if self.share is not None else 0.0
        return [(k, _total(self.blocks[k]) + share * (self._far([k]) - _total(self.blocks[k]))) for k in keys]

    def footprint_mb(self, keys: Sequence[str]) -> float:
        """What a network of these blocks touches in a run: all their weights and the largest one's activations."""
        return math.fsum(self.blocks[k].get(PARAMS_MB, 0.0) for k in keys) + max((self.blocks[k].get(ACTIVATION_MB, 0.0) for k in keys), default=0.0)

    def _share(self, keys: Sequence[str]) -> float:
        assert self.share is not None
        return self.share(self.footprint_mb(keys))

    def _far(self, keys: Sequence[str]) -> float:
        """The blocks' far sum (a block without a far price at its near one)."""
        return math.fsum(self.blocks[k].get(FAR_MS, _total(self.blocks[k])) for k in keys)

    def features(self, archs: Sequence[str], groups: Sequence[str]) -> np.ndarray:
        """``len(archs) x len(groups)``: each group's sum over the blocks of each architecture."""
        keys = {a: self.space.blocks(a) for a in dict.fromkeys(archs)}
        self.price_blocks([k for ks in keys.values() for k in ks])
        index = {g: i for i, g in enumerate(groups)}
        vectors: dict[str, np.ndarray] = {}
        for block in {k for ks in keys.values() for k in ks}:
            v = np.zeros(len(groups))
            for g, value in self.blocks[block].items():
                if g in index:
                    v[index[g]] = value
            vectors[block] = v
        per_arch = {a: np.sum([vectors[k] for k in ks], axis=0) for a, ks in keys.items()}
        return np.array([per_arch[a] for a in archs]).reshape(len(archs), len(groups))


def _price(price: float | Mapping[str, float]) -> dict[str, float]:
    return {"ms": float(price)} if isinstance(price, (int, float)) else {g: float(v) for g, v in price.items()}


def _total(price: Mapping[str, float]) -> float:
    # fsum: the same total whatever the groups' order (a price read back from the cache has its groups sorted,
    # a fresh one in kernel order; a plain sum of the two differed in the last place).
    return math.fsum(v for g, v in price.items() if not g.startswith("n_"))
