"""Device-side wiring of the search and pruning loops: the one place where nas meets predictors and profiler.

``edgelat.nas`` takes a latency oracle, a measure function and a refit function as arguments;
this module builds them for a device of the inventory:

- the oracle prices a space's blocks with the device's kernel predictor and caches them per
  trained model (``<workspace>/oracle/<device>/<recipe>/<space>-<model hash>.json``);
- measure builds an architecture with TVM and times it on the device through the agent;
- refit profiles the kernels of the architectures whose prediction was off, exactly as the
  network runs them, adds them to the device's data and retrains its predictors.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgelat.errors import UsageError
from edgelat.nas.oracle import BlockOracle
from edgelat.nas.search import Verified, VerifiedSearch, search_and_verify
from edgelat.nas.spaces import SearchSpace, get_space
from edgelat.ops.registry import ADAPT_GROUPS_VERSION
from edgelat.predictors.adapt import Adapter
from edgelat.predictors.predict import DeviceLatencyModel, load_model, module_latency
from edgelat.predictors.train import train_device
from edgelat.workspace import Workspace

# Architectures the ensemble proxy places others among.
ENSEMBLE_REFERENCE = 32

__all__ = [
    "AdaptReport",
    "DevicePrune",
    "DeviceSearch",
    "ArchPrediction",
    "adapt_device",
    "arch_kernels",
    "device_oracle",
    "load_factory",
    "load_pruned",
    "measure_arch",
    "predict_archs",
    "prune_device",
    "refit_on_archs",
    "search_device",
    "search_then_prune",
    "source_features",
]


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


@dataclass
class DeviceSearch:
    result: VerifiedSearch
    paths: dict[str, str]
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        chosen = self.result.chosen
        return {
            "arch": chosen.arch if chosen else None,
            "predicted_ms": chosen.predicted_ms if chosen else None,
            "measured_ms": chosen.measured_ms if chosen else None,
            "onnx": self.paths.get("onnx"),
            "budget_ms": self.result.budget_ms,
            "met_budget": chosen is not None,
            "rounds": self.result.rounds,
            "refits": self.result.refits,
            "seconds": self.seconds,
            "out_dir": str(Path(self.paths["best_json"]).parent),
            "verified": self.result.as_dict()["verified"],
        }


def search_device(
    ws: Workspace,
    device: str,
    space_name: str,
    budget_ms: float,
    *,
    proxy: str = "ensemble",
    recipe: str | None = None,
    population: int = 32,
    generations: int = 20,
    time_limit_s: float | None = None,
    rounds: int = 3,
    top_k: int = 3,
    seed: int = 0,
    out_dir: str | Path | None = None,
    on_block: Callable[[int, int], None] | None = None,
    on_generation: Callable[[int, int], None] | None = None,
    on_verified: Callable[[Verified], None] | None = None,
) -> DeviceSearch:
    """The best architecture of ``space_name`` under ``budget_ms`` on ``device``, verified there.

    Searches with the device's predictor as the oracle and ``proxy`` as the accuracy score,
    measures the top picks, refits the predictor on picks it mispredicted, and repeats (see
    :func:`edgelat.nas.search.search_and_verify`). Writes the outputs of
    :func:`edgelat.nas.report.write_search_outputs` into ``out_dir``.
    """
    from edgelat.nas.proxies import ProxyScorer
    from edgelat.nas.report import write_search_outputs
    from edgelat.predictors.train import default_recipe

    start = time.time()
    space = get_space(space_name)
    recipe = recipe or default_recipe(ws, device)
    load_model(ws, device, recipe)  # a clear error before anything else when there is no model
    reference_rng = np.random.default_rng([seed, 1])
    reference = [space.sample(reference_rng) for _ in range(ENSEMBLE_REFERENCE)] if proxy == "ensemble" else []
    scorer = ProxyScorer(proxy, space.build, space.proxy_input_shape, reference=reference)
    if rounds < 1 or top_k < 1:
        raise UsageError("--rounds and --top-k must be at least 1")
    result = search_and_verify(
        space,
        lambda: device_oracle(ws, device, space, recipe, on_block),
        scorer.score,
        budget_ms,
        lambda arch: measure_arch(ws, device, space, arch, recipe),
        lambda archs: refit_on_archs(ws, device, space, archs, recipe),
        rounds=rounds,
        top_k=top_k,
        on_verified=on_verified,
        population=population,
        generations=generations,
        time_limit_s=time_limit_s,
        seed=seed,
        on_generation=on_generation,
    )
    out = Path(out_dir) if out_dir else ws.run_dir("searches", device, f"{space.name}-{budget_ms:g}ms")
    info = {"device": device, "recipe": recipe, "proxy": proxy, "population": population, "generations": generations, "seed": seed}
    paths = write_search_outputs(space, result, out, info)
    return DeviceSearch(result, paths, time.time() - start)


@dataclass
class AdaptReport:
    device: str
    source: str
    adapter: Adapter
    path: str
    networks: int

    def as_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return {"device": self.device, "source": self.source, "networks": self.networks, "model": self.path, **asdict(self.adapter)}


def source_features(ws: Workspace, source: str, frame: Any, space: SearchSpace | None) -> list[dict[str, float]]:
    """The source device's predicted milliseconds per kernel group (and kernel count) of each network of ``frame``.

    ``frame`` is :func:`edgelat.datasets.tables.load_latency_csv`'s output: ``arch`` rows go
    through the space's block oracle, ``onnx`` rows through the full network-to-kernels pipeline.
    """
    from edgelat.ops.network import network_kernels, relax_from_onnx
    from edgelat.predictors.predict import grouped_ms, predict_kernels

    if "arch" in frame.columns:
        assert space is not None
        oracle = device_oracle(ws, source, space)
        archs = list(frame["arch"])
        oracle.price_blocks([k for a in archs for k in space.blocks(a)])
        groups = sorted({g for price in oracle.blocks.values() for g in price})
        return [dict(zip(groups, row, strict=True)) for row in oracle.features(archs, groups)]
    model = load_model(ws, source)
    features = []
    for i, path in enumerate(frame["onnx"]):
        try:
            features.append(grouped_ms(predict_kernels(model, network_kernels(relax_from_onnx(path)))))
        except UsageError as exc:
            raise UsageError(f"network {i + 1} ({path}): {exc}") from None
    return features


def adapt_device(ws: Workspace, device: str, source: str, measurements: str | Path, space_name: str | None = None) -> AdaptReport:
    """Create (or refit) ``device`` from end-to-end measurements and ``source``'s kernel predictors."""
    from edgelat.datasets.tables import load_latency_csv
    from edgelat.predictors.adapt import fit_adapter, save_adapter
    from edgelat.profiler.inventory import add_adapted_device, get_device

    if device == source:
        raise UsageError("the new device and the source device must differ")
    if get_device(ws, source).is_adapted or ws.adapter_file(source).exists():
        raise UsageError(f"the source device {source} is itself adapted; adapt from a profiled device")
    source_model = load_model(ws, source)  # a clear error when the source has no models
    space = get_space(space_name) if space_name else None
    frame = load_latency_csv(measurements, space)
    features = source_features(ws, source, frame, space)
    adapter = fit_adapter(features, frame["latency_ms"].to_numpy(), source, source_model.recipe)
    add_adapted_device(ws, device)
    path = save_adapter(ws, device, adapter)
    return AdaptReport(device, source, adapter, str(path), len(frame))


