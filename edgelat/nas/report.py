"""What a search leaves on disk: the best architecture (JSON, ONNX), the Pareto front (CSV, PNG), a report."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

from edgelat.nas.search import VerifiedSearch
from edgelat.nas.spaces import SearchSpace

__all__ = ["write_search_outputs"]


def write_search_outputs(space: SearchSpace, result: VerifiedSearch, out_dir: str | Path, info: dict[str, Any]) -> dict[str, str]:
    """Write ``best.json``, ``best.onnx``, ``pareto.csv``, ``pareto.png`` and ``report.md`` into ``out_dir``.

    ``info`` (device, recipe, proxy, ...) goes into ``best.json`` and the report as given.
    Returns the paths written, by name.
    """
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    front = pd.DataFrame([asdict(c) for c in result.last.front])
    front.to_csv(out / "pareto.csv", index=False)
    paths["pareto_csv"] = str(out / "pareto.csv")
    paths["pareto_png"] = str(_plot(result, out / "pareto.png"))
    chosen = result.chosen
    best: dict[str, Any] = {"space": space.name, **info, **result.as_dict()}
    if chosen is not None:
        best.update(arch=chosen.arch, predicted_ms=chosen.predicted_ms, measured_ms=chosen.measured_ms, score=chosen.score)
        paths["onnx"] = str(space.export_onnx(chosen.arch, out / "best.onnx"))
        best["onnx"] = paths["onnx"]
    (out / "best.json").write_text(json.dumps(best, indent=2))
    paths["best_json"] = str(out / "best.json")
    (out / "report.md").write_text(_report(space, result, info))
    paths["report"] = str(out / "report.md")
    return paths


def _plot(result: VerifiedSearch, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    hist = result.last.history
    ax.scatter([c.predicted_ms for c in hist], [c.score for c in hist], s=8, c="0.75", label=f"evaluated ({len(hist)})")
    front = result.last.front
    ax.plot([c.predicted_ms for c in front], [c.score for c in front], "o-", c="tab:blue", ms=4, label="Pareto front (predicted)")
    for v in result.verified:
        ax.annotate("", xy=(v.measured_ms, v.score), xytext=(v.predicted_ms, v.score), arrowprops={"arrowstyle": "->", "color": "tab:red"})
    if result.verified:
        ax.scatter(
            [v.measured_ms for v in result.verified],
            [v.score for v in result.verified],
            marker="x",
            c="tab:red",
            label="verified (measured)",
        )
    ax.axvline(result.budget_ms, ls="--", c="k", lw=1, label=f"budget {result.budget_ms:g} ms")
    ax.set_xlabel("latency (ms)")
    ax.set_ylabel("accuracy score")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def _report(space: SearchSpace, result: VerifiedSearch, info: dict[str, Any]) -> str:
    lines = [f"# Search on {space.name}: budget {result.budget_ms:g} ms", ""]
    lines += [f"- {k}: {v}" for k, v in info.items()]
    lines += [
        f"- rounds: {result.rounds}, refits: {result.refits}, evaluations in the last round: {result.last.evaluations}, "
        f"search time {result.last.seconds:.1f} s",
        "",
        "| round | arch | score | predicted ms | measured ms | error |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    lines += [
        f"| {v.round} | `{v.arch}` | {v.score:.4g} | {v.predicted_ms:.2f} | {v.measured_ms:.2f} | {100 * v.error:+.1f}% |"
        for v in result.verified
    ]
    chosen = result.chosen
    lines += [
        "",
        f"Chosen: `{chosen.arch}`, measured {chosen.measured_ms:.2f} ms (predicted {chosen.predicted_ms:.2f} ms)."
        if chosen
        else "No verified pick met the budget when measured.",
        "",
    ]
    return "\n".join(lines)
