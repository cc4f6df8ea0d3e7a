"""Two routes to a latency budget, side by side: search alone, and search at a looser budget then prune."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from edgelat.errors import AlreadyMeetsTargetError, UsageError
from edgelat.nas.spaces import get_space
from edgelat.workflows.prune import PruneOptions, prune_device
from edgelat.workflows.search import DeviceSearch, SearchOptions, search_device
from edgelat.workspace import Workspace

__all__ = ["search_then_prune"]


def search_then_prune(
    ws: Workspace,
    device: str,
    space_name: str,
    budget_ms: float,
    *,
    looser: float = 1.3,
    search: SearchOptions = SearchOptions(),
    prune: PruneOptions = PruneOptions(),
    out_dir: str | Path | None = None,
    on_step: Callable[[Any], None] | None = None,
) -> dict[str, Any]:
    """Two routes to ``budget_ms``, side by side: search alone, and search at ``looser`` x the budget then prune.

    Both winners are trained on the digits task for the same number of steps (``prune``'s pre-training plus
    all its fine-tuning; the pruned one's training is split so), then compared by measured
    latency, parameters and validation accuracy. Writes ``routes.json`` and each route's outputs.
    """
    import torch

    from edgelat.datasets.digits import DigitsTask, train

    if not looser > 1:
        raise UsageError(f"--looser must be above 1, got {looser}")
    out = Path(out_dir) if out_dir else ws.run_dir("searches", device, f"{space_name}-{budget_ms:g}ms-then-prune")
    space = get_space(space_name)
    routes: dict[str, Any] = {"budget_ms": budget_ms, "looser": looser}

    def trained(arch: str) -> dict[str, Any]:
        """Params and digits accuracy of ``arch`` after as many training steps as a pruned route gets."""
        task = DigitsTask(space.input_shape(arch)[2])
        torch.manual_seed(0)
        model = train(space.build(arch), task, prune.pretrain_steps + prune.steps * prune.finetune_steps)
        return {"params": sum(p.numel() for p in model.parameters()), "accuracy": task.evaluate(model)}

    try:
        alone: DeviceSearch | None = search_device(ws, device, space_name, budget_ms, search, out_dir=out / "search-alone")
    except UsageError as exc:  # e.g. nothing in the space is predicted to fit: pruning may still get there
        alone = None
        routes["search_alone"] = {"error": str(exc)}
    loose = search_device(ws, device, space_name, budget_ms * looser, search, out_dir=out / "search-looser")
    if alone is not None and alone.result.chosen is not None:
        arch = alone.result.chosen.arch
        routes["search_alone"] = {"arch": arch, "measured_ms": alone.result.chosen.measured_ms, **trained(arch)}
    if loose.result.chosen is None:
        raise UsageError(f"no verified network met the looser budget {budget_ms * looser:g} ms; nothing to prune")
    arch = loose.result.chosen.arch
    searched_ms = loose.result.chosen.measured_ms

    def as_searched(measured_ms: float) -> dict[str, Any]:
        return {"arch": arch, "searched_ms": searched_ms, "measured_ms": measured_ms, **trained(arch), "onnx": loose.paths.get("onnx"), "pruned": False}

    memory_mb = search.limits.memory_mb
    if search.limits.size_mb is not None:
        raise UsageError("--then-prune does not take --size-mb: pruning keeps to latency and memory (search with it alone)")
    fits_memory = memory_mb is None or (loose.result.chosen.measured_memory_mb or 0.0) <= memory_mb
    if searched_ms <= budget_ms and fits_memory:  # the looser search's winner already fits: nothing to prune
        routes["search_then_prune"] = as_searched(searched_ms)
    else:
        try:
            pruned = prune_device(
                ws, device, space.build(arch), input_shape=space.input_shape(arch), target_ms=budget_ms, memory_mb=memory_mb,
                options=PruneOptions(**{**prune.__dict__, "recipe": prune.recipe or search.recipe}), out_dir=out / "pruned", on_step=on_step,
            )  # fmt: skip
        except AlreadyMeetsTargetError as exc:  # measured again before pruning, it fits after all (a noisy device)
            routes["search_then_prune"] = as_searched(exc.latency_ms)
        else:
            r = pruned.result
            routes["search_then_prune"] = {"arch": arch, "searched_ms": searched_ms, "measured_ms": r.measured_ms,
                                           "measured_memory_mb": r.measured_memory_mb,
                                           "params": sum(p.numel() for p in r.model.parameters()), "accuracy": r.accuracy,
                                           "onnx": pruned.paths["onnx"], "pruned": True}  # fmt: skip
    out.mkdir(parents=True, exist_ok=True)
    import json

    (out / "routes.json").write_text(json.dumps(routes, indent=2))
    routes["out_dir"] = str(out)
    return routes
