"""The whole user path on an aarch64 device: an emulated arm64 Debian (qemu-user) served by its own sshd.

One device for the module (per xdist worker: no test relies on another having run): add, probe, setup
--offline, profile, measure, a numerical check, remove. Timings under emulation mean nothing, so these
are `timings_ignored` and share the machine.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from edgelat.cli import app
from tests.test_builds import CONV

pytestmark = [pytest.mark.aarch64, pytest.mark.timings_ignored, pytest.mark.slow]

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "emulated_device.py"
NAME = "emu"
# The user's cache, read before tests point HOME elsewhere: the root file system and the aarch64 wheels
# are built and downloaded once per machine.
CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")


def _script() -> Any:
    spec = importlib.util.spec_from_file_location("emulated_device", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def emulated(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    emu = _script()
    reason = emu.missing()
    if reason:
        pytest.fail(f"the emulated aarch64 device {reason}; .ci/run installs it (deselect with -m 'not aarch64')")
    base = emu.rootfs(cache=CACHE / "edgelat" / "aarch64", log=CACHE / "edgelat" / "aarch64" / "debootstrap.log")
    device = emu.EmulatedDevice(tmp_path_factory.mktemp("emu"), emu.free_port(), base).start()
    yield device
    device.stop()


def cli(root: Path, *args: str) -> str:
    result = CliRunner().invoke(app, [*args, "--workspace", str(root)])
    assert result.exit_code == 0, result.output
    return result.stdout


@pytest.fixture(scope="module")
def root(emulated: Any, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace with the emulated device added (xdist may give a module's tests to both workers: each then has
    its own device, so no test relies on another having run)."""
    ws = tmp_path_factory.mktemp("aarch64") / "ws"
    cli(ws, "device", "add", NAME, "--preset", "rpi4", "--host", "127.0.0.1", "--port", str(emulated.port), "--user", "root",
        "--key", str(emulated.client_key), "--threads", "1", "--trust-new-host")  # fmt: skip
    return ws


@pytest.fixture(scope="module")
def first_probe(root: Path) -> dict[str, Any]:
    """The probe of the device as added, before anything is installed."""
    return dict(json.loads(cli(root, "device", "probe", NAME, "--json")))


@pytest.fixture(scope="module")
def setup_output(root: Path, first_probe: dict[str, Any]) -> str:
    """`device setup --offline`, with the host's wheel cache kept between runs."""
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(CACHE)
    try:
        return cli(root, "device", "setup", NAME, "--offline")
    finally:
        if old is None:
            del os.environ["XDG_CACHE_HOME"]
        else:
            os.environ["XDG_CACHE_HOME"] = old


def test_add_and_probe(first_probe: dict[str, Any]) -> None:
    probe = first_probe
    assert probe["arch"] == "aarch64" and probe["os_release"].startswith("Debian GNU/Linux 12")
    # qemu-user shows the host's x86 /proc/cpuinfo: the agent must not call that the device's CPU
    from edgelat.device_agents.agent import _cpu_model

    assert probe["cpu_model"] and probe["cpu_model"] != _cpu_model(machine="x86_64"), probe["cpu_model"]
    assert probe["tvm_version"] is None  # Debian's python3, nothing installed yet


def test_setup_offline_ships_the_aarch64_wheels(root: Path, setup_output: str) -> None:
    assert "TVM 0.27" in setup_output and "/.edgelat/venv-tvm-" in setup_output, setup_output
    assert json.loads(cli(root, "device", "probe", NAME, "--json"))["tvm_version"].startswith("0.27")


def test_profile_cross_compiled_kernels(root: Path, setup_output: str) -> None:
    cli(root, "profile", NAME, "--ops", "conv2d,dwconv2d,dense", "--samples", "7", "--unweighted", "--repeat", "2", "--min-repeat-ms", "1")
    from edgelat.workspace import open_workspace

    with open_workspace(root) as ws:
        rows = ws.store.rows("SELECT op, status, target FROM measurements WHERE device = :device", {"device": NAME})
    assert len(rows) >= 20 and {r["op"] for r in rows} == {"conv2d", "dwconv2d", "dense"}
    assert all(r["status"] == "ok" for r in rows), [dict(r) for r in rows if r["status"] != "ok"]
    assert all(json.loads(r["target"])["mcpu"] == "cortex-a72" for r in rows)


def test_measure_a_small_network(root: Path, setup_output: str, tmp_path: Path) -> None:
    from edgelat.nas import get_space

    space = get_space("nb201")
    onnx = space.export_onnx(space.sample(np.random.default_rng(0)), tmp_path / "cell.onnx")
    out = json.loads(cli(root, "measure", NAME, str(onnx), "--json"))
    assert out["median_ms"] > 0 and out["target"]["mcpu"] == "cortex-a72"


