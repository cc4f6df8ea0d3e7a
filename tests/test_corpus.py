"""Networks written by others (``tests/corpus``): each imports, exported both ways and through torch.export,
and every kernel is priced, by its kind's model or by the fallback."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.ops.network import network_kernels, relax_from_onnx, relax_from_torch
from edgelat.predictors.predict import DeviceLatencyModel, load_model, predict_kernels
from edgelat.workspace import open_workspace
from tests.corpus import EXPORTERS, corpus, example_inputs, export_onnx, get

NETS = [net.name for net in corpus()]

# Import and pricing only: nothing here times a kernel (the trained fixture measures its own, per process).


def test_the_corpus_is_varied() -> None:
    nets = corpus()
    assert len(nets) >= 60
    families = {net.family for net in nets}
    assert {"segmentation", "detection", "transformer", "multi_input"} <= families
    assert sum(len(net.input_shapes) > 1 for net in nets) >= 2


@pytest.fixture(scope="module")
def model(trained: Path) -> DeviceLatencyModel:
    with open_workspace(trained) as ws:
        return load_model(ws, "local")


@pytest.mark.slow
@pytest.mark.parametrize("name", NETS)
def test_every_network_imports_and_every_kernel_is_priced(name: str, model: DeviceLatencyModel, tmp_path: Path) -> None:
    net = get(name)
    # Every other network is exported with symbolic batch and spatial dims, bound from its input shapes.
    dynamic = NETS.index(name) % 2 == 1
    for exporter in EXPORTERS:
        path = export_onnx(net, tmp_path / f"{exporter}.onnx", exporter=exporter, dynamic=dynamic)
        kernels = network_kernels(relax_from_onnx(path, list(net.input_shapes) if dynamic else None))
        pred = predict_kernels(model, kernels)
        assert kernels and math.isfinite(pred.total_ms) and pred.total_ms > 0, exporter
        assert all(k.predicted_ms > 0 and math.isfinite(k.predicted_ms) for k in pred.kernels), exporter
    example = example_inputs(net)
    kernels = network_kernels(relax_from_torch(net.build(), example if len(example) > 1 else example[0]))
    assert predict_kernels(model, kernels).total_ms > 0


@pytest.mark.slow
def test_predict_cli_takes_corpus_networks_without_flags(trained: Path, tmp_path: Path) -> None:
    for name in ("unet_bilinear_pad", "deit_tiny_mha", "shufflenet_v2_torchvision"):
        path = export_onnx(get(name), tmp_path / f"{name}.onnx", exporter="torchscript")
        result = CliRunner().invoke(app, ["predict", "local", str(path), "--json", "-w", str(trained)])
        assert result.exit_code == 0, result.stderr
        data = json.loads(result.stdout)
        assert data["total_ms"] > 0 and 0 <= data["coverage"] <= 1 and all("fallback" in k for k in data["kernels"])


@pytest.mark.parametrize("name", ["preact_resnet_tfpad", "conv1d_kws", "mobilevit_xxs_lite", "mobilenet_v3_large_clamp", "cbam_resnet"])
def test_the_kernel_profiled_for_a_network_kernel_reads_and_writes_what_it_does(name: str) -> None:
    """Each kernel's config, emitted for profiling, is one kernel with the network's operand and output sizes
    (a leaky ReLU, a conv1d's per-channel batch norm, a matmul's bias, a spatial-attention gate)."""
    from edgelat.ops import fuse, fused_groups, get_op
    from edgelat.ops.lowering import traffic_sizes

    net = get(name)
    example = example_inputs(net)
    kernels = network_kernels(relax_from_torch(net.build().eval(), example if len(example) > 1 else example[0]))
    checked = 0
    for k in kernels:
        if k.op is None or k.config is None or get_op(k.op).composite:
            continue
        groups = fused_groups(*fuse(get_op(k.op).emit(k.config)))
        assert len(groups) == 1 and traffic_sizes(groups[0]) == traffic_sizes(k.group), (k.op, k.config)
        checked += 1
    assert checked >= 5
