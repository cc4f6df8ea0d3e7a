"""Public latency tables and the (network, latency) CSVs users bring.

Two real-device tables ship with edgelat (MIT-licensed facts from HW-NAS-Bench as
redistributed by HELP, NAS-Bench-201 accuracies as tabulated by MeCo):

- :func:`load_nb201_table`: all 15,625 NAS-Bench-201 architectures with Pixel 3 and Xeon
  Gold 6226 latencies (ms, batch 1) and NAS-Bench-201's CIFAR-10 test accuracy (%).
- :func:`load_fbnet_table`: 5,000 FBNet-space architectures (CIFAR-100 input) with Pixel 3 latencies.

:func:`load_latency_csv` reads a user's measurements: a ``latency_ms`` column and either
``onnx`` (paths) or ``arch`` (strings of a search space), checked row by row.

Example:
    >>> table = load_nb201_table()
    >>> table.columns.tolist()
    ['index', 'arch', 'pixel3_ms', 'gold_6226_ms', 'cifar10_test_acc']
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from edgelat.errors import UsageError

__all__ = ["load_fbnet_table", "load_latency_csv", "load_nb201_table"]

_DATA = Path(__file__).parent / "data"


def load_nb201_table() -> pd.DataFrame:
    """NAS-Bench-201: index, arch, pixel3_ms, gold_6226_ms, cifar10_test_acc (15,625 rows)."""
    return pd.read_csv(_DATA / "nb201_latency_pixel3_gold6226.csv.gz")


def load_fbnet_table() -> pd.DataFrame:
    """FBNet space on CIFAR-100: index, arch (22 space-separated layer choices), pixel3_ms (5,000 rows)."""
    return pd.read_csv(_DATA / "fbnet_latency_pixel3.csv.gz")


def load_latency_csv(path: str | Path, space: Any = None) -> pd.DataFrame:
    """Read a (network, latency) CSV and check every row.

    The file needs a ``latency_ms`` column and one network column: ``onnx`` (paths, relative
    ones read from the CSV's folder) or ``arch`` (architectures of ``space``, a
    :class:`edgelat.nas.SearchSpace`, returned in canonical form). Rows are numbered as a
    spreadsheet shows them (the header is row 1).

    Raises:
        UsageError: missing file or column, an empty table, a latency that is not a positive
            number, a missing ONNX file or an architecture the space does not know; the
            message names the row.
    """
    path = Path(path)
    if not path.exists():
        raise UsageError(f"no such measurements file: {path}")
    try:
        frame = pd.read_csv(path, dtype={"arch": str, "onnx": str})
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise UsageError(f"{path}: not a readable CSV ({exc})") from None
    if "latency_ms" not in frame.columns:
        raise UsageError(f"{path}: no 'latency_ms' column (columns: {', '.join(map(str, frame.columns)) or 'none'})")
    kinds = [c for c in ("onnx", "arch") if c in frame.columns]
    if len(kinds) != 1:
        raise UsageError(f"{path}: needs exactly one of the columns 'onnx' (model paths) and 'arch' (architecture strings)")
    kind = kinds[0]
    if kind == "arch" and space is None:
        raise UsageError(f"{path}: an 'arch' column needs a search space (--space)")
    if frame.empty:
        raise UsageError(f"{path}: no rows")
    latency = pd.to_numeric(frame["latency_ms"], errors="coerce")
    rows: list[dict[str, Any]] = []
    for i, (network, ms) in enumerate(zip(frame[kind], latency, strict=True)):
        where = f"{path}, row {i + 2}"
        if not ms > 0:  # NaN fails too
            raise UsageError(f"{where}: latency_ms must be a positive number of milliseconds, got {str(frame['latency_ms'].iloc[i])!r}")
        if not isinstance(network, str) or not network.strip():
            raise UsageError(f"{where}: empty {kind}")
        if kind == "onnx":
            model = Path(network)
            model = model if model.is_absolute() else path.parent / model
            if not model.exists():
                raise UsageError(f"{where}: no such ONNX file {model}")
            rows.append({"onnx": str(model), "latency_ms": float(ms)})
        else:
            try:
                rows.append({"arch": space.canonical(network), "latency_ms": float(ms)})
            except UsageError as exc:
                raise UsageError(f"{where}: {exc}") from None
    return pd.DataFrame(rows)
