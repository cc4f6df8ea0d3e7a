"""Pruning on a device: the NetAdapt loop of :mod:`edgelat.nas.prune` priced by the device's predictor and
measured on the device; the pruned network saved without pickles (:func:`load_pruned`)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelat.errors import UsageError
from edgelat.predictors.predict import load_model
from edgelat.workspace import Workspace

__all__ = ["DevicePrune", "PruneOptions", "load_factory", "load_pruned", "prune_device"]


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
            "memory_limit_mb": r.memory_limit_mb, "baseline_memory_mb": r.baseline_measured_memory_mb, "measured_memory_mb": r.measured_memory_mb,
            "predicted_memory_mb": r.predicted_memory_mb,
            "out_dir": str(Path(self.paths["onnx"]).parent),
        }  # fmt: skip


@dataclass(frozen=True)
class PruneOptions:
    """How a pruning run goes, whoever starts it (the CLI, search-then-prune, Python)."""

    # Compile recipe whose measurements price and verify the cuts (default: the device's).
    recipe: str | None = None
    # Channel importance, a name of edgelat.nas.IMPORTANCES.
    importance: str = "magnitude"
    # Pruning steps, and training steps before the first and after each one (digits task).
    steps: int = 8
    pretrain_steps: int = 200
    finetune_steps: int = 30


def prune_device(
    ws: Workspace,
    device: str,
    model: Any,
    *,
    input_shape: Sequence[int] = (1, 3, 224, 224),
    target_ms: float | None = None,
    speedup: float | None = None,
    memory_mb: float | None = None,
    options: PruneOptions = PruneOptions(),
    out_dir: str | Path | None = None,
    on_step: Callable[[Any], None] | None = None,
) -> DevicePrune:
    """Prune ``model`` until it runs in ``target_ms`` (or ``speedup`` times faster) on ``device`` and, with
    ``memory_mb``, peaks within that much resident memory there (either limit alone will do), measured there.

    Fine-tunes on :class:`edgelat.datasets.digits.DigitsTask` at the input resolution (after
    ``pretrain_steps`` of training, for a model that arrives untrained). Writes the pruned
    model (ONNX; a state dict and its structure as JSON, see :func:`load_pruned`), the steps (CSV, PNG) and a report.
    """
    import torch

    from edgelat.datasets.digits import DigitsTask, train
    from edgelat.nas.prune import prune_to_latency
    from edgelat.nas.search import Measured
    from edgelat.ops.network import relax_from_torch
    from edgelat.predictors.memory import MemoryModel
    from edgelat.predictors.predict import NetworkMemoryPricer, NetworkPricer
    from edgelat.profiler.e2e import measure_network
    from edgelat.profiler.inventory import default_recipe

    if target_ms is not None and speedup is not None:
        raise UsageError("give one of --target-ms and --speedup, not both")
    if target_ms is None and speedup is None and memory_mb is None:
        raise UsageError("give a latency target (--target-ms or --speedup), a memory limit (--memory-mb) or both")
    if memory_mb is not None and not memory_mb > 0:
        raise UsageError(f"--memory-mb must be positive, got {memory_mb}")
    shape = tuple(int(s) for s in input_shape)
    if len(shape) != 4 or shape[2] != shape[3] or shape[1] != 3:
        raise UsageError(f"pruning fine-tunes on square 3-channel images: --input-shape must be 1,3,H,H, got {shape}")
    recipe = options.recipe or default_recipe(ws, device)
    pricer = NetworkPricer(load_model(ws, device, recipe))
    factory = _factory_reference(model)
    model = load_factory(model) if isinstance(model, str) else model
    task = DigitsTask(resolution=shape[2])
    torch.manual_seed(0)
    train(model, task, options.pretrain_steps)
    example = torch.randn(*shape, generator=torch.Generator().manual_seed(0))

    def measure(module: Any) -> Measured:
        m = measure_network(ws, device, relax_from_torch(module, example), name="prune", recipe=recipe, per_kernel=False)
        return Measured(m.median_ms, m.peak_memory_mb, m.size_mb)

    baseline = None
    if speedup is not None or memory_mb is not None:
        if speedup is not None and not speedup > 1:
            raise UsageError(f"--speedup must be above 1, got {speedup}")
        baseline = measure(model)
        if speedup is not None:
            target_ms = baseline.ms / speedup
    memory_pricer = None
    if memory_mb is not None:
        # Fitted after the baseline's measurement, which gives the device at least one network with its memory.
        memory_pricer = NetworkMemoryPricer(MemoryModel.for_device(ws, device))
    result = prune_to_latency(
        model, example, target_ms, pricer, memory_mb=memory_mb, memory_pricer=memory_pricer, task=task, measure=measure,
        importance=options.importance, steps=options.steps, finetune_steps=options.finetune_steps, on_step=on_step, baseline_ms=baseline,
    )  # fmt: skip
    label = "_".join(([f"{target_ms:.3g}ms"] if target_ms is not None else []) + ([f"{memory_mb:g}MB"] if memory_mb is not None else []))
    out = Path(out_dir) if out_dir else ws.run_dir("pruned", device, label)
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
    (out / "pruned.json").write_text(
        json.dumps({"factory": factory, "input_shape": list(example.shape), "structure": pruned_structure(model)})
    )
    paths["state"] = str(out / "pruned_state.pt")
    paths["structure"] = str(out / "pruned.json")
    rows = [{"step": 0, "layer": "", "removed": 0, "predicted_ms": result.baseline_predicted_ms, "accuracy": result.baseline_accuracy,
             "measured_ms": result.baseline_measured_ms, "predicted_memory_mb": result.baseline_predicted_memory_mb,
             "measured_memory_mb": result.baseline_measured_memory_mb}] + [s.__dict__ for s in result.steps]  # fmt: skip
    pd.DataFrame(rows).to_csv(out / "steps.csv", index=False)
    paths["steps"] = str(out / "steps.csv")
    paths["plot"] = str(_plot_prune(rows, result, out / "steps.png"))
    summary = {k: v for k, v in result.__dict__.items() if k not in ("model", "steps")}
    (out / "result.json").write_text(json.dumps(summary, indent=2))
    memory = result.memory_limit_mb is not None

    def cell(value: float | None, fmt: str) -> str:
        return "" if value is None else format(value, fmt)

    lines = [
        f"# Pruning to {_limits_text(result)}",
        "",
        "| step | layer | removed | predicted ms | measured ms |" + (" predicted MB | measured MB |" if memory else "") + " accuracy % |",
        "| --- | --- | --- | --- | --- |" + (" --- | --- |" if memory else "") + " --- |",
    ]
    for r in rows:
        mem = f" {cell(r['predicted_memory_mb'], '.1f')} | {cell(r['measured_memory_mb'], '.1f')} |" if memory else ""
        lines.append(f"| {r['step']} | {r['layer']} | {r['removed']} | {r['predicted_ms']:.3f} | {cell(r['measured_ms'], '.3f')} |{mem} "
                     f"{cell(r['accuracy'], '.1f')} |")  # fmt: skip
    (out / "report.md").write_text("\n".join(lines) + "\n")
    paths["report"] = str(out / "report.md")
    return paths


def _limits_text(result: Any) -> str:
    parts = [f"{result.target_ms:.3g} ms"] if result.target_ms is not None else []
    parts += [f"{result.memory_limit_mb:g} MB peak memory"] if result.memory_limit_mb is not None else []
    return " and ".join(parts)


def _plot_prune(rows: list[dict[str, Any]], result: Any, path: Path) -> Path:
    """Latency (and peak memory, when limited) per step, predicted and measured, against the targets; accuracy beside."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    memory = result.memory_limit_mb is not None
    fig, axes = plt.subplots(2 if memory else 1, 1, figsize=(7, 6.5 if memory else 4), sharex=True, squeeze=False)
    steps = [r["step"] for r in rows]
    panels = [("ms", "latency (ms)", result.target_ms, "target")] + ([("memory_mb", "peak memory (MB)", result.memory_limit_mb, "limit")] if memory else [])
    for ax, (key, label, target, word) in zip(axes[:, 0], panels, strict=True):
        ax.plot(steps, [r[f"predicted_{key}"] for r in rows], "o-", label=f"predicted {key.replace('_mb', ' MB')}")
        measured = [(r["step"], r[f"measured_{key}"]) for r in rows if r[f"measured_{key}"] is not None]
        if measured:
            ax.plot(*zip(*measured, strict=True), "x", c="tab:red", ms=9, label=f"measured {key.replace('_mb', ' MB')}")
        if target is not None:
            ax.axhline(target, ls="--", c="k", lw=1, label=f"{word} {target:.3g}")
        ax.set_ylabel(label)
        ax.legend(loc="lower left", fontsize=8)
    ax = axes[0, 0]
    if any(r["accuracy"] is not None for r in rows):
        ax2 = ax.twinx()
        ax2.plot(steps, [r["accuracy"] for r in rows], "s-", c="tab:green", ms=3, label="accuracy %")
        ax2.set_ylabel("accuracy (%)")
        ax2.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("pruning step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
