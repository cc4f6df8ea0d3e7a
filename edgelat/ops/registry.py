"""The operator registry: one :class:`OpSpec` per kernel kind, registered with :func:`register_op`.

An op kind holds everything edgelat knows about it, in one place:

- ``params``: the names of its configuration fields (a config is a flat dict);
- ``sample(rng, seeds)``: a configuration drawn around shapes of real networks;
- ``emit(cfg)``: the Relax function that computes it, anchor op plus fused epilogue;
- ``features(cfg)``: the feature vector training and prediction both use (of one config, or
  of a batch of configs as columns);
- ``match(group)``: how it is recognised among the fused kernels of a network.

Epilogues are tuples of tokens naming the elementwise ops TVM fused after the anchor, in
order, exactly as a network's fused kernel has them (see :mod:`edgelat.ops.epilogue`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any, ClassVar, TypeVar

import numpy as np
import pandas as pd
import tvm

from edgelat.errors import UnknownOpError, UsageError
from edgelat.ops.lowering import FusedGroup
from edgelat.registry import Registry

__all__ = ["OPS", "Config", "OpSpec", "config_id", "get_op", "list_ops", "register_op", "unregister_op"]

Config = dict[str, Any]
# Feature schema version: bump whenever any op's feature function changes meaning.
FEATURE_SCHEMA_VERSION = 6
# Bump when any op's adapt_group changes: cached block prices are broken down by group.
ADAPT_GROUPS_VERSION = 2


class OpSpec:
    """Base class of an op kind. Subclass, set ``params``, implement the methods, register."""

    name: ClassVar[str] = ""
    params: ClassVar[tuple[str, ...]] = ()
    description: ClassVar[str] = ""
    # A composite kind lowers to several kernels and is profiled as their sum; networks'
    # kernels never match it (they match the kinds it is made of).
    composite: ClassVar[bool] = False
    # How many configs a weighted campaign draws of this kind, per ``samples``: the kinds that
    # carry most of a network's latency (convolutions, dense) and vary most get more.
    sample_weight: ClassVar[float] = 1.0
    # The epilogues a twinned plan covers (a kind with an ``epilogue`` param): each at least as often as a uniform
    # draw over them would make it, through twins of drawn configs (see edgelat.profiler.campaign.plan_configs).
    # Real networks' seeds are mostly ReLU, and a kind that saw a handful of swish kernels prices swish badly.
    epilogues: ClassVar[tuple[str, ...]] = ()

    def sample(self, rng: np.random.Generator, seeds: Sequence[Config]) -> Config:
        """A random configuration: a real-network seed (when given) perturbed, or drawn from scratch."""
        raise NotImplementedError

    def emit(self, cfg: Config) -> tvm.IRModule:
        """The Relax module (function ``main``) computing this op with its epilogue."""
        raise NotImplementedError

    def features(self, cfg: Mapping[str, Any]) -> dict[str, Any]:
        """The feature vector of one config, or of many at once: ``cfg`` may map each field to a
        numpy column (one entry per config), and then every feature is a column too (or a scalar
        that holds for all). Write it with arithmetic and numpy, so one function serves both."""
        raise NotImplementedError

    def feature_matrix(self, configs: Sequence[Config], names: Sequence[str]) -> np.ndarray:
        """Features ``names`` of many configs, one row each: :meth:`features` on columns."""
        feats = self.features(_columns(configs, self.params))
        out = np.empty((len(configs), len(names)))
        for j, name in enumerate(names):
            out[:, j] = feats[name]  # a column, or a scalar that holds for every config
        return out

    def feature_table(self, configs: Sequence[Config]) -> pd.DataFrame:
        """All features of many configs, one row each, as a frame: what training fits on."""
        names = list(self.features(configs[0])) if configs else []
        return pd.DataFrame(self.feature_matrix(configs, names), columns=names)

    def match(self, group: FusedGroup) -> Config | None:
        """The configuration of ``group`` if it is a kernel of this kind, else None."""
        return None

    def validate(self, cfg: Mapping[str, Any]) -> Config:
        """Check a configuration has exactly this op's fields; returns a clean copy."""
        missing = [p for p in self.params if p not in cfg]
        extra = [k for k in cfg if k not in self.params]
        if missing or extra:
            raise UsageError(f"bad {self.name} config: missing {missing}, unexpected {extra}")
        return {p: cfg[p] for p in self.params}

    def adapt_group(self, cfg: Mapping[str, Any]) -> str:
        """The group this kernel's latency counts towards when a device is adapted from another's models
        (``edgelat adapt`` fits one weight per group): the kind, unless a kind's cost differs between
        devices by more than one weight can say (convolutions split by kernel size and grouping)."""
        return self.name

    def pruned(self, cfg: Mapping[str, Any], out_removed: int, in_removed: int) -> Config:
        """This kernel's config after pruning removed output and input channels of its layer; kinds that
        pruning does not edit refuse."""
        raise UsageError(f"{self.name} kernels are not edited by channel pruning")

    def describe(self, cfg: Config) -> str:
        """A compact one-line description (fields at their usual value are left out)."""
        usual = {"n": 1, "dilation": 1, "groups": 1, "ceil": 0, "include_pad": 0, "concat": 0, "split": 0}
        shown = " ".join(f"{k}={v}" for k, v in cfg.items() if k != "epilogue" and usual.get(k) != v)
        return shown + (f" +{cfg['epilogue']}" if cfg.get("epilogue") else "")


def _columns(configs: Sequence[Config], params: Sequence[str]) -> dict[str, np.ndarray]:
    """Configs as columns: one numpy array per field (strings as objects)."""
    columns = {}
    for p in params:
        values = [c[p] for c in configs]
        columns[p] = np.array(values, dtype=object if values and isinstance(values[0], str) else None)
    return columns


# Every kernel kind, in registration order (matching tries kinds in this order).
OPS: Registry[OpSpec] = Registry("op", error=UnknownOpError, hint="`edgelat ops` lists them")
S = TypeVar("S", bound=type[OpSpec])


def register_op(name: str, **attrs: Any) -> Callable[[S], S]:
    """Class decorator: ``@register_op("conv2d")`` registers one instance of the class.

    Keyword arguments are set on the instance (so one class can serve several kinds, such as
    conv2d and depthwise conv2d).
    """

    def decorate(cls: S) -> S:
        spec = cls()
        spec.name = name  # type: ignore[misc]
        for key, value in attrs.items():
            setattr(spec, key, value)
        OPS.register(name, spec)
        return cls

    return decorate


def unregister_op(name: str) -> None:
    OPS.unregister(name)


def get_op(name: str) -> OpSpec:
    return OPS.get(name)


def list_ops(pattern: str = "*") -> list[str]:
    """Registered op kinds matching a shell-style pattern, in registration order."""
    return OPS.names(pattern)


def config_id(op: str, cfg: Mapping[str, Any]) -> str:
    """Stable content hash of an op configuration."""
    blob = json.dumps({"op": op, "cfg": dict(cfg)}, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
