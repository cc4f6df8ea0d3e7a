"""Latency-constrained pruning: layers mapped to kernels, the NetAdapt loop, `edgelat prune` on the local device."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch_pruning as tp
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.datasets.zoo import create_model
from edgelat.errors import AlreadyMeetsTargetError, UsageError
from edgelat.nas import get_space
from edgelat.nas.prune import layer_configs, prune_to_latency, uniform_prune
from edgelat.nas.search import Measured
from edgelat.ops import get_op
from edgelat.ops.network import network_kernels, relax_from_torch
from edgelat.workflows import load_factory


class PseudoPricer:
    """Prices kernels by FLOPs and bytes moved (a stand-in for a trained predictor, same interface)."""

    def kernels(self, items: Sequence[tuple[str, dict[str, Any]]]) -> np.ndarray:
        out = []
        for op, cfg in items:
            f = get_op(op).features(cfg)
            out.append(1e-6 * (f["flops"] + f["bytes"]) + 0.01)
        return np.array(out)

    def network(self, model: Any, example: Any) -> tuple[float, list[tuple[str, dict[str, Any]]]]:
        kernels = [(k.op, k.config) for k in network_kernels(relax_from_torch(model, example)) if k.op is not None]
        return float(self.kernels(kernels).sum()), kernels  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["mobilenetv2_100", "resnet18", "ofa"])
def test_every_conv_and_linear_maps_to_its_kernel(name: str) -> None:
    if name == "ofa":
        space = get_space("ofa")
        arch = space.sample(np.random.default_rng(0))
        model, example = space.build(arch), torch.randn(*space.input_shape(arch))
    else:
        model, example = create_model(name, num_classes=10), torch.randn(1, 3, 32, 32)
    kernels = [(k.op, k.config) for k in network_kernels(relax_from_torch(model, example)) if k.op is not None]
    mapping = layer_configs(model, example, kernels)
    layers = [m for m in model.modules() if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))]
    assert set(mapping) == set(layers)


def test_pruning_meets_the_predicted_target_and_stays_a_working_model(tmp_path: Path) -> None:
    pricer = PseudoPricer()
    torch.manual_seed(0)
    model = create_model("mobilenetv2_050", num_classes=10)
    example = torch.randn(1, 3, 32, 32)
    base = pricer.network(model, example)[0]
    result = prune_to_latency(model, example, 0.75 * base, pricer, steps=2, margin=0.0)
    assert result.predicted_ms <= 0.75 * base and result.steps
    assert result.predicted_ms == pytest.approx(pricer.network(result.model, example)[0])
    assert [s.predicted_ms for s in result.steps] == sorted((s.predicted_ms for s in result.steps), reverse=True)
    pruned = result.model
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    assert pruned(example).shape == (1, 10)
    # Torch-Pruning's state dict rebuilds the pruned shapes on a fresh model.
    fresh = create_model("mobilenetv2_050", num_classes=10)
    tp.load_state_dict(fresh, state_dict=tp.state_dict(pruned))
    assert torch.allclose(fresh.eval()(example), pruned.eval()(example), atol=1e-5)
    # The baseline prunes every layer by one ratio to the same target.
    uniform, ratio, ms = uniform_prune(model, example, 0.75 * base, pricer, iterations=4)
    assert ms <= 0.75 * base and 0 < ratio < 0.9
    with pytest.raises(AlreadyMeetsTargetError, match="already runs") as refused:
        prune_to_latency(model, example, 2 * base, pricer)
    assert refused.value.latency_ms == pytest.approx(base)


class PseudoMemory:
    """Peak memory = a runtime's 300 MB + 4 x the weights (a stand-in for a device's memory model, same interface)."""

    def network(self, model: Any, example: Any) -> tuple[float, float]:
        return 300.0 + 4 * sum(p.numel() * 4 for p in model.parameters()) / 2**20, 4.0


def test_pruning_under_a_memory_limit_meets_it_on_the_device_and_with_latency_too() -> None:
    pricer, memory = PseudoPricer(), PseudoMemory()
    torch.manual_seed(0)
    model = create_model("mobilenetv2_050", num_classes=10)
    example = torch.randn(1, 3, 32, 32)
    base_ms, base_mb = pricer.network(model, example)[0], memory.network(model, example)[0]
    measured: list[Any] = []

    def measure(m: Any) -> Measured:  # the device: 10% slower, 0.8 MB more than predicted
        measured.append(Measured(1.1 * pricer.network(m, example)[0], memory.network(m, example)[0] + 0.8))
        return measured[-1]

    limit = base_mb - 4.0
    alone = prune_to_latency(model, example, None, pricer, memory_mb=limit, memory_pricer=memory, measure=measure, steps=3)
    assert alone.target_ms is None and alone.measured_memory_mb is not None
    assert alone.measured_memory_mb <= limit and alone.measured_memory_mb == measured[-1].memory_mb
    assert alone.baseline_measured_memory_mb == pytest.approx(base_mb + 0.8)
    # Cut for memory only: just under the limit (its 1 MB margin and a step), not far below.
    assert alone.measured_memory_mb >= limit - 3.0, alone.measured_memory_mb
    assert [s.predicted_memory_mb for s in alone.steps] == sorted((s.predicted_memory_mb for s in alone.steps), reverse=True)
    # Both limits: each met as measured, latency the binding one here.
    both = prune_to_latency(
        model, example, 0.7 * 1.1 * base_ms, pricer, memory_mb=base_mb - 1.0, memory_pricer=memory, measure=measure, steps=3
    )
    assert both.measured_ms is not None and both.measured_ms <= 0.7 * 1.1 * base_ms
    assert both.measured_memory_mb is not None and both.measured_memory_mb <= base_mb - 1.0
    with pytest.raises(AlreadyMeetsTargetError, match="peaks at"):
        prune_to_latency(model, example, None, pricer, memory_mb=base_mb + 10, memory_pricer=memory, measure=measure)
    with pytest.raises(UsageError, match="latency target, a memory limit or both"):
        prune_to_latency(model, example, None, pricer)


def test_factories_are_loaded_from_files(tmp_path: Path) -> None:
    (tmp_path / "net.py").write_text("from torch import nn\n\ndef tiny():\n    return nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU())\n")
    assert isinstance(load_factory(f"{tmp_path / 'net.py'}:tiny"), torch.nn.Module)
    with pytest.raises(UsageError, match="no function 'nope'"):
        load_factory(f"{tmp_path / 'net.py'}:nope")
    with pytest.raises(UsageError, match="not its ONNX graph"):
        load_factory("model.onnx")


@pytest.mark.timed
@pytest.mark.slow
def test_prune_cli_meets_the_target_on_the_device(profiled_for_search: Path, tmp_path: Path) -> None:
    root = profiled_for_search
    (tmp_path / "net.py").write_text(
        "from edgelat.datasets.zoo import create_model\n\ndef net():\n    return create_model('mobilenetv2_050', num_classes=10)\n"
    )
    args = ["prune", "local", f"{tmp_path / 'net.py'}:net", "--speedup", "1.6", "--input-shape", "1,3,32,32", "--pretrain-steps", "20",
            "--finetune-steps", "3", "--steps", "3", "--out", str(tmp_path / "out"), "--json", "-w", str(root)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["measured_ms"] <= found["target_ms"] == pytest.approx(found["baseline_ms"] / 1.6)
    assert found["measured_ms"] >= 0.8 * found["target_ms"]
    for name in ("pruned.onnx", "pruned_state.pt", "pruned.json", "steps.csv", "steps.png", "report.md"):
        assert (tmp_path / "out" / name).exists(), name
    # Rebuilt from the factory named in pruned.json and the weights alone (no pickled module), the same network.
    import onnxruntime

    from edgelat.workflows import load_pruned

    model = load_pruned(tmp_path / "out")
    x = torch.randn(1, 3, 32, 32)
    session = onnxruntime.InferenceSession(str(tmp_path / "out" / "pruned.onnx"))
    expected = session.run(None, {session.get_inputs()[0].name: x.numpy()})[0]
    with torch.no_grad():
        got = model(x).numpy()
    assert got.shape == (1, 10) and np.allclose(got, expected, atol=1e-4), np.abs(got - expected).max()
    unpruned = sum(p.numel() for p in create_model("mobilenetv2_050", num_classes=10).parameters())
    assert sum(p.numel() for p in model.parameters()) < unpruned


@pytest.mark.parametrize("name", ["mobilenetv2_050", "resnet18"])
def test_a_pruned_network_rebuilds_from_its_factory_and_weights(name: str, tmp_path: Path) -> None:
    """No pickled module: the structure as JSON, the weights as a plain state dict, the factory builds the rest."""
    from edgelat.nas.prune import pruned_structure, rebuild_pruned

    model = create_model(name, num_classes=10).eval()
    example = torch.randn(1, 3, 32, 32)
    pruner = tp.pruner.MagnitudePruner(model, example, importance=tp.importance.GroupMagnitudeImportance(p=2), pruning_ratio=0.4,
                                       ignored_layers=[m for m in model.modules() if isinstance(m, torch.nn.Linear)])  # fmt: skip
    pruner.step()
    torch.save(model.state_dict(), tmp_path / "state.pt")
    (tmp_path / "structure.json").write_text(json.dumps(pruned_structure(model)))
    rebuilt = rebuild_pruned(
        create_model(name, num_classes=10),
        json.loads((tmp_path / "structure.json").read_text()),
        torch.load(tmp_path / "state.pt", weights_only=True),
    ).eval()
    with torch.no_grad():
        assert torch.equal(rebuilt(example), model(example))
    assert sum(p.numel() for p in rebuilt.parameters()) < sum(p.numel() for p in create_model(name, num_classes=10).parameters())
    with pytest.raises(UsageError, match="no module"):
        rebuild_pruned(torch.nn.Sequential(torch.nn.Linear(2, 2)), pruned_structure(model), model.state_dict())
