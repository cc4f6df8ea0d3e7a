"""A search space on a device: the latency oracle (block prices from the device's kernel models, cached per
trained model in ``<workspace>/oracle/<device>/<recipe>/``), measuring an architecture built with TVM on the
device, refitting the models on the kernels of architectures they mispredicted, and many architectures at once."""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import inspect
import json
import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

import edgelat
from edgelat.errors import UsageError
from edgelat.files import write_text_atomic
from edgelat.nas.oracle import BlockOracle
from edgelat.nas.search import Measured
from edgelat.nas.spaces import SearchSpace
from edgelat.predictors.context import CacheContext, models_tag
from edgelat.predictors.results import ArchPrediction
from edgelat.workspace import Workspace

if TYPE_CHECKING:
    from edgelat.ops.network import KernelRecord
    from edgelat.predictors.model import DeviceLatencyModel

# TVM, torch and the predictors are imported where they are needed: pricing architectures whose blocks
# are all cached needs none of them (seconds of imports saved on every call).

__all__ = [
    "ArchPrediction",
    "arch_kernels",
    "block_kernels",
    "device_oracle",
    "measure_arch",
    "model_recipe",
    "predict_archs",
    "refit_on_archs",
]

log = logging.getLogger(__name__)


@functools.cache
def _import_digest() -> str:
    """Changes whenever a network's import, fusion and matching could give other kernels: the TVM and torch
    versions, or the source of :mod:`edgelat.ops` (read as files: importing it would import TVM)."""
    digest = hashlib.sha256("|".join(importlib.metadata.version(p) for p in ("apache-tvm", "torch")).encode())
    for source in sorted((Path(edgelat.__file__).parent / "ops").glob("*.py")):
        digest.update(source.name.encode() + source.read_bytes())
    return digest.hexdigest()


def _blocks_version(space: SearchSpace) -> str:
    """Changes when a block's kernels or their groups could: the import pipeline or the space's code."""
    source = Path(inspect.getfile(type(space))).read_bytes()
    return hashlib.sha256(_import_digest().encode() + source).hexdigest()[:12]


def block_kernels(
    ws: Workspace, space: SearchSpace, keys: Sequence[str], on_block: Callable[[int, int], None] | None = None
) -> dict[str, list[KernelRecord]]:
    """The kernels each block of ``space`` runs, imported, fused and matched once per workspace and kept.

    They belong to no device and no model (any device's model prices them), so a retrained model, an
    adapted device or another device reuses them; only the models' arithmetic is left to do.
    """
    from edgelat.ops.network import KernelRecord, network_kernels
    from edgelat.predictors.predict import load_network

    def kernels(key: str) -> list[dict[str, Any]]:
        module, shape = space.build_block(key)
        return [k.record().as_dict() for k in network_kernels(load_network(module, example=_block_example(shape)))]

    kept = _per_block(ws.block_kernels_file(space.name, _blocks_version(space)), keys, kernels, on_block)
    return {key: [KernelRecord.from_dict(d) for d in kept[key]] for key in keys}


def block_footprints(
    ws: Workspace, space: SearchSpace, keys: Sequence[str], on_block: Callable[[int, int], None] | None = None
) -> dict[str, dict[str, float]]:
    """Each block's weights and planned activations in MB (:mod:`edgelat.ops.footprint`; ``PARAMS_MB`` and
    ``ACTIVATION_MB``), found once per workspace and kept, as :func:`block_kernels` keeps the kernels."""
    from edgelat.nas.oracle import ACTIVATION_MB, PARAMS_MB
    from edgelat.ops.footprint import network_footprint
    from edgelat.predictors.predict import load_network

    def footprint(key: str) -> dict[str, float]:
        module, shape = space.build_block(key)
        f = network_footprint(load_network(module, example=_block_example(shape)))
        return {PARAMS_MB: f.params_mb, ACTIVATION_MB: f.activation_mb}

    kept = _per_block(ws.block_kernels_file(f"{space.name}-footprints", _blocks_version(space)), keys, footprint, on_block)
    return {key: kept[key] for key in keys}


