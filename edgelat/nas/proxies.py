"""Training-free accuracy proxies: score a freshly initialised network, higher = predicted more accurate.

Every proxy is a function ``(module, input_shape) -> float`` in :data:`PROXIES`, where
``input_shape`` is ``(N, C, H, W)``; the batch dimension ``N`` is ignored (each proxy picks
its own batch). No proxy changes the module it is given: the ones that need gradients or
altered weights work on a deep copy.

==========  ===========================================================================
name        score
==========  ===========================================================================
params      trainable parameter count
flops       forward FLOPs at batch 1 (``FlopCounterMode``; a multiply-add counts 2)
synflow     log of SynFlow (Tanaka et al. 2020; Abdelfattah et al. 2021), BatchNorm removed
zico        ZiCo (Li et al., ICLR 2023) over two mini-batches of scikit-learn's digits
==========  ===========================================================================

:class:`ProxyScorer` scores architecture strings of a search space with one proxy or with
``"ensemble"``, the mean rank of all four.

Example:
    >>> from edgelat.datasets.nb201 import build_nb201
    >>> net = build_nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
    >>> sorted(PROXIES) == list_proxies()
    True
    >>> get_proxy("synflow")(net, (1, 3, 32, 32)) > get_proxy("synflow")(build_nb201("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|"), (1, 3, 32, 32))
    True
"""

from __future__ import annotations

import copy
import functools
import math
import zlib
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import torch
import torch.nn.functional as F
from scipy.stats import rankdata
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from edgelat.errors import UsageError
from edgelat.nas import PROXIES

__all__ = [
    "ENSEMBLE",
    "ENSEMBLE_MEMBERS",
    "PROXIES",
    "Proxy",
    "ProxyScorer",
    "arch_seed",
    "flops",
    "get_proxy",
    "list_proxies",
    "mean_rank",
    "num_params",
    "proxy_data",
    "synflow",
    "zico",
]

# (module, input_shape) -> score, higher = predicted better
Proxy = Callable[[nn.Module, tuple[int, ...]], float]

ENSEMBLE = "ensemble"
# the proxies the ensemble averages the ranks of; fixed, so registering a proxy does not change it
ENSEMBLE_MEMBERS: tuple[str, ...] = ("params", "flops", "synflow", "zico")


