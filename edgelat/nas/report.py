"""What a search leaves on disk: the best architecture (JSON, ONNX), the Pareto front (CSV, PNG), a report."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import numpy as np

from edgelat.errors import UsageError
from edgelat.nas.search import Candidate, VerifiedSearch
from edgelat.nas.spaces import SearchSpace

__all__ = ["PLOT_AXES", "plot_axes", "write_search_outputs"]


# What a Pareto plot can put on an axis: its label, and the fields that hold it: a candidate's (predicted),
# a verified pick's predicted and measured.
PLOT_AXES: dict[str, tuple[str, str, str, str]] = {
    "accuracy": ("accuracy score", "score", "score", "score"),
    "latency": ("latency (ms)", "predicted_ms", "predicted_ms", "measured_ms"),
    "memory": ("peak memory (MB)", "memory_mb", "predicted_memory_mb", "measured_memory_mb"),
    "size": ("library size (MB)", "size_mb", "predicted_size_mb", "measured_size_mb"),
}


def plot_axes(spec: str) -> tuple[str, str]:
    """``"x,y"`` -> two names of :data:`PLOT_AXES`, checked (``UsageError`` otherwise)."""
    names = tuple(n.strip() for n in spec.split(","))
    if len(names) != 2 or names[0] == names[1] or any(n not in PLOT_AXES for n in names):
        raise UsageError(f"--plot takes two different axes of {', '.join(PLOT_AXES)} as X,Y (e.g. memory,accuracy), got {spec!r}")
    return names[0], names[1]


def write_search_outputs(
    space: SearchSpace,
    result: VerifiedSearch,
    out_dir: str | Path,
    info: dict[str, Any],
    axes: tuple[str, str] = ("latency", "accuracy"),
    lightness: Callable[[Sequence[str]], np.ndarray] | None = None,
) -> dict[str, str]:
    """Write ``best.json``, ``best.onnx``, ``pareto.csv``, ``pareto.png`` and ``report.md`` into ``out_dir``.

    ``info`` (device, recipe, proxy, ...) goes into ``best.json`` and the report as given. The plot shows
    ``axes`` (x, y: names of :data:`PLOT_AXES`); where they include memory or size that the search did not
    predict (it had no limit on them), ``lightness`` predicts them for the front, and the plot shows the
    front and the verified picks. Returns the paths written, by name.
    """
    import pandas as pd

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: dict[str, str] = {}
    front = result.last.front
    if lightness is not None and {"memory", "size"} & set(axes) and any(c.memory_mb is None for c in front):
        light = np.asarray(lightness([c.arch for c in front]), dtype=float).reshape(len(front), 2)
        front = [replace(c, memory_mb=_known(mem), size_mb=_known(size)) for c, (mem, size) in zip(front, light, strict=True)]
    pd.DataFrame([asdict(c) for c in front]).to_csv(out / "pareto.csv", index=False)
    paths["pareto_csv"] = str(out / "pareto.csv")
    paths["pareto_png"] = str(_plot(result, front, axes, out / "pareto.png"))
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


def _known(value: float) -> float | None:
    return None if np.isnan(value) else float(value)


def _plot(result: VerifiedSearch, front: Sequence[Candidate], axes: tuple[str, str], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    (xlabel, xc, xp, xm), (ylabel, yc, yp, ym) = PLOT_AXES[axes[0]], PLOT_AXES[axes[1]]

    def points(items: Sequence[Any], fx: str, fy: str) -> tuple[list[float], list[float]]:
        pairs = [(getattr(c, fx), getattr(c, fy)) for c in items if getattr(c, fx) is not None and getattr(c, fy) is not None]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    fig, ax = plt.subplots(figsize=(7, 4.5))
    hist_x, hist_y = points(result.last.history, xc, yc)
    if hist_x:
        ax.scatter(hist_x, hist_y, s=8, c="0.75", label=f"evaluated ({len(hist_x)})")
    # The front is non-dominated in latency and score; on other axes it is drawn as points.
    fx, fy = points(front, xc, yc)
    fx, fy = [list(t) for t in zip(*sorted(zip(fx, fy, strict=True)), strict=True)] if fx else ([], [])
    ax.plot(fx, fy, "o-" if set(axes) == {"latency", "accuracy"} else "o", c="tab:blue", ms=4, label="Pareto front (predicted)")
    vx, vy = points(result.verified, xm, ym)
    for v in result.verified:
        p, m = (getattr(v, xp), getattr(v, yp)), (getattr(v, xm), getattr(v, ym))
        if None not in p and None not in m:
            ax.annotate("", xy=m, xytext=p, arrowprops={"arrowstyle": "->", "color": "tab:red"})
    if vx:
        ax.scatter(vx, vy, marker="x", c="tab:red", label="verified (measured)")
    bounds = {"latency": (result.budget_ms, "budget", "ms"), "memory": (result.limits.memory_mb, "limit", "MB"),
              "size": (result.limits.size_mb, "limit", "MB")}  # fmt: skip
    for axis, line in ((axes[0], ax.axvline), (axes[1], ax.axhline)):
        value, word, unit = bounds.get(axis, (None, "", ""))
        if value is not None:
            line(value, ls="--", c="k", lw=1, label=f"{word} {value:g} {unit}")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
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
        *(
            [
                "- the oracle put every architecture over the budget, but the fastest measured within it: "
                f"the last round's predictions were scaled by {result.scaled_by:.3f}"
            ]
            if result.scaled_by is not None
            else []
        ),
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
