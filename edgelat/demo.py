"""The last step of ``make demo``: one line comparing the prediction with the measurement, then what next.

Usage: ``python -m edgelat.demo WORKSPACE`` (after the demo's profile, train, predict and measure steps).
"""

from __future__ import annotations

import sys
from pathlib import Path

from edgelat.errors import UsageError
from edgelat.predictors.predict import predict_network
from edgelat.workspace import open_workspace

NETWORK = "mobilenetv2_160.onnx"


def summary(workspace: str | Path) -> list[str]:
    """The demo's closing lines: predicted vs measured, how rough that is, how to go on."""
    root = Path(workspace)
    with open_workspace(root) as ws:
        predicted = predict_network(ws, "local", root / NETWORK).total_ms
        row = ws.store.first(
            "SELECT median_ms FROM network_measurements WHERE device = 'local' AND name = :name ORDER BY id DESC LIMIT 1", {"name": NETWORK}
        )
    if row is None:
        raise UsageError(f"no measurement of {NETWORK} in {root}: run `make demo` (its measure step) first")
    measured = float(row["median_ms"])
    return [
        f"demo: MobileNetV2 at 160 px on this machine: predicted {predicted:.1f} ms, measured {measured:.1f} ms "
        f"({100 * (predicted / measured - 1):+.1f}%)",
        "The demo profiled 40 configs of 4 kernel kinds, so expect its kernel models to be rough (kernels of other kinds "
        "were priced by the fallback model); `edgelat profile local` measures every kind (about 20 minutes on a 2-core machine).",
        f"Keep using this workspace: `{_command()} predict local NET.onnx --workspace {root}` or `export EDGELAT_HOME={root.resolve()}`;",
        f"`{_command()} serve --workspace {root}` serves it over HTTP, with a page to look at (it prints the address).",
    ]


def _command() -> str:
    """How to run edgelat from here: `edgelat` when it is on PATH, else the virtual environment's own script."""
    import shutil

    script = Path(sys.executable).with_name("edgelat")
    if shutil.which("edgelat") or not script.exists():
        return "edgelat"
    return f"{script.parent.relative_to(Path.cwd()) if script.is_relative_to(Path.cwd()) else script.parent}/edgelat"


def main() -> None:
    try:
        for line in summary(sys.argv[1] if len(sys.argv) > 1 else ".edgelat-demo"):
            print(line)
    except UsageError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