def _check_shape(input_shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    if len(input_shape) != 4 or any(not isinstance(d, int) or d < 1 for d in input_shape):
        raise UsageError(f"input_shape must be four positive ints (N, C, H, W), got {input_shape!r}")
    n, c, h, w = input_shape
    return n, c, h, w


@contextmanager
def _eval_mode(module: nn.Module) -> Iterator[nn.Module]:
    """Put every submodule in eval mode, then restore each one's own ``training`` flag."""
    modes = [(m, m.training) for m in module.modules()]
    module.eval()
    try:
        yield module
    finally:
        for m, training in modes:
            m.training = training


def num_params(module: nn.Module) -> float:
    """Number of trainable parameters (``requires_grad``), counting a shared parameter once.

    Example:
        >>> num_params(nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2, bias=False)))
        21.0
    """
    return float(sum(p.numel() for p in module.parameters() if p.requires_grad))


def flops(module: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Forward FLOPs at batch 1, as counted by ``torch.utils.flop_counter.FlopCounterMode``.

    FlopCounterMode counts matrix products and convolutions only, a multiply-add as 2 FLOPs
    (a 3x3 conv is ``2 * cout * cin * 9 * hout * wout``); biases, BatchNorm, activations and
    pooling are not counted. The forward pass runs in eval mode without gradients, so
    BatchNorm running statistics are left untouched.

    Example:
        >>> flops(nn.Conv2d(3, 8, 3, padding=1), (1, 3, 16, 16))
        110592.0
    """
    _, c, h, w = _check_shape(input_shape)
    param = next(module.parameters(), None)
    dtype = param.dtype if param is not None else torch.float32
    counter = FlopCounterMode(display=False)
    with _eval_mode(module), torch.no_grad(), counter:
        module(torch.zeros(1, c, h, w, dtype=dtype))
    return float(counter.get_total_flops())


def _strip_batchnorm(module: nn.Module) -> nn.Module:
    """Replace every BatchNorm layer of ``module`` (in place) with ``nn.Identity``."""
    for name, child in module.named_children():
        if isinstance(child, nn.modules.batchnorm._BatchNorm):
            setattr(module, name, nn.Identity())
        else:
            _strip_batchnorm(child)
    return module


def synflow(module: nn.Module, input_shape: tuple[int, ...]) -> float:
    """Natural log of the SynFlow score of ``module``.

    As the zero-cost-proxies reference (``synflow``, ``bn=False``): on a float64 copy with
    every BatchNorm layer removed and every parameter replaced by its absolute value, feed
    one all-ones input, backpropagate the sum of the output and score
    ``sum over all parameters of |theta * dR/dtheta|``. The raw score overflows float32 and
    grows exponentially with depth, so its log is returned (the ranking is the same); the
    sum is taken in log space, so it never overflows while the individual terms fit in
    float64. A network whose output depends on no parameter (score 0) gets ``-inf``; one
    whose gradients overflow float64 (raw score beyond ~1e308) gets ``+inf``.

    Example:
        >>> narrow = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.ReLU(), nn.Conv2d(4, 4, 3))
        >>> wide = nn.Sequential(nn.Conv2d(3, 8, 3), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 4, 3))
        >>> synflow(wide, (1, 3, 8, 8)) > synflow(narrow, (1, 3, 8, 8))
        True
    """
    _, c, h, w = _check_shape(input_shape)
    net = _strip_batchnorm(copy.deepcopy(module)).double()
    with torch.no_grad():
        for p in net.parameters():
            p.abs_()
    params = [p for p in net.parameters() if p.requires_grad]
    net.zero_grad(set_to_none=True)
    with _eval_mode(net):
        out = net(torch.ones(1, c, h, w, dtype=torch.float64))
    out.sum().backward()
    logs = []
    for p in params:
        if p.grad is None:
            continue
        term = (p.detach() * p.grad).abs().flatten()
        if not torch.isfinite(term).all():
            return math.inf
        logs.append(term.log())
    if not logs:
        return -math.inf
    return float(torch.logsumexp(torch.cat(logs), dim=0))


def zico(
    module: nn.Module,
    input_shape: tuple[int, ...],
    batches: Sequence[tuple[torch.Tensor, torch.Tensor]],
    accumulate: bool = False,
) -> float:
    """ZiCo score (Li et al., ICLR 2023) of ``module`` over labelled mini-batches.

    On a deep copy in train mode, take the cross-entropy gradient of every Conv/Linear weight
    on each batch. Per layer, over the weights whose gradient varies across batches,
    ``log(sum(mean_b |g| / std_b g))`` (population std, ``ddof=0``, as the reference); the
    score is the sum over layers (a layer with no such weight adds nothing).

    By default each batch's gradient is its own, as in the paper. The reference
    implementation (SLDGroup/ZiCo ``ZeroShotProxy/compute_zico.py``) never zeroes gradients
    between batches, so there batch ``b`` sees the sum of the gradients of batches 1..b;
    ``accumulate=True`` reproduces that.

    ``input_shape`` only checks that the batches fit the network's input; use
    :func:`proxy_data` for batches. The result is a deterministic function of the module's
    weights and the batches.

    Example:
        >>> from edgelat.datasets.nb201 import build_nb201
        >>> net = build_nb201("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|")
        >>> zico(net, (1, 3, 32, 32), proxy_data((1, 3, 32, 32))) > 0
        True

    Raises:
        UsageError: fewer than two batches, or batches that do not match ``input_shape``.
    """
    _, c, h, w = _check_shape(input_shape)
    if len(batches) < 2:
        raise UsageError(f"zico needs at least 2 mini-batches to estimate gradient statistics, got {len(batches)}")
    for x, _ in batches:
        if tuple(x.shape[1:]) != (c, h, w):
            raise UsageError(f"zico batch of shape {tuple(x.shape)} does not match input_shape {input_shape!r}")
    net = copy.deepcopy(module)
    net.train()
    net.zero_grad(set_to_none=True)
    layers = {name: m for name, m in net.named_modules() if isinstance(m, nn.Conv2d | nn.Linear)}
    grads: dict[str, list[torch.Tensor]] = {name: [] for name in layers}
    dtype = next(net.parameters()).dtype
    for x, y in batches:
        if not accumulate:
            net.zero_grad(set_to_none=True)
        # a copy, so a network with an in-place first op cannot alter the (cached) batches
        F.cross_entropy(net(x.to(dtype, copy=True)), y).backward()
        for name, m in layers.items():
            g = m.weight.grad
            # a weight that feeds nothing (e.g. a conv only an all-"none" node reads) gets no gradient
            flat = torch.zeros(m.weight.numel(), dtype=torch.float64) if g is None else g.detach().flatten().to(torch.float64, copy=True)
            grads[name].append(flat)
    score = 0.0
    for per_batch in grads.values():
        g = torch.stack(per_batch)  # batches x weights
        std = g.std(dim=0, correction=0)
        keep = std > 0
        if not keep.any():
            continue
        total = (g.abs().mean(dim=0)[keep] / std[keep]).sum()
        score += math.log(float(total))
    return score


def proxy_data(
    input_shape: tuple[int, ...], batches: int = 2, batch_size: int = 16, seed: int = 0
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """Labelled mini-batches of real images for data-dependent proxies, with no download.

    Images are scikit-learn's bundled digits (1797 8x8 grayscale images, classes 0..9):
    standardised to zero mean and unit variance over the whole set, resized bilinearly to
    ``H x W`` and repeated over ``C`` channels. ``seed`` picks which images go in which batch;
    ``N`` of ``input_shape`` is ignored. Labels are 0..9, valid for any classifier with at
    least 10 outputs.

    Example:
        >>> [(tuple(x.shape), tuple(y.shape)) for x, y in proxy_data((1, 3, 32, 32), batches=2, batch_size=4)]
        [((4, 3, 32, 32), (4,)), ((4, 3, 32, 32), (4,))]
    """
    from sklearn.datasets import load_digits

    _, c, h, w = _check_shape(input_shape)
    if batches < 1 or batch_size < 1:
        raise UsageError(f"proxy_data needs batches >= 1 and batch_size >= 1, got {batches} and {batch_size}")
    images, labels = load_digits(return_X_y=True)
    if batches * batch_size > len(images):
        raise UsageError(f"proxy_data has {len(images)} images, fewer than {batches} x {batch_size} asked for")
    images = (images - images.mean()) / images.std()
    pick = np.random.default_rng(seed).permutation(len(images))[: batches * batch_size]
    x = torch.from_numpy(images[pick].reshape(-1, 1, 8, 8)).float()
    x = F.interpolate(x, size=(h, w), mode="bilinear", align_corners=False).repeat(1, c, 1, 1)
    y = torch.from_numpy(labels[pick]).long()
    return [(x[i : i + batch_size].contiguous(), y[i : i + batch_size]) for i in range(0, batches * batch_size, batch_size)]


@functools.lru_cache(maxsize=8)
def _cached_proxy_data(c: int, h: int, w: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return proxy_data((1, c, h, w))


def _zico_digits(module: nn.Module, input_shape: tuple[int, ...]) -> float:
    """ZiCo on ``proxy_data(input_shape)``: 2 batches of 16 digits, cached per shape."""
    _, c, h, w = _check_shape(input_shape)
    return zico(module, input_shape, _cached_proxy_data(c, h, w))


PROXIES.register("params", lambda module, input_shape: num_params(module))
PROXIES.register("flops", flops)
PROXIES.register("synflow", synflow)
PROXIES.register("zico", _zico_digits)


def list_proxies() -> list[str]:
    """Names of the registered proxies, sorted (``"ensemble"`` is not one: see :class:`ProxyScorer`)."""
    return PROXIES.names()


def get_proxy(name: str) -> Proxy:
    """The proxy registered as ``name``.

    Raises:
        UsageError: no proxy has that name; the message lists the known ones.
    """
    return PROXIES.get(name)


def arch_seed(arch: str) -> int:
    """The torch seed :class:`ProxyScorer` uses to initialise ``arch``: CRC-32 of its UTF-8 bytes.

    Example:
        >>> arch_seed("abc")
        891568578
    """
    return zlib.crc32(arch.encode("utf-8"))


def mean_rank(columns: Sequence[np.ndarray]) -> np.ndarray:
    """Mean over ``columns`` of each item's rank within its column (1 = lowest, ties averaged).

    Example:
        >>> mean_rank([np.array([1.0, 5.0, 3.0]), np.array([-np.inf, 2.0, 2.0])]).tolist()
        [1.0, 2.75, 2.25]
    """
    if not columns:
        raise UsageError("mean_rank needs at least one column of scores")
    return np.mean([rankdata(np.asarray(col, dtype=np.float64)) for col in columns], axis=0)


class ProxyScorer:
    """Scores architecture strings with one proxy or with ``"ensemble"``.

    Each architecture is built with ``torch.manual_seed(arch_seed(arch))`` (inside
    ``torch.random.fork_rng``, so the caller's random state is untouched), so a score is a
    function of the architecture string alone. Raw proxy values are cached per architecture:
    scoring an architecture again neither rebuilds nor rescores it.

    ``"ensemble"`` averages, over params, flops, synflow and zico, where an architecture's
    value falls among those of a fixed ``reference`` sample of the space (its empirical CDF,
    ties counted half, in [0, 1]). Scores are therefore comparable across calls, as a search
    needs. Without a ``reference`` the ranks are taken within each ``score`` call instead
    (:func:`mean_rank`), which only compares architectures scored together.

    Args:
        name: a proxy of :func:`list_proxies` or ``"ensemble"``.
        build: architecture string -> freshly initialised ``nn.Module``.
        input_shape: ``(N, C, H, W)`` of the network's input, or a function of the architecture
            giving it (spaces whose resolution is searched).
        reference: architectures the ensemble places others among (scored once, lazily).

    Example:
        >>> from edgelat.datasets.nb201 import build_nb201
        >>> scorer = ProxyScorer("synflow", build_nb201, (1, 3, 32, 32))
        >>> scores = scorer.score(["|nor_conv_3x3~0|+|none~0|nor_conv_3x3~1|+|skip_connect~0|none~1|nor_conv_3x3~2|"])
        >>> scores.shape
        (1,)

    Raises:
        UsageError: unknown proxy name or malformed input shape.
    """

    def __init__(
        self,
        name: str,
        build: Callable[[str], nn.Module],
        input_shape: tuple[int, ...] | Callable[[str], tuple[int, ...]],
        reference: Sequence[str] = (),
    ) -> None:
        if name != ENSEMBLE:
            get_proxy(name)
        if not callable(input_shape):
            _check_shape(tuple(input_shape))
        self.name = name
        self.build = build
        self.input_shape = input_shape
        self.reference = list(reference)
        self._cache: dict[str, dict[str, float]] = {}
        self._ref_values: dict[str, np.ndarray] | None = None

    def _proxies(self) -> list[str]:
        return list(ENSEMBLE_MEMBERS) if self.name == ENSEMBLE else [self.name]

    def _shape(self, arch: str) -> tuple[int, ...]:
        shape = tuple(self.input_shape(arch)) if callable(self.input_shape) else tuple(self.input_shape)
        _check_shape(shape)
        return shape

    def _raw(self, arch: str) -> dict[str, float]:
        cached = self._cache.setdefault(arch, {})
        missing = [p for p in self._proxies() if p not in cached]
        if missing:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(arch_seed(arch))
                module = self.build(arch)
            for p in missing:
                cached[p] = PROXIES.get(p)(module, self._shape(arch))
        return cached

    def score(self, archs: Sequence[str]) -> np.ndarray:
        """Scores of ``archs`` (float64, one per architecture, higher = predicted better)."""
        raw = [self._raw(a) for a in archs]
        if self.name != ENSEMBLE:
            return np.array([r[self.name] for r in raw], dtype=np.float64)
        if not raw:
            return np.zeros(0, dtype=np.float64)
        if not self.reference:
            return mean_rank([np.array([r[p] for r in raw], dtype=np.float64) for p in ENSEMBLE_MEMBERS])
        if self._ref_values is None:
            ref = [self._raw(a) for a in self.reference]
            self._ref_values = {p: np.sort(np.array([r[p] for r in ref], dtype=np.float64)) for p in ENSEMBLE_MEMBERS}
        positions = []
        for p in ENSEMBLE_MEMBERS:
            values, ref_sorted = np.array([r[p] for r in raw], dtype=np.float64), self._ref_values[p]
            below = np.searchsorted(ref_sorted, values, side="left")
            above = np.searchsorted(ref_sorted, values, side="right")
            positions.append((below + above) / (2.0 * len(ref_sorted)))
        return np.mean(positions, axis=0)