def test_the_device_computes_what_torch_and_the_host_build_compute(root: Path, setup_output: str) -> None:
    """A kernel and a whole network built for the rpi4 target give, on the device, the host build's and
    torch's outputs: the right code runs, not only some code."""
    import torch

    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler.e2e import run_network, run_on_host
    from edgelat.workspace import open_workspace

    torch.manual_seed(0)
    kernel = torch.nn.Conv2d(16, 24, 3, padding=1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2, padding=1), torch.nn.BatchNorm2d(16), torch.nn.ReLU6(),
        torch.nn.Conv2d(16, 16, 3, padding=1, groups=16), torch.nn.Hardswish(), torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(), torch.nn.Linear(16, 10),
    ).eval()  # fmt: skip
    cases = [(kernel.eval(), torch.randn(1, 16, 14, 14)), (net, torch.randn(1, 3, 32, 32))]
    with open_workspace(root) as ws:
        for module, x in cases:
            mod = relax_from_torch(module, x)
            on_device = run_network(ws, NAME, mod, [x.numpy()])
            on_host = run_on_host(mod, [x.numpy()])
            with torch.no_grad():
                expected = module(x).numpy()
            assert len(on_device) == 1 and on_device[0].shape == expected.shape
            np.testing.assert_allclose(on_device[0], on_host[0], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(on_device[0], expected, rtol=1e-4, atol=1e-4)


def test_a_tuned_build_computes_on_the_device_what_torch_computes(root: Path, setup_output: str) -> None:
    """The tuned recipe's whole path on an aarch64 device: MetaSchedule's candidates cross-compiled for the rpi4
    target (Cortex-A72, NEON), timed there by the agent, the best kept in the device's tuning database, and the
    network built from it computes torch's outputs."""
    import torch
    import tvm_ffi

    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler.e2e import run_network, run_on_host
    from edgelat.profiler.inventory import get_device
    from edgelat.profiler.tuning import KernelTuner
    from edgelat.workspace import open_workspace

    torch.manual_seed(1)
    net = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, stride=2, padding=1), torch.nn.ReLU(), torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
        torch.nn.Linear(8, 4),
    ).eval()  # fmt: skip
    x = torch.randn(1, 3, 16, 16)
    mod = relax_from_torch(net, x)
    with open_workspace(root) as ws:
        on_device = run_network(ws, NAME, mod, [x.numpy()], recipe="tuned", trials=2, rep_trials=0)
        on_host = run_on_host(mod, [x.numpy()])
        device = get_device(ws, NAME)
        target = device.target("tuned")
        tuner = KernelTuner(ws.tuning_dir(NAME), target, 1, device.preset_info.cross_compiler, lambda p, a: [])
        try:
            records = tuner.database.get_all_tuning_records()
        finally:
            tuner.close()
    with torch.no_grad():
        expected = net(x).numpy()
    assert target["mcpu"] == "cortex-a72" and "+neon" in target["mattr"], target
    # the candidates were timed on the device: the convolution, the pool and the dense layer each have a record
    # with a real run time (a failed candidate's is 1e10 s)
    best: dict[int, float] = {}
    for r in records:
        key = int(tvm_ffi.structural_hash(r.workload.mod))
        best[key] = min(best.get(key, 1e10), *(float(s) for s in r.run_secs or [1e10]))
    assert len(best) >= 3 and all(0 < t < 1 for t in best.values()), best
    np.testing.assert_allclose(on_device[0], on_host[0], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(on_device[0], expected, rtol=1e-4, atol=1e-4)


def test_a_profiled_kernel_computes_on_the_device_what_it_computes_here(root: Path, setup_output: str, tmp_path: Path) -> None:
    """A kernel library as a campaign builds it (rpi4 target, cross-compiled), run by the agent on the device,
    against the same kernel built for this host."""
    import platform

    import tvm

    from edgelat.profiler.builds import BuildRequest, build_kernel
    from edgelat.profiler.inventory import agent_session, get_device
    from edgelat.workspace import open_workspace

    cfg = CONV  # a 3x3 conv with bias and ReLU, as tests/test_builds.py builds it
    with open_workspace(root) as ws:
        device = get_device(ws, NAME)
        preset = device.preset_info
        arm = build_kernel(BuildRequest("conv2d", cfg, preset.target(), preset.cross_compiler, "aarch64"), str(tmp_path / "arm"))
        here = build_kernel(BuildRequest("conv2d", cfg, {"kind": "llvm"}, None, platform.machine()), str(tmp_path / "host"))
        assert arm.lib and here.lib and len(arm.kernels) == 1, (arm.error, here.error)
        kernel = arm.kernels[0]
        *ins, out = kernel["args"]
        rng = np.random.default_rng(0)
        arrays = [rng.standard_normal(shape).astype(dtype) for shape, dtype in ins]
        with agent_session(ws, device) as agent:
            (on_device,) = agent.run(Path(arm.lib), arrays, kernel=kernel["name"], outputs=[out])
    expected = tvm.runtime.tensor(np.zeros(out[0], dtype=out[1]))
    tvm.runtime.load_module(here.lib)[kernel["name"]](*[tvm.runtime.tensor(a) for a in arrays], expected)
    assert on_device.shape == tuple(out[0]) and np.abs(expected.numpy()).max() > 0
    np.testing.assert_allclose(on_device, expected.numpy(), rtol=1e-4, atol=1e-5)


def test_remove_leaves_no_agent_directory(emulated: Any, root: Path) -> None:
    cli(root, "device", "remove", NAME)
    assert sorted((emulated.root / "tmp").glob("edgelat-agent.*")) == []
