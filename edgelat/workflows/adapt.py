"""A device known from a few end-to-end latencies: another device's kernel models, reweighted (``edgelat adapt``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from edgelat.errors import UsageError
from edgelat.nas.spaces import SearchSpace, get_space
from edgelat.predictors.adapt import Adapter
from edgelat.predictors.predict import load_model
from edgelat.workflows.oracle import device_oracle
from edgelat.workspace import Workspace

__all__ = ["AdaptReport", "adapt_device", "source_features"]


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
