"""Memory and storage: the module's footprint, the device's measured peak memory, and predictions from both."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from typer.testing import CliRunner

import edgelat
from edgelat.cli import app
from edgelat.ops.footprint import Footprint, network_footprint
from edgelat.ops.network import relax_from_torch
from edgelat.predictors.memory import MIN_NETWORKS, MeasuredMemory, MemoryModel, measured_memory
from edgelat.workspace import measured_by, open_workspace


def _mlp(width: int) -> nn.Module:
    torch.manual_seed(width)
    return nn.Sequential(nn.Linear(64, width), nn.ReLU(), nn.Linear(width, width), nn.ReLU(), nn.Linear(width, 10)).eval()


def _conv_net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU()).eval()


def test_the_footprint_has_the_weights_and_what_the_planner_allocates() -> None:
    net = _conv_net()
    footprint = network_footprint(relax_from_torch(net, torch.randn(1, 3, 32, 32)))
    assert footprint.params_bytes == sum(p.numel() * 4 for p in net.parameters())
    # Intermediates: conv1's output (8x32x32 floats) must be held; the network's output (16x16x16) is allocated on its own.
    conv1_out, output = 8 * 32 * 32 * 4, 16 * 16 * 16 * 4
    assert conv1_out + output <= footprint.activation_bytes <= conv1_out + output + 3 * 4 * 32 * 32 * 4
    assert footprint.kernels >= 2 and footprint.unsized == 0
    # The second conv pads its 8x32x32 input to 8x34x34 inside its kernel: workspace, not a planned tensor.
    assert footprint.workspace_bytes >= 8 * 34 * 34 * 4


def _law(f: Footprint, runtime: float = 100.0) -> float:
    return runtime + 2.0 * f.params_mb + f.activation_mb + f.workspace_mb + 0.01 * f.kernels


def test_the_memory_model_recovers_a_linear_law_and_says_when_it_cannot_fit() -> None:
    footprints = [Footprint(p * 2**20, a * 2**20, k, 2**19) for p, a, k in [(1, 2, 10), (5, 1, 20), (20, 4, 15), (3, 8, 40), (9, 3, 25)]]
    measured = [MeasuredMemory(f"n{i}", f"h{i}", f, _law(f), 100.0, f.params_bytes + 4096 * f.kernels) for i, f in enumerate(footprints)]
    model = MemoryModel(measured)
    new = Footprint(12 * 2**20, 5 * 2**20, 30, 2**20)
    predicted = model.predict(new)
    assert model.fitted and predicted.fitted
    assert predicted.memory_mb == pytest.approx(_law(new), rel=1e-6)
    assert predicted.size_mb == pytest.approx((new.params_bytes + 4096 * 30) / 2**20, rel=1e-6)
    few = MemoryModel(measured[: MIN_NETWORKS - 1]).predict(new)
    assert not few.fitted and few.memory_mb == pytest.approx(100.0 + 12 + 5 + 1) and few.size_mb == pytest.approx(12.0)
    assert MemoryModel([]).predict(new).memory_mb is None


@pytest.mark.timings_ignored
def test_measured_memory_is_stored_and_predicted_from_the_device_networks(trained: Path, tmp_path: Path) -> None:
    """Real measurements on `local` (peak memory of a fresh process running each network), then the
    prediction for a network left out, from a model fitted on the others."""
    from edgelat.profiler.e2e import measure_network

    root = Path(shutil.copytree(trained, tmp_path / "ws"))
    widths = [64, 256, 512, 1024, 1536]
    example = torch.randn(1, 64)
    with open_workspace(root) as ws:
        for width in widths:
            m = measure_network(ws, "local", relax_from_torch(_mlp(width), example), name=f"mlp{width}", per_kernel=False, repeat=2, min_repeat_ms=1)
            assert m.runtime_memory_mb is not None and m.peak_memory_mb is not None and m.size_bytes is not None
            assert 0 < m.runtime_memory_mb < m.peak_memory_mb and m.size_bytes > (m.params_bytes or 0) > 0
            assert m.energy_mj is None and m.power_rail is None  # this machine has no power monitor the agent can read
        by = {(r["measured_by"], r["edgelat_version"]) for r in ws.store.rows("SELECT measured_by, edgelat_version FROM network_measurements")}
        assert by == {(measured_by(), edgelat.__version__)}
        rows = measured_memory(ws, "local")
        assert sorted(r.name for r in rows) == sorted(f"mlp{w}" for w in widths)
        # The widest network's weights (about 9 MB more than the narrowest's) show in its measured peak.
        by_name = {r.name: r for r in rows}
        wide, narrow = by_name["mlp1536"], by_name["mlp64"]
        grown = (wide.peak_mb - wide.runtime_mb) - (narrow.peak_mb - narrow.runtime_mb)
        assert grown > 0.8 * (wide.footprint.params_mb - narrow.footprint.params_mb)
        left_out = next(r for r in rows if r.name == "mlp1024")
        predicted = MemoryModel([r for r in rows if r is not left_out]).predict(left_out.footprint)
        assert predicted.fitted and predicted.memory_mb is not None
        assert abs(predicted.memory_mb - left_out.peak_mb) < 0.25 * (left_out.peak_mb - left_out.runtime_mb) + 5.0
    # The CLI's predict --json has memory and size beside total_ms.
    onnx = tmp_path / "mlp.onnx"
    torch.onnx.export(_mlp(768), (example,), str(onnx), dynamo=False)
    result = CliRunner().invoke(app, ["predict", "local", str(onnx), "--json", "-w", str(root)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["memory_fitted"] and data["memory_mb"] > data["size_mb"] > data["params_mb"] > 0 and data["total_ms"] > 0


@pytest.mark.timings_ignored
def test_prune_under_a_memory_limit_meets_it_as_measured(trained: Path, tmp_path: Path) -> None:
    """`prune --memory-mb` alone (no latency target) on `local`: the pruned network's peak memory, measured in a
    fresh process, is within the limit, which is set well under the unpruned network's."""
    from edgelat.profiler.e2e import measure_network

    root = Path(shutil.copytree(trained, tmp_path / "ws"))
    (tmp_path / "net.py").write_text(
        "from torch import nn\n\n"
        "def mlp():\n"
        "    return nn.Sequential(nn.Flatten(), nn.Linear(768, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))\n"
    )
    example = torch.randn(1, 3, 16, 16)
    net = nn.Sequential(nn.Flatten(), nn.Linear(768, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))
    with open_workspace(root) as ws:
        before = measure_network(ws, "local", relax_from_torch(net, example), name="mlp", per_kernel=False, repeat=2, min_repeat_ms=1)
    assert before.peak_memory_mb is not None and before.runtime_memory_mb is not None
    own = before.peak_memory_mb - before.runtime_memory_mb
    limit = round(before.peak_memory_mb - 0.4 * own, 1)
    args = ["prune", "local", f"{tmp_path / 'net.py'}:mlp", "--memory-mb", str(limit), "--input-shape", "1,3,16,16", "--pretrain-steps", "10",
            "--finetune-steps", "2", "--steps", "2", "--out", str(tmp_path / "out"), "--json", "-w", str(root)]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    found = json.loads(result.stdout)
    assert found["target_ms"] is None and found["memory_limit_mb"] == limit
    assert found["baseline_memory_mb"] == pytest.approx(before.peak_memory_mb, abs=0.1 * own)
    assert found["measured_memory_mb"] <= limit and found["predicted_memory_mb"] is not None
    report = (tmp_path / "out" / "report.md").read_text()
    assert report.startswith(f"# Pruning to {limit:g} MB peak memory") and "measured MB" in report
    # A limit the network already meets is one line and exit code 2.
    met = CliRunner().invoke(app, [*args[:4], str(before.peak_memory_mb + 50), *args[5:]])
    assert met.exit_code == 2 and "already peaks at" in met.output