def load_factory(spec: str) -> Any:
    """A ``torch.nn.Module`` from ``path/to/module.py:function`` (called with no arguments) or a zoo model name."""
    import importlib.util

    from edgelat.datasets.zoo import create_model, list_models

    if spec in list_models():
        return create_model(spec, num_classes=10)
    path, sep, name = spec.rpartition(":")
    if not sep or not path.endswith(".py"):
        if spec.endswith(".onnx"):
            raise UsageError(
                f"{spec}: pruning needs the torch module, not its ONNX graph (no ONNX-to-torch converter imports beside "
                "this torch); pass path/to/module.py:function returning the nn.Module"
            )
        raise UsageError(f"{spec!r} is neither path/to/module.py:function nor a zoo model (see `edgelat zoo list`)")
    file = Path(path)
    if not file.exists():
        raise UsageError(f"no such file: {file}")
    module_spec = importlib.util.spec_from_file_location(f"edgelat_user_{file.stem}", file)
    assert module_spec is not None and module_spec.loader is not None
    user = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(user)
    factory = getattr(user, name, None)
    if not callable(factory):
        raise UsageError(f"{file} has no function {name!r}")
    model = factory()
    import torch

    if not isinstance(model, torch.nn.Module):
        raise UsageError(f"{spec} returned a {type(model).__name__}, not a torch.nn.Module")
    return model