def _per_block(path: Path, keys: Sequence[str], find: Callable[[str], Any], on_block: Callable[[int, int], None] | None) -> dict[str, Any]:
    """What ``find`` says of each block key, kept in ``path`` (JSON): found only for keys not kept yet."""
    kept: dict[str, Any] = {}
    if path.exists():
        try:
            kept = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            log.warning("%s unreadable (%s): found again", path, exc)
    todo = sorted(set(keys) - kept.keys())
    for i, key in enumerate(todo):
        kept[key] = find(key)
        if on_block is not None:
            on_block(i + 1, len(todo))
        if (i + 1) % 50 == 0 or i + 1 == len(todo):
            write_text_atomic(path, json.dumps(kept))
    return kept


def _block_example(shape: Any) -> Any:
    import torch

    gen = torch.Generator().manual_seed(0)
    example = tuple(torch.randn(*s, generator=gen) for s in (shape if isinstance(shape, list) else [shape]))
    return example[0] if len(example) == 1 else example


def device_oracle(
    ws: Workspace,
    device: str,
    space: SearchSpace,
    recipe: str | None = None,
    on_block: Callable[[int, int], None] | None = None,
    model: DeviceLatencyModel | None = None,
) -> BlockOracle:
    """A block oracle pricing ``space`` with ``device``'s trained kernel predictors (``model``, if already loaded;
    else loaded when a block is not yet priced).

    Block prices are cached per trained model; the kernels they are priced from, for any model
    (:func:`block_kernels`). On a device with a fitted cache context (:mod:`edgelat.predictors.context`) an
    architecture is placed between its blocks' two sums by its footprint (:func:`block_footprints`), as
    ``predict`` places a network.
    """
    if model is None and ws.adapter_file(device).exists():
        from edgelat.predictors.predict import load_model

        model = load_model(ws, device, recipe)
    recipe = model.recipe if model is not None else model_recipe(ws, device, recipe)
    folder = ws.model_dir(device, recipe)
    tag = models_tag(folder)
    if not tag:
        raise UsageError(f"{device} has no trained {recipe} models: run `edgelat train {device}` first")
    context = (model.context if model.in_context else None) if model is not None else _saved_context(folder, tag)
    # Blocks priced for a context carry more than the ones without: kept apart.
    cache = ws.oracle_dir(device, recipe) / f"{space.name}-{tag}-{_blocks_version(space)}{'-far' if context else ''}.json"
    loaded: list[DeviceLatencyModel] = [model] if model is not None else []

    def blocks_ms(keys: Sequence[str]) -> dict[str, dict[str, float]]:
        from edgelat.nas.oracle import FAR_MS
        from edgelat.predictors.model import far_ms, grouped_ms, predict_kernels
        from edgelat.predictors.predict import load_model

        if not loaded:
            loaded.append(load_model(ws, device, recipe))
        model = loaded[0]
        kernels = block_kernels(ws, space, keys, on_block)
        prices = {key: grouped_ms(predict_kernels(model, ks)) for key, ks in kernels.items()}
        if context is not None and model.far is not None:
            for key, footprint in block_footprints(ws, space, keys, on_block).items():
                prices[key].update({FAR_MS: far_ms(model, kernels[key]), **footprint})
        return prices

    return BlockOracle(space, cache_file=cache, blocks_ms=blocks_ms, share=context.share if context is not None else None)


def _saved_context(folder: Path, tag: str) -> CacheContext | None:
    """The cache context saved with the models in ``folder`` (tagged ``tag``), where they have far models; else None."""
    from edgelat.predictors import CONTEXT_FILE, FAR

    try:
        far = isinstance(json.loads((folder / "meta.json").read_text()).get(FAR), dict)
    except (OSError, ValueError, AttributeError):
        return None
    return CacheContext.load(folder / CONTEXT_FILE, tag) if far else None


def model_recipe(ws: Workspace, device: str, recipe: str | None = None) -> str:
    """The recipe of the models that price ``device`` (``recipe``, its adapter's, or its measurements' default),
    found without loading a model."""
    if ws.adapter_file(device).exists():
        from edgelat.predictors.predict import load_model

        return load_model(ws, device, recipe).recipe
    from edgelat.profiler.inventory import default_recipe

    return recipe or default_recipe(ws, device)


