"""A search space on a device: the latency oracle (block prices from the device's kernel models, cached per
trained model in ``<workspace>/oracle/<device>/<recipe>/``), measuring an architecture built with TVM on the
device, refitting the models on the kernels of architectures they mispredicted, and many architectures at once."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from edgelat.errors import UsageError
from edgelat.nas.oracle import BlockOracle
from edgelat.nas.spaces import SearchSpace
from edgelat.ops.registry import ADAPT_GROUPS_VERSION
from edgelat.predictors.predict import DeviceLatencyModel, load_model, module_latency
from edgelat.predictors.train import train_device
from edgelat.workspace import Workspace

__all__ = ["ArchPrediction", "arch_kernels", "device_oracle", "measure_arch", "predict_archs", "refit_on_archs"]


def device_oracle(
    ws: Workspace,
    device: str,
    space: SearchSpace,
    recipe: str | None = None,
    on_block: Callable[[int, int], None] | None = None,
    model: DeviceLatencyModel | None = None,
) -> BlockOracle:
    """A block oracle pricing ``space`` with ``device``'s trained kernel predictors (``model``, if already loaded)."""
    model = model or load_model(ws, device, recipe)
    tag = hashlib.sha256((ws.model_dir(device, model.recipe) / "meta.json").read_bytes()).hexdigest()[:12]
    cache = ws.oracle_dir(device, model.recipe) / f"{space.name}-{tag}-groups{ADAPT_GROUPS_VERSION}.json"
    return BlockOracle(space, module_latency(model), cache, on_block)


@dataclass
class ArchPrediction:
    """One architecture of a space priced block by block (see :class:`BlockOracle`)."""

    arch: str
    device: str
    recipe: str
    total_ms: float
    blocks: list[tuple[str, float]]
    # Milliseconds of the total priced by the fallback model (kernels of kinds without a model).
    fallback_ms: float

    def as_dict(self) -> dict[str, Any]:
        return {
            "arch": self.arch,
            "device": self.device,
            "recipe": self.recipe,
            "total_ms": self.total_ms,
            "fallback_ms": self.fallback_ms,
            "blocks": [{"block": key, "ms": ms} for key, ms in self.blocks],
        }


def predict_archs(
    ws: Workspace,
    device: str,
    space: SearchSpace,
    archs: Sequence[str],
    *,
    recipe: str | None = None,
    strict: bool = False,
    on_block: Callable[[int, int], None] | None = None,
) -> list[ArchPrediction]:
    """Many architectures of ``space`` at once: the models load once, and each distinct block is priced once
    (and cached in the workspace for later calls), so the cost grows with the blocks, not the architectures.

    Block sums can differ slightly from a whole-network prediction where a kernel fuses across a block seam
    (NB201: 0-6%); ``predict`` with one ``--arch`` prices the whole network.
    """
    from edgelat.predictors.train import FALLBACK

    for line, arch in enumerate(archs, start=1):
        try:
            space.blocks(arch)
        except UsageError as exc:
            raise UsageError(f"architecture {line}: {exc}") from None
    model = load_model(ws, device, recipe)
    oracle = device_oracle(ws, device, space, model=model, on_block=on_block)
    totals = oracle.predict(archs)
    out = []
    for arch, total in zip(archs, totals, strict=True):
        fallback = sum(oracle.blocks[k].get(FALLBACK, 0.0) for k in space.blocks(arch))
        out.append(ArchPrediction(arch, device, model.recipe, float(total), oracle.breakdown(arch), float(fallback)))
    if strict and (priced := [p for p in out if p.fallback_ms > 0]):
        raise UsageError(
            f"{len(priced)} of {len(out)} architectures have kernels without a model of their kind on {device} (priced by the "
            f"fallback model); `edgelat predict {device} --space {space.name} --arch ARCH --strict` names the kinds to profile"
        )
    return out


def _example(space: SearchSpace, arch: str) -> Any:
    import torch

    return torch.randn(*space.input_shape(arch), generator=torch.Generator().manual_seed(0))


def measure_arch(ws: Workspace, device: str, space: SearchSpace, arch: str, recipe: str | None = None) -> float:
    """Median end-to-end milliseconds of ``arch`` built with TVM and timed on ``device`` (stored in the workspace)."""
    from edgelat.ops.network import relax_from_torch
    from edgelat.predictors.train import default_recipe
    from edgelat.profiler.e2e import measure_network

    recipe = recipe or default_recipe(ws, device)
    mod = relax_from_torch(space.build(arch), _example(space, arch))
    return measure_network(ws, device, mod, name=f"{space.name}:{arch}", recipe=recipe, per_kernel=False, reuse=True).median_ms


def arch_kernels(space: SearchSpace, arch: str) -> list[tuple[str, dict[str, Any]]]:
    """The (op, config) of every kernel ``arch`` runs that a registered kind covers."""
    from edgelat.ops.network import network_kernels, relax_from_torch

    kernels = network_kernels(relax_from_torch(space.build(arch), _example(space, arch)))
    return [(k.op, k.config) for k in kernels if k.op is not None and k.config is not None]


def refit_on_archs(ws: Workspace, device: str, space: SearchSpace, archs: Sequence[str], recipe: str | None = None) -> int:
    """Profile every kernel of ``archs`` on ``device`` and retrain its predictors; returns the kernels profiled."""
    from edgelat.predictors.train import default_recipe
    from edgelat.profiler.campaign import ProfileConfig, profile

    recipe = recipe or default_recipe(ws, device)
    configs = tuple(kc for arch in archs for kc in arch_kernels(space, arch))
    if configs:
        profile(ws, device, ProfileConfig(configs=configs, recipe=recipe))
        train_device(ws, device, recipe)
    return len(configs)