@dataclass
class DevicePrune:
    result: Any
    paths: dict[str, str]

    def as_dict(self) -> dict[str, Any]:
        r = self.result
        return {
            "onnx": self.paths["onnx"], "state": self.paths["state"], "structure": self.paths["structure"], "predicted_ms": r.predicted_ms, "measured_ms": r.measured_ms,
            "baseline_ms": r.baseline_measured_ms, "baseline_predicted_ms": r.baseline_predicted_ms, "target_ms": r.target_ms,
            "accuracy": r.accuracy, "baseline_accuracy": r.baseline_accuracy, "steps": len(r.steps), "seconds": r.seconds,
            "out_dir": str(Path(self.paths["onnx"]).parent),
        }  # fmt: skip


def prune_device(
    ws: Workspace,
    device: str,
    model: Any,
    *,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    target_ms: float | None = None,
    speedup: float | None = None,
    recipe: str | None = None,
    importance: str = "magnitude",
    steps: int = 8,
    pretrain_steps: int = 200,
    finetune_steps: int = 30,
    out_dir: str | Path | None = None,
    on_step: Callable[[Any], None] | None = None,
) -> DevicePrune:
    """Prune ``model`` until it runs in ``target_ms`` (or ``speedup`` times faster) on ``device``, measured there.

    Fine-tunes on :class:`edgelat.datasets.digits.DigitsTask` at the input resolution (after
    ``pretrain_steps`` of training, for a model that arrives untrained). Writes the pruned
    model (ONNX; a state dict and its structure as JSON, see :func:`load_pruned`), the steps (CSV, PNG) and a report.
    """
    import torch

    from edgelat.datasets.digits import DigitsTask, train
    from edgelat.nas.prune import prune_to_latency
    from edgelat.ops.network import relax_from_torch
    from edgelat.predictors.predict import NetworkPricer
    from edgelat.predictors.train import default_recipe
    from edgelat.profiler.e2e import measure_network

    if (target_ms is None) == (speedup is None):
        raise UsageError("give exactly one of --target-ms and --speedup")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or shape[2] != shape[3] or shape[1] != 3:
        raise UsageError(f"pruning fine-tunes on square 3-channel images: --input-shape must be 1,3,H,H, got {shape}")
    recipe = recipe or default_recipe(ws, device)
    pricer = NetworkPricer(load_model(ws, device, recipe))
    factory = _factory_reference(model)
    model = load_factory(model) if isinstance(model, str) else model
    task = DigitsTask(resolution=shape[2])
    torch.manual_seed(0)
    train(model, task, pretrain_steps)
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))

    def measure(module: Any) -> float:
        mod = relax_from_torch(module, example)
        return measure_network(ws, device, mod, name="prune", recipe=recipe, per_kernel=False).median_ms

    baseline_ms = None
    if speedup is not None:
        if not speedup > 1:
            raise UsageError(f"--speedup must be above 1, got {speedup}")
        baseline_ms = measure(model)
        target_ms = baseline_ms / speedup
    assert target_ms is not None
    result = prune_to_latency(
        model, example, target_ms, pricer, task=task, measure=measure, importance=importance, steps=steps,
        finetune_steps=finetune_steps, on_step=on_step, baseline_ms=baseline_ms,
    )  # fmt: skip
    out = Path(out_dir) if out_dir else ws.run_dir("pruned", device, f"{target_ms:.3g}ms")
    return DevicePrune(result, _write_prune_outputs(result, example, out, factory))


