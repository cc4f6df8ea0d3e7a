"""Latency-constrained channel pruning: NetAdapt's loop, Torch-Pruning's dependency graph, a latency predictor's prices.

Each step asks the predictor how much latency every prunable channel group (a conv's output
channels and everything coupled to them: the next layers' inputs, batch norms, residual
partners, depthwise convs) would save for each number of channels removed, and removes, from
the group that reaches the step's latency goal at the least loss of importance (magnitude or
Taylor), that group's least important channels. A short fine-tune follows. When the predicted
latency meets the target the network is measured on the device; if the measurement misses,
the target is corrected by the measured/predicted ratio and pruning goes on.

Everything device-side comes in as arguments: a :class:`Pricer` (in edgelat, the device's
kernel predictor) and a ``measure`` function.

Example:
    >>> result = prune_to_latency(model, example, target_ms=6.0, pricer=pricer, task=DigitsTask(32))  # doctest: +SKIP
    >>> result.predicted_ms, [s.accuracy for s in result.steps]
"""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch
from torch import nn

from edgelat.errors import AlreadyMeetsTargetError, EdgelatError, UsageError
from edgelat.nas import IMPORTANCES
from edgelat.nas.search import Measured

__all__ = [
    "IMPORTANCES",
    "MemoryPricer",
    "Pricer",
    "PruneResult",
    "PruneStep",
    "layer_configs",
    "prune_to_latency",
    "pruned_structure",
    "rebuild_pruned",
    "uniform_prune",
]

Kernel = tuple[str, dict[str, Any]]


class Pricer(Protocol):
    def network(self, model: nn.Module, example: torch.Tensor) -> tuple[float, list[Kernel]]:
        """Predicted milliseconds of ``model`` and its kernels ((op, config), in execution order)."""
        ...

    def kernels(self, items: Sequence[Kernel]) -> np.ndarray:
        """Predicted milliseconds of each kernel."""
        ...


class _Task(Protocol):
    def train_batches(self, steps: int, batch_size: int = ..., seed: int = ...) -> Any: ...

    def evaluate(self, model: nn.Module) -> float: ...


# "sum": a channel's share of its group's importance, so cutting deep into a thinned group costs more.
@IMPORTANCES.register("magnitude")
def _magnitude() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupMagnitudeImportance(p=2, normalizer="sum")


@IMPORTANCES.register("taylor")
def _taylor() -> Any:
    import torch_pruning as tp

    return tp.importance.GroupTaylorImportance(normalizer="sum")


@dataclass
class PruneStep:
    step: int
    layer: str
    removed: int
    predicted_ms: float
    accuracy: float | None
    measured_ms: float | None = None
    predicted_memory_mb: float | None = None
    measured_memory_mb: float | None = None


@dataclass
class PruneResult:
    model: nn.Module
    target_ms: float | None  # None: no latency target (a memory limit alone)
    baseline_predicted_ms: float
    baseline_measured_ms: float | None
    baseline_accuracy: float | None
    predicted_ms: float
    measured_ms: float | None
    accuracy: float | None
    steps: list[PruneStep] = field(default_factory=list)
    seconds: float = 0.0
    # With a memory limit: the limit, and peak memory before and after (predicted, measured), MB.
    memory_limit_mb: float | None = None
    baseline_predicted_memory_mb: float | None = None
    baseline_measured_memory_mb: float | None = None
    predicted_memory_mb: float | None = None
    measured_memory_mb: float | None = None


