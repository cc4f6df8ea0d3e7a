"""Compile recipes: how a kernel is turned into the code a device runs.

A recipe takes a network's or an op config's kernels (TIR PrimFuncs) and returns them scheduled;
TVM then compiles them for the target the recipe derives from the device's (a recipe is its
pipeline *and* its target flags). Measurements, trained models and predictions are kept per
recipe, and every measurement records the target it was built for. A new recipe is one subclass
here, registered in :data:`RECIPES`.
"""

from __future__ import annotations

import platform
from collections.abc import Mapping
from typing import Any

from edgelat.errors import UsageError
from edgelat.registry import Registry

__all__ = ["RECIPES", "DefaultRecipe", "Recipe", "TunedRecipe", "first_line", "get_recipe", "is_x86"]

Target = dict[str, Any]


class Recipe:
    """A way of scheduling kernels before TVM compiles them."""

    name: str = ""
    description: str = ""
    # Whether scheduling searches with the device in the loop (candidates timed on it): builds then
    # go one at a time between measurements instead of ahead in a worker pool, and need a tuner.
    tunes: bool = False
    # How its kernels are timed, alone: "warm" (repeated calls on the same tensors, which stay in the caches),
    # "flushed" (one call per repeat, its weights and output flushed from every cache level first, as in
    # a network larger than the last-level cache, where the kernels between two calls of one evict them) or
    # "llc" (one call per repeat after the core's private caches are written over: a network that fits the
    # last level). Models train only on measurements
    # timed the recipe's way. Tuned kernels run so fast that the caches decide much of their time in a network
    # (README: "Caches"); untuned ones are bound by their arithmetic.
    caches: str = "warm"
    # How a tuning recipe's candidates are timed while it searches (the same states as ``caches``). The
    # device's tuning database ranks records by these times, so records timed two ways must not share one.
    candidate_caches: str = "warm"
    # The way a kernel is also timed for networks that do not fit the last level, whose kernels meet their
    # weights in memory: None, or a second way (see :mod:`edgelat.predictors.context`, which puts a network
    # between the two by its footprint). ``profile`` times every kernel this way too, after the recipe's.
    far_caches: str | None = None

    def check(self, trials: int) -> None:
        """Refuse settings this recipe cannot work with (one line: a UsageError)."""

    def target(self, device_target: Target) -> Target:
        """The TVM target this recipe compiles for, given the device preset's."""
        return dict(device_target)

    def schedule(self, funcs: Mapping[str, Any], tuner: Any = None, trials: int = 0) -> tuple[dict[str, Any], float]:
        """The kernels scheduled, by name, and the seconds spent searching."""
        return dict(funcs), 0.0


class DefaultRecipe(Recipe):
    name = "default"
    description = "stock TVM, untuned (the fastest to build)"

    def target(self, device_target: Target) -> Target:
        # On x86, untuned code built for the CPU by name (``mcpu``, as LLVM reports the host) ran slower
        # than the same code built for a generic x86-64, while tuned code ran far faster with the CPU
        # named (README: "Target flags"). Untuned builds drop the CPU's name and features there; other
        # targets (ARM, whose timings nothing here has measured) stay as they are.
        if not is_x86(device_target):
            return dict(device_target)
        return {k: v for k, v in device_target.items() if k not in ("mcpu", "mattr")}


class TunedRecipe(Recipe):
    name = "tuned"
    description = "MetaSchedule search per kernel, candidates timed on the device; records kept per device"
    tunes = True
    # Tuned kernels are fast enough for where their data lies to decide much of their time. Timed "llc", the
    # tuned models predicted this host's small networks best by far; "flushed" (DRAM) charged them about twice
    # what they take and "warm" too little (README: "Caches"). A board whose last level is a small shared L2
    # keeps little of a network there: see the README for what is not measured yet.
    caches = "llc"
    # Candidates timed "llc" too made no network consistently faster in two side-by-side runs (README:
    # "Tuning cost"), and the databases tuned so far hold warm times: they stay warm.
    candidate_caches = "warm"
    # On this host the networks ran between their kernels' "llc" and "flushed" sums, nearer "flushed" the larger
    # their weights (README: "Caches in a network").
    far_caches = "flushed"

    def check(self, trials: int) -> None:
        if trials < 1:
            raise UsageError("--trials must be at least 1 for the tuned recipe")

    def schedule(self, funcs: Mapping[str, Any], tuner: Any = None, trials: int = 0) -> tuple[dict[str, Any], float]:
        from edgelat.errors import BuildError, EdgelatError

        if tuner is None:
            raise BuildError("the tuned recipe needs a tuner")
        out, seconds = {}, 0.0
        for name, func in funcs.items():
            try:
                outcome = tuner.tune(func, trials)
            except EdgelatError:
                raise
            except Exception as exc:  # noqa: BLE001 - MetaSchedule's failures surface as one clear error
                raise BuildError(f"MetaSchedule could not tune kernel {name}: {first_line(exc)}") from exc
            out[name] = outcome.func.with_attr("global_symbol", name)
            seconds += outcome.tune_s
        return out, seconds


def is_x86(target: Target) -> bool:
    """Whether ``target`` compiles for an x86 CPU (a target without a triple is this host's)."""
    triple = str(target.get("mtriple") or platform.machine())
    return triple.startswith(("x86_64", "i386", "i686", "AMD64"))


def first_line(exc: BaseException) -> str:
    """TVM's errors carry a C++ backtrace with the message: keep the message."""
    lines = [
        line.strip() for line in str(exc).splitlines() if line.strip() and not line.lstrip().startswith(("File ", "Traceback", "-----"))
    ]
    return (lines[-1] if lines else type(exc).__name__)[:300]


RECIPES: Registry[Recipe] = Registry("recipe")
for _recipe in (DefaultRecipe(), TunedRecipe()):
    RECIPES.register(_recipe.name, _recipe)


def get_recipe(name: str) -> Recipe:
    return RECIPES.get(name)