def _factory_reference(model: Any) -> str | None:
    """How to build ``model`` again: a zoo name, or path/to/module.py:function made absolute; None for a module object."""
    if not isinstance(model, str):
        return None
    path, sep, name = model.rpartition(":")
    return f"{Path(path).resolve()}:{name}" if sep and path.endswith(".py") else model


def load_pruned(folder: str | Path, factory: Callable[[], Any] | None = None) -> Any:
    """The pruned torch module saved in ``folder`` by ``prune``: the unpruned model from its factory (the one recorded
    in ``pruned.json``, or ``factory``), reshaped and loaded with the pruned weights."""
    import json

    import torch

    from edgelat.nas.prune import rebuild_pruned

    folder = Path(folder)
    try:
        saved = json.loads((folder / "pruned.json").read_text())
        state = torch.load(folder / "pruned_state.pt", weights_only=True)
    except (OSError, ValueError, RuntimeError) as exc:
        raise UsageError(f"{folder} holds no pruned network saved by `edgelat prune` ({exc})") from None
    if factory is None and saved.get("factory") is None:
        raise UsageError(f"{folder}: the network was pruned from a module object; pass the factory that built it")
    model = factory() if factory is not None else load_factory(saved["factory"])
    return rebuild_pruned(model, saved["structure"], state).eval()