def layer_configs(model: nn.Module, example: torch.Tensor, kernels: Sequence[Kernel]) -> dict[nn.Module, Kernel]:
    """Each Conv2d and Linear of ``model`` -> the kernel (op, config) the device runs for it.

    Each layer call is matched to a kernel of the same shapes (channels, groups, kernel size,
    stride, input size); layers of identical shapes take their kernels in execution order.

    Raises:
        EdgelatError: the kernels do not line up with the layers (a layer ran twice, or the
            compiler merged or split one).
    """
    calls: list[tuple[nn.Module, tuple[int, ...]]] = []
    hooks = [
        m.register_forward_pre_hook(lambda mod, args: calls.append((mod, tuple(args[0].shape))))
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model.eval()(example)
    finally:
        for h in hooks:
            h.remove()
    layer_kernels = [k for k in kernels if k[0] in ("conv2d", "dwconv2d", "dense")]
    if len(layer_kernels) != len(calls) or len({id(m) for m, _ in calls}) != len(calls):
        raise EdgelatError(f"the network's {len(calls)} conv/linear calls do not line up with its {len(layer_kernels)} conv/dense kernels")
    queues: dict[tuple[Any, ...], list[Kernel]] = {}
    for op, cfg in layer_kernels:
        key = (
            ("dense", cfg["k"], cfg["n"])
            if op == "dense"
            else ("conv", cfg["cin"], cfg["cout"], cfg["groups"], cfg["k"], cfg["stride"], cfg["h"], cfg["w"])
        )
        queues.setdefault(key, []).append((op, cfg))
    mapping: dict[nn.Module, Kernel] = {}
    for module, shape in calls:
        if isinstance(module, nn.Conv2d):
            key = (
                "conv",
                module.in_channels,
                module.out_channels,
                module.groups,
                module.kernel_size[0],
                module.stride[0],
                shape[2],
                shape[3],
            )
        else:
            key = ("dense", module.in_features, module.out_features)
        if not queues.get(key):
            raise EdgelatError(f"no kernel of the network matches layer {module} at input {shape}")
        mapping[module] = queues[key].pop(0)
    return mapping


def _pruned_config(op: str, cfg: dict[str, Any], out_removed: int, in_removed: int) -> dict[str, Any]:
    from edgelat.ops import get_op

    return get_op(op).pruned(cfg, out_removed, in_removed)


def _counts(channels: int, floor: int) -> list[int]:
    """Channel counts a step may remove from a group of ``channels``: multiples of 8 (4, 1 for small groups),
    at most half, never leaving fewer than ``floor``."""
    unit = 8 if channels >= 64 else 4 if channels >= 16 else 1
    return list(range(unit, min(channels // 2, channels - floor) + 1, unit))


def _last_layer(model: nn.Module) -> nn.Module:
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    return layers[-1]


def _finetune(model: nn.Module, task: _Task | None, steps: int, lr: float, seed: int) -> None:
    if task is None or steps <= 0:
        return
    from edgelat.datasets.digits import train

    train(model, task, steps, lr=lr, seed=seed)  # type: ignore[arg-type]


class MemoryPricer(Protocol):
    def network(self, model: nn.Module, example: torch.Tensor) -> tuple[float, float]:
        """Predicted peak memory of ``model`` (MB), and how many MB it falls per MB of weights removed."""
        ...


@dataclass
class _Limit:
    """A limit the pruned network must meet on the device: latency (ms) or peak memory (MB).

    ``aim`` is what ``predicted`` is pruned to: latency's target over the latest measured/predicted ratio,
    less ``margin`` of it; memory's target less ``margin`` MB (memory's ``predicted`` is already anchored on
    the latest measurement: :class:`_MemoryCourse`). ``goal`` is how much one step removes.
    """

    name: str
    unit: str
    target: float
    predicted: float
    measured: float | None
    margin: float
    aim: float = 0.0
    goal: float = 0.0

    def reaim(self, steps: int) -> None:
        if self.unit == "ms":
            ratio = self.measured / self.predicted if self.measured else 1.0
            self.aim = self.target / ratio * (1 - self.margin)
        else:
            self.aim = self.target - self.margin
        self.goal = (self.predicted - self.aim) / max(1, steps)

    @property
    def aimed(self) -> bool:
        return self.predicted <= self.aim

    @property
    def met(self) -> bool:
        return self.measured is not None and self.measured <= self.target

    @property
    def close(self) -> bool:
        """Measured within reach: latency within 25% of its target, memory within two steps of its limit."""
        if self.measured is None:
            return False
        return self.measured <= 1.25 * self.target if self.unit == "ms" else self.measured <= self.target + 2 * abs(self.goal)

    @property
    def floor(self) -> float:
        """Predictions a step should not go under when a smaller cut reaches the aim: 5% under latency's aim, one
        step's goal under memory's."""
        return 0.95 * self.aim if self.unit == "ms" else self.aim - max(self.margin, abs(self.goal))


@dataclass
class _MemoryCourse:
    """Peak memory steered by what the device measured: the latest measurement, moved by how much the weights
    changed since, times a slope: the secant through the first and the latest measurements once their
    weights differ enough, else the memory model's. A model fitted on few networks can be far off in slope
    (it counts the weights once before four networks are measured); the measurements are not."""

    points: list[tuple[float, float]] = field(default_factory=list)  # (weights MB, measured peak MB)

    @property
    def secant(self) -> float | None:
        if len(self.points) >= 2:
            (w0, m0), (w1, m1) = self.points[0], self.points[-1]
            if abs(w0 - w1) >= max(0.5, 0.02 * w0) and (m0 - m1) / (w0 - w1) > 0:
                return (m0 - m1) / (w0 - w1)
        return None

    def slope(self, model_slope: float) -> float:
        secant = self.secant
        return model_slope if secant is None else secant

    def estimate(self, weights_mb: float, predicted: float, model_slope: float) -> float:
        if not self.points:
            return predicted
        w, m = self.points[-1]
        return m + self.slope(model_slope) * (weights_mb - w)


def _weights_mb(model: nn.Module) -> float:
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 2**20


def _as_measured(value: float | Measured) -> Measured:
    return value if isinstance(value, Measured) else Measured(float(value))


def prune_to_latency(
    model: nn.Module,
    example: torch.Tensor,
    target_ms: float | None,
    pricer: Pricer,
    *,
    memory_mb: float | None = None,
    memory_pricer: MemoryPricer | None = None,
    task: _Task | None = None,
    measure: Callable[[nn.Module], float | Measured] | None = None,
    importance: str = "magnitude",
    steps: int = 8,
    finetune_steps: int = 30,
    lr: float = 0.01,
    max_rounds: int = 3,
    margin: float = 0.02,
    memory_margin_mb: float = 1.0,
    ignored_layers: Sequence[nn.Module] = (),
    on_step: Callable[[PruneStep], None] | None = None,
    baseline_ms: float | Measured | None = None,
    seed: int = 0,
) -> PruneResult:
    """Prune ``model`` (a copy) until its latency meets ``target_ms`` and its peak memory ``memory_mb`` (either
    may be None: no limit); measured when ``measure`` is given.

    ``steps`` is how many steps the reduction is spread over; latency is aimed at ``margin`` (a fraction)
    below its target, memory at ``memory_margin_mb`` below its limit. A step cuts for latency while the
    predicted latency is above its aim, then for memory: the cut that removes the weights needed at the
    least importance (``memory_pricer`` prices the network and says how much a MB of weights weighs in
    its peak; once measured, the measurements steer it: :class:`_MemoryCourse`). With ``measure`` (which returns milliseconds, or a :class:`~edgelat.nas.search.Measured`
    with the peak memory when memory is limited), the baseline is measured first and predictions are
    corrected by the measurements; the network is measured again every ``steps`` steps and when its
    predictions meet the aims, and the aims are corrected by the latest measurement, so the result lands
    just under the targets as the device sees them (``max_rounds`` misses at most; ``baseline_ms``, when
    known, saves measuring the baseline again).
    """
    import torch_pruning as tp

    start = time.time()
    if target_ms is None and memory_mb is None:
        raise UsageError("give a latency target, a memory limit or both")
    if target_ms is not None and not target_ms > 0:
        raise UsageError(f"the target latency must be positive, got {target_ms} ms")
    if memory_mb is not None and (memory_pricer is None or not memory_mb > 0):
        raise UsageError(f"a memory limit must be positive and come with a memory pricer, got {memory_mb} MB")
    model = copy.deepcopy(model).eval()
    imp = IMPORTANCES.get(importance)()
    base_pred, kernels = pricer.network(model, example)
    base = _as_measured(baseline_ms) if baseline_ms is not None else _as_measured(measure(model)) if measure is not None else None
    base_acc = task.evaluate(model) if task is not None else None
    limits: list[_Limit] = []
    if target_ms is not None:
        limits.append(_Limit("latency", "ms", target_ms, base_pred, base.ms if base else None, margin))
    memory = _Limit("peak memory", "MB", memory_mb or 0.0, 0.0, None, memory_margin_mb)
    course, model_memory, model_slope = _MemoryCourse(), 0.0, 0.0
    if memory_mb is not None:
        assert memory_pricer is not None
        model_memory, model_slope = memory_pricer.network(model, example)
        memory.measured = base.memory_mb if base else None
        if memory.measured is not None:
            course.points.append((_weights_mb(model), memory.measured))
        memory.predicted = course.estimate(_weights_mb(model), model_memory, model_slope)
        limits.append(memory)
    for limit in limits:
        limit.reaim(steps)
    if all(limit.met if limit.measured is not None else limit.aimed for limit in limits):
        shown = [(limit, limit.measured if limit.measured is not None else limit.predicted) for limit in limits]
        raise AlreadyMeetsTargetError(
            "the network already " + " and ".join(
                f"runs in {v:.2f} ms, within the {lim.target:g} ms target" if lim.unit == "ms" else f"peaks at {v:.1f} MB, within the {lim.target:g} MB limit"
                for lim, v in shown
            ),
            base.ms if base else base_pred,
        )  # fmt: skip
    graph = tp.DependencyGraph().build_dependency(model, example_inputs=example, verbose=False)
    # Every group keeps at least a fifth of the channels it started with.
    original: dict[nn.Module, int] = {}
    ignored = [_last_layer(model), *ignored_layers]
    result = PruneResult(model, target_ms, base_pred, base.ms if base else None, base_acc,
                         base_pred, base.ms if base else None, base_acc, memory_limit_mb=memory_mb)  # fmt: skip
    if memory_mb is not None:
        result.baseline_predicted_memory_mb = result.predicted_memory_mb = model_memory
        result.baseline_measured_memory_mb = result.measured_memory_mb = memory.measured
    step_no, since_measured, misses = 0, 0, 0
    names = {m: n for n, m in model.named_modules()}
    while True:
        # Measured every `steps` steps, and after every step once the device is close to every target, or while
        # memory's slope is not yet measured.
        close = all(limit.close for limit in limits) or (memory_mb is not None and memory.measured is not None and course.secant is None)
        aimed = all(limit.aimed for limit in limits)
        if aimed or (measure is not None and since_measured >= (1 if close else steps)):
            if measure is None:
                break
            # On the device: done if it meets the targets, else aim again with the latest measured/predicted ratios.
            measured = _as_measured(measure(model))
            since_measured = 0
            result.measured_ms, result.measured_memory_mb = measured.ms, measured.memory_mb
            for limit in limits:
                limit.measured = measured.ms if limit.unit == "ms" else measured.memory_mb
            if memory_mb is not None and measured.memory_mb is not None:
                course.points.append((_weights_mb(model), measured.memory_mb))
                memory.predicted = course.estimate(_weights_mb(model), model_memory, model_slope)
            if result.steps:
                result.steps[-1].measured_ms, result.steps[-1].measured_memory_mb = measured.ms, measured.memory_mb
            if all(limit.met for limit in limits):
                break
            if aimed:
                misses += 1
                if misses >= max_rounds:
                    break
            for limit in limits:
                if not limit.met:
                    limit.reaim(max(2, steps // 2))
            continue
        step_no += 1
        if step_no > 50 * steps:
            raise EdgelatError(f"pruning stopped after {step_no - 1} steps: " + _state(limits))
        if importance == "taylor" and task is not None:
            model.zero_grad()
            x, y = next(iter(task.train_batches(1, seed=step_no)))
            torch.nn.functional.cross_entropy(model.train()(x), y).backward()
            model.eval()
        mapping = layer_configs(model, example, kernels)
        # Cut for the first limit not yet aimed at; never plan to land under its floor when a smaller cut reaches the aim.
        limit = next(lim for lim in limits if not lim.aimed)
        saving = _kernel_saving(pricer, mapping) if limit.unit == "ms" else _weight_saving(course.slope(model_slope))
        choice = _best_candidate(
            graph, imp, saving, ignored, min(limit.goal, limit.predicted - limit.aim), limit.predicted - limit.floor, original
        )
        if choice is None:
            raise EdgelatError("nothing left to prune: " + _state(limits))
        module, handler, idxs = choice
        graph.get_pruning_group(module, handler, idxs=idxs).prune()
        model.zero_grad()
        _finetune(model, task, finetune_steps, lr, seed + step_no)
        predicted, kernels = pricer.network(model, example)
        if target_ms is not None:
            limits[0].predicted = predicted
        if memory_mb is not None:
            assert memory_pricer is not None
            model_memory, model_slope = memory_pricer.network(model, example)
            memory.predicted = course.estimate(_weights_mb(model), model_memory, model_slope)
        since_measured += 1
        step = PruneStep(step_no, names.get(module, type(module).__name__), len(idxs), predicted, task.evaluate(model) if task else None,
                         predicted_memory_mb=model_memory if memory_mb is not None else None)  # fmt: skip
        result.steps.append(step)
        if on_step is not None:
            on_step(step)
    result.predicted_ms = limits[0].predicted if target_ms is not None else pricer.network(model, example)[0]
    if memory_mb is not None:
        result.predicted_memory_mb = model_memory
    result.accuracy = result.steps[-1].accuracy if result.steps else base_acc
    result.seconds = time.time() - start
    return result


def _state(limits: Sequence[_Limit]) -> str:
    return ", ".join(f"{lim.name} {lim.predicted:.2f} {lim.unit} predicted, {lim.aim:.2f} aimed at" for lim in limits)


# A candidate cut's saving: (the group's (module, out?, in?) it touches, channel counts) -> saving at each count.
Saving = Callable[[dict[nn.Module, list[int]], list[int]], np.ndarray | None]


def _kernel_saving(pricer: Pricer, mapping: dict[nn.Module, Kernel]) -> Saving:
    """Milliseconds a cut saves: the touched layers' kernels priced before and after."""

    def saving(touched: dict[nn.Module, list[int]], counts: list[int]) -> np.ndarray | None:
        touched = {m: t for m, t in touched.items() if m in mapping}
        if not touched:
            return None
        base = [mapping[m] for m in touched]
        trials = [(op, _pruned_config(op, cfg, n * o, n * i)) for n in counts for (op, cfg), (o, i) in zip(base, touched.values(), strict=True)]
        if any(min(c.get(k, 1) for k in ("cin", "cout", "n", "k")) < 1 for _, c in trials):
            return None
        before = float(np.sum(pricer.kernels(base)))
        return before - pricer.kernels(trials).reshape(len(counts), len(base)).sum(axis=1)

    return saving


def _weight_saving(slope: float) -> Saving:
    """Predicted MB of peak memory a cut saves: the weights it removes from the touched layers (a removed output
    channel takes its filter and bias, a removed input channel its slice of every filter) times ``slope``."""

    def saving(touched: dict[nn.Module, list[int]], counts: list[int]) -> np.ndarray | None:
        per_channel = 0
        for m, (o, i) in touched.items():
            if not isinstance(m, (nn.Conv2d, nn.Linear)):
                continue
            w = m.weight
            if o:
                per_channel += (w.numel() // w.shape[0] + (1 if m.bias is not None else 0)) * w.element_size()
            elif i:
                inputs = m.in_channels if isinstance(m, nn.Conv2d) else m.in_features
                per_channel += w.numel() // inputs * w.element_size()
        if not per_channel:
            return None
        return slope * per_channel * np.asarray(counts, dtype=float) / 2**20

    return saving


def _best_candidate(
    graph: Any,
    imp: Any,
    saving_of: Saving,
    ignored: Sequence[nn.Module],
    goal: float,
    most: float,
    original: dict[nn.Module, int],
) -> tuple[nn.Module, Any, list[int]] | None:
    """The group and channels that save ``goal`` (but not over ``most``) at the least importance.

    Failing that: the least importance among cuts that save ``goal`` however much more, else (no cut
    reaches it) the group whose largest cut saves most per unit of importance, cut that far.
    """
    candidates = []  # (rank, loss, -saving, module, handler, idxs); rank 0 = saves goal..most, 1 = saves goal, 2 = falls short
    for group in graph.get_all_groups(ignored_layers=list(ignored), root_module_types=[nn.Conv2d, nn.Linear]):
        root = group[0].dep
        scores = imp(group)
        if scores is None:
            continue
        channels = len(scores)
        order = torch.argsort(scores).tolist()
        counts = _counts(channels, max(4, -(-original.setdefault(root.target.module, channels) // 5)))
        if not counts:
            continue
        touched: dict[nn.Module, list[int]] = {}
        for item in group:
            slot = touched.setdefault(item.dep.target.module, [0, 0])
            if graph.is_out_channel_pruning_fn(item.dep.handler):
                slot[0] = 1
            elif graph.is_in_channel_pruning_fn(item.dep.handler):
                slot[1] = 1
        savings = saving_of(touched, counts)
        if savings is None:
            continue
        cumulative = np.cumsum(np.sort(scores.detach().cpu().numpy()))
        for n, saved in zip(counts, savings, strict=True):
            loss = float(cumulative[n - 1])
            if saved >= goal:
                candidates.append((0 if saved <= most else 1, loss, -float(saved), root.target.module, root.handler, order[:n]))
                break
        else:
            # Falls short of the goal at every size: the largest cut, ranked by what it saves per unit of importance
            # (the smallest cut would save most per unit, and the goal would take many steps of it).
            n, saved = counts[-1], float(savings[-1])
            if saved > 0:
                candidates.append((2, -saved / max(float(cumulative[n - 1]), 1e-12), -saved, root.target.module, root.handler, order[:n]))
    if not candidates:
        return None
    best = min(candidates, key=lambda c: (c[0], c[1], c[2]))
    return best[3], best[4], best[5]


def uniform_prune(
    model: nn.Module, example: torch.Tensor, target_ms: float, pricer: Pricer, *, global_magnitude: bool = False, iterations: int = 12
) -> tuple[nn.Module, float, float]:
    """The baselines: one pruning ratio everywhere (or one global magnitude threshold), bisected to the target.

    Returns the pruned copy, its ratio and its predicted milliseconds.
    """
    import torch_pruning as tp

    lo, hi, best = 0.0, 0.9, None
    for _ in range(iterations):
        ratio = (lo + hi) / 2
        pruned = copy.deepcopy(model).eval()
        pruner = tp.pruner.MagnitudePruner(
            pruned, example, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=ratio,
            global_pruning=global_magnitude, ignored_layers=[_last_layer(pruned)], round_to=4,
        )  # fmt: skip
        pruner.step()
        ms = pricer.network(pruned, example)[0]
        if ms <= target_ms:
            best, hi = (pruned, ratio, ms), ratio
        else:
            lo = ratio
    if best is None:
        raise EdgelatError(f"no uniform ratio up to 90% reaches {target_ms:g} ms")
    return best


def pruned_structure(model: nn.Module) -> dict[str, dict[str, Any]]:
    """What pruning changed in each module, as JSON-able values: the plain attributes (``in_channels``,
    ``out_channels``, ``groups``, ``num_features``, ``normalized_shape``, ...) and each parameter's and
    buffer's shape. With the factory that built the unpruned model, :func:`rebuild_pruned` rebuilds it;
    no pickled module is needed."""
    plain = (bool, int, float, str)
    out: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        attrs = {k: (list(v) if isinstance(v, tuple) else v) for k, v in vars(module).items()
                 if not k.startswith("_") and (isinstance(v, plain) or (isinstance(v, tuple) and all(isinstance(x, plain) for x in v)))}  # fmt: skip
        tensors = {k: list(t.shape) for k, t in [*module._parameters.items(), *module._buffers.items()] if t is not None}
        out[name] = {"attrs": attrs, "tensors": tensors}
    return out


def rebuild_pruned(model: nn.Module, structure: dict[str, dict[str, Any]], state_dict: dict[str, torch.Tensor]) -> nn.Module:
    """``model`` (fresh from the unpruned factory) reshaped to ``structure`` and loaded with ``state_dict``."""
    modules = dict(model.named_modules())
    missing = sorted(set(structure) - set(modules))
    if missing:
        raise UsageError(
            f"the factory's model has no module {missing[0]!r} of the pruned one: is it the factory the network was pruned from?"
        )
    for name, saved in structure.items():
        module = modules[name]
        for attr, value in saved["attrs"].items():
            old = getattr(module, attr, None)
            setattr(module, attr, tuple(value) if isinstance(old, tuple) else value)
        for key, shape in saved["tensors"].items():
            if key in module._parameters and module._parameters[key] is not None:
                module._parameters[key] = nn.Parameter(torch.empty(shape), requires_grad=module._parameters[key].requires_grad)
            elif key in module._buffers and module._buffers[key] is not None:
                module._buffers[key] = torch.empty(shape, dtype=module._buffers[key].dtype)
    model.load_state_dict(state_dict)
    return model