def predict_archs(
    ws: Workspace,
    device: str,
    space: SearchSpace,
    archs: Sequence[str],
    *,
    recipe: str | None = None,
    strict: bool = False,
    on_block: Callable[[int, int], None] | None = None,
    oracle: BlockOracle | None = None,
) -> list[ArchPrediction]:
    """Many architectures of ``space`` at once: the models load once, and each distinct block is priced once
    (and cached in the workspace for later calls), so the cost grows with the blocks, not the architectures.

    Block sums can differ slightly from a whole-network prediction where a kernel fuses across a block seam
    (NB201: 0-6%); ``predict`` with one ``--arch`` prices the whole network. ``oracle``: the device's
    oracle for ``space``, when already made (a service keeps it).
    """
    from edgelat.predictors import FALLBACK

    for line, arch in enumerate(archs, start=1):
        try:
            space.blocks(arch)
        except UsageError as exc:
            raise UsageError(f"architecture {line}: {exc}") from None
    recipe = model_recipe(ws, device, recipe)
    oracle = oracle or device_oracle(ws, device, space, recipe, on_block=on_block)
    totals = oracle.predict(archs)
    out = []
    for arch, total in zip(archs, totals, strict=True):
        fallback = sum(oracle.blocks[k].get(FALLBACK, 0.0) for k in space.blocks(arch))
        out.append(ArchPrediction(arch, device, recipe, float(total), oracle.breakdown(arch), float(fallback)))
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
    return measure_arch_lightness(ws, device, space, arch, recipe).ms


def measure_arch_lightness(ws: Workspace, device: str, space: SearchSpace, arch: str, recipe: str | None = None) -> Measured:
    """``arch`` built with TVM and measured on ``device``: latency, peak memory and library size (stored)."""
    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler.e2e import measure_network
    from edgelat.profiler.inventory import default_recipe

    recipe = recipe or default_recipe(ws, device)
    mod = relax_from_torch(space.build(arch), _example(space, arch))
    m = measure_network(ws, device, mod, name=f"{space.name}:{arch}", recipe=recipe, per_kernel=False, reuse=True)
    return Measured(m.median_ms, m.peak_memory_mb, m.size_mb)


def arch_lightness(ws: Workspace, device: str, space: SearchSpace) -> Callable[[Sequence[str]], np.ndarray]:
    """Predicted (peak memory MB, library MB) of architectures of ``space`` on ``device``: each one's footprint
    (:mod:`edgelat.ops.footprint`, computed once per architecture) through the device's memory model,
    fitted on its measured networks now."""
    from edgelat.ops.footprint import network_footprint
    from edgelat.ops.network import relax_from_torch
    from edgelat.predictors.memory import MemoryModel

    model = MemoryModel.for_device(ws, device)
    if model.runtime_mb is None:
        raise UsageError(f"{device} has no network measured with its memory yet: measure one (edgelat measure) before limiting memory")
    cache: dict[str, tuple[float, float]] = {}

    def predict(archs: Sequence[str]) -> np.ndarray:
        for arch in archs:
            if arch not in cache:
                p = model.predict(network_footprint(relax_from_torch(space.build(arch), _example(space, arch))))
                cache[arch] = (float("nan") if p.memory_mb is None else p.memory_mb, p.size_mb)
        return np.array([cache[a] for a in archs])

    return predict


def arch_kernels(space: SearchSpace, arch: str) -> list[tuple[str, dict[str, Any]]]:
    """The (op, config) of every kernel ``arch`` runs that a registered kind covers."""
    from edgelat.ops.network import network_kernels, relax_from_torch

    kernels = network_kernels(relax_from_torch(space.build(arch), _example(space, arch)))
    return [(k.op, k.config) for k in kernels if k.op is not None and k.config is not None]


def refit_on_archs(ws: Workspace, device: str, space: SearchSpace, archs: Sequence[str], recipe: str | None = None) -> int:
    """Profile every kernel of ``archs`` on ``device`` and retrain its predictors; returns the kernels profiled."""
    from edgelat.profiler.campaign import ProfileConfig, profile
    from edgelat.profiler.fleet import profile_group
    from edgelat.profiler.inventory import default_recipe, get_device

    recipe = recipe or default_recipe(ws, device)
    configs = tuple(kc for arch in archs for kc in arch_kernels(space, arch))
    if configs:
        from edgelat.predictors.train import train_device

        cfg = ProfileConfig(configs=configs, recipe=recipe)
        if get_device(ws, device).is_group:
            profile_group(ws, get_device(ws, device), cfg)
        else:
            profile(ws, device, cfg)
        train_device(ws, device, recipe)
    return len(configs)