def _write_prune_outputs(result: Any, example: Any, out: Path, factory: str | None) -> dict[str, str]:
    import json

    import pandas as pd
    import torch

    from edgelat.datasets.zoo import export_module_onnx
    from edgelat.nas.prune import pruned_structure

    out.mkdir(parents=True, exist_ok=True)
    model = result.model.eval()
    paths = {"onnx": str(export_module_onnx(model, tuple(example.shape), out / "pruned.onnx"))}
    # Weights as a plain state dict (loads with weights_only=True) and the structure as JSON: no pickled module.
    torch.save(model.state_dict(), out / "pruned_state.pt")
    (out / "pruned.json").write_text(json.dumps({"factory": factory, "input_shape": list(example.shape), "structure": pruned_structure(model)}))
    paths["state"] = str(out / "pruned_state.pt")
    paths["structure"] = str(out / "pruned.json")
    rows = [{"step": 0, "layer": "", "removed": 0, "predicted_ms": result.baseline_predicted_ms, "accuracy": result.baseline_accuracy,
             "measured_ms": result.baseline_measured_ms}] + [s.__dict__ for s in result.steps]  # fmt: skip
    pd.DataFrame(rows).to_csv(out / "steps.csv", index=False)
    paths["steps"] = str(out / "steps.csv")
    paths["plot"] = str(_plot_prune(rows, result.target_ms, out / "steps.png"))
    summary = {k: v for k, v in result.__dict__.items() if k not in ("model", "steps")}
    (out / "result.json").write_text(json.dumps(summary, indent=2))
    lines = [
        f"# Pruning to {result.target_ms:.3g} ms",
        "",
        "| step | layer | removed | predicted ms | measured ms | accuracy % |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        meas = f"{r['measured_ms']:.3f}" if r["measured_ms"] is not None else ""
        acc = f"{r['accuracy']:.1f}" if r["accuracy"] is not None else ""
        lines.append(f"| {r['step']} | {r['layer']} | {r['removed']} | {r['predicted_ms']:.3f} | {meas} | {acc} |")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    paths["report"] = str(out / "report.md")
    return paths


def _plot_prune(rows: list[dict[str, Any]], target_ms: float, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    ax.plot(steps, [r["predicted_ms"] for r in rows], "o-", label="predicted ms")
    measured = [(r["step"], r["measured_ms"]) for r in rows if r["measured_ms"] is not None]
    if measured:
        ax.plot(*zip(*measured, strict=True), "x", c="tab:red", ms=9, label="measured ms")
    ax.axhline(target_ms, ls="--", c="k", lw=1, label=f"target {target_ms:.3g} ms")
    ax.set_xlabel("pruning step")
    ax.set_ylabel("latency (ms)")
    if any(r["accuracy"] is not None for r in rows):
        ax2 = ax.twinx()
        ax2.plot(steps, [r["accuracy"] for r in rows], "s-", c="tab:green", ms=3, label="accuracy %")
        ax2.set_ylabel("accuracy (%)")
        ax2.legend(loc="upper right", fontsize=8)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def search_then_prune(
    ws: Workspace,
    device: str,
    space_name: str,
    budget_ms: float,
    *,
    looser: float = 1.3,
    proxy: str = "ensemble",
    recipe: str | None = None,
    population: int = 32,
    generations: int = 20,
    rounds: int = 3,
    top_k: int = 3,
    seed: int = 0,
    train_steps: int = 200,
    finetune_steps: int = 30,
    prune_steps: int = 8,
    out_dir: str | Path | None = None,
    on_step: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Two routes to ``budget_ms``, side by side: search alone, and search at ``looser`` x the budget then prune.

    Both winners are trained on the digits task for the same number of steps (the pruned one's
    training is split into its pre-training and its fine-tuning), then compared by measured
    latency, parameters and validation accuracy. Writes ``routes.json`` and each route's outputs.
    """
    import torch

    from edgelat.datasets.digits import DigitsTask, train

    if not looser > 1:
        raise UsageError(f"--looser must be above 1, got {looser}")
    out = (
        Path(out_dir)
        if out_dir
        else ws.run_dir("searches", device, f"{space_name}-{budget_ms:g}ms-then-prune")
    )
    space = get_space(space_name)
    common = dict(proxy=proxy, recipe=recipe, population=population, generations=generations, rounds=rounds, top_k=top_k, seed=seed)
    routes: dict[str, Any] = {"budget_ms": budget_ms, "looser": looser}

    def trained(arch: str) -> dict[str, Any]:
        """Params and digits accuracy of ``arch`` after as many training steps as a pruned route gets."""
        task = DigitsTask(space.input_shape(arch)[2])
        torch.manual_seed(0)
        model = train(space.build(arch), task, train_steps + prune_steps * finetune_steps)
        return {"params": sum(p.numel() for p in model.parameters()), "accuracy": task.evaluate(model)}

    try:
        alone: DeviceSearch | None = search_device(ws, device, space_name, budget_ms, out_dir=out / "search-alone", **common)  # type: ignore[arg-type]
    except UsageError as exc:  # e.g. nothing in the space is predicted to fit: pruning may still get there
        alone = None
        routes["search_alone"] = {"error": str(exc)}
    loose = search_device(ws, device, space_name, budget_ms * looser, out_dir=out / "search-looser", **common)  # type: ignore[arg-type]
    if alone is not None and alone.result.chosen is not None:
        arch = alone.result.chosen.arch
        routes["search_alone"] = {"arch": arch, "measured_ms": alone.result.chosen.measured_ms, **trained(arch)}
    if loose.result.chosen is None:
        raise UsageError(f"no verified network met the looser budget {budget_ms * looser:g} ms; nothing to prune")
    arch = loose.result.chosen.arch
    if loose.result.chosen.measured_ms <= budget_ms:  # the looser search's winner already fits: nothing to prune
        routes["search_then_prune"] = {"arch": arch, "searched_ms": loose.result.chosen.measured_ms, "measured_ms": loose.result.chosen.measured_ms,
                                       **trained(arch), "onnx": loose.paths.get("onnx"), "pruned": False}  # fmt: skip
    else:
        pruned = prune_device(
            ws, device, space.build(arch), input_shape=space.input_shape(arch), target_ms=budget_ms, recipe=recipe,
            steps=prune_steps, pretrain_steps=train_steps, finetune_steps=finetune_steps, out_dir=out / "pruned", on_step=on_step,
        )  # fmt: skip
        r = pruned.result
        routes["search_then_prune"] = {"arch": arch, "searched_ms": loose.result.chosen.measured_ms, "measured_ms": r.measured_ms,
                                       "params": sum(p.numel() for p in r.model.parameters()), "accuracy": r.accuracy,
                                       "onnx": pruned.paths["onnx"], "pruned": True}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    import json

    (out / "routes.json").write_text(json.dumps(routes, indent=2))
    routes["out_dir"] = str(out)
    return routes
