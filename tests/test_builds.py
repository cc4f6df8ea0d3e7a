"""Kernel builds: local and aarch64 libraries, the content-addressed cache, recorded failures."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from edgelat.ops import get_op
from edgelat.profiler.builds import Builder, BuildRequest, build_kernel, elf_machine
from edgelat.profiler.presets import get_preset

CONV = {
    "n": 1,
    "cin": 16,
    "h": 14,
    "w": 14,
    "cout": 32,
    "k": 3,
    "stride": 1,
    "pad": 1,
    "groups": 1,
    "dilation": 1,
    "epilogue": "add.c+relu",
}


def _request(preset: str, cfg: dict = CONV, op: str = "conv2d") -> BuildRequest:
    p = get_preset(preset)
    return BuildRequest(op, cfg, p.target(), p.cross_compiler, p.arch)


def test_local_build_is_cached(tmp_path: Path) -> None:
    first = build_kernel(_request("local"), str(tmp_path))
    assert first.error is None and not first.cached
    assert [k["name"] for k in first.kernels] == ["fused_conv2d_add_relu"]
    assert first.kernels[0]["args"][0] == [[1, 16, 14, 14], "float32"]
    again = build_kernel(_request("local"), str(tmp_path))
    assert again.cached and again.lib == first.lib and again.key == first.key
    other = build_kernel(_request("local", {**CONV, "cout": 48}), str(tmp_path))
    assert other.key != first.key


def test_local_library_computes_the_right_thing(tmp_path: Path) -> None:
    import torch
    import tvm

    built = build_kernel(_request("local"), str(tmp_path))
    assert built.lib is not None
    fn = tvm.runtime.load_module(built.lib)[built.kernels[0]["name"]]
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype("float32") for s in ([1, 16, 14, 14], [32, 16, 3, 3], [1, 32, 1, 1]))
    out = tvm.runtime.empty((1, 32, 14, 14), "float32", tvm.cpu())
    fn(tvm.runtime.tensor(x), tvm.runtime.tensor(w), tvm.runtime.tensor(b), out)
    want = torch.relu(torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(w), padding=1) + torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-4, atol=1e-4)


@pytest.mark.skipif(shutil.which("aarch64-linux-gnu-g++") is None, reason="needs Debian's g++-aarch64-linux-gnu (.ci/run installs it)")
@pytest.mark.parametrize("preset", ["rpi4", "rpi5", "jetson-orin"])
def test_aarch64_build_is_an_aarch64_library(tmp_path: Path, preset: str) -> None:
    built = build_kernel(_request(preset), str(tmp_path))
    assert built.error is None, built.error
    assert elf_machine(built.lib) == 183


def test_build_failure_is_returned_not_raised(tmp_path: Path) -> None:
    bad = {**CONV, "groups": 3}  # 16 input channels do not split into 3 groups
    built = build_kernel(_request("local", bad), str(tmp_path))
    assert built.lib is None and built.error


def test_worker_pool_builds_in_parallel(tmp_path: Path) -> None:
    spec = get_op("dense")
    cfgs = [spec.sample(np.random.default_rng(i), []) for i in range(4)]
    with Builder(tmp_path, workers=2) as builder:
        results = [f.result(timeout=300) for f in [builder.submit(_request("local", c, "dense")) for c in cfgs]]
    assert all(r.error is None and Path(r.lib).exists() for r in results)


@pytest.mark.parametrize(
    ("preset", "kind", "marker"),
    [("jetson-nano", "cuda", "__global__"), ("jetson-orin", "cuda", "__global__"), ("android-arm64", "opencl", "__kernel")],
)
def test_gpu_targets_produce_device_code(preset: str, kind: str, marker: str) -> None:
    from edgelat.profiler.builds import gpu_device_code

    got_kind, source = gpu_device_code("conv2d", CONV, get_preset(preset).gpu_target)
    assert got_kind == kind
    assert marker in source and "fused_conv2d_add_relu" in source


def test_build_workers_exit_when_their_parent_is_killed(tmp_path: Path) -> None:
    """SIGKILL gives the pool no chance to shut down: the workers (and multiprocessing's resource tracker)
    must notice on their own instead of running on, orphaned."""
    import os
    import signal
    import subprocess
    import sys
    import time

    script = (
        "import os, sys, time\n"
        "from edgelat.profiler.builds import Builder\n"
        f"b = Builder({str(tmp_path)!r}, workers=2)\n"
        "print(b.call(os.getpid).result(timeout=120), flush=True)\n"
        "time.sleep(600)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    worker = int(proc.stdout.readline())
    children = {int(c) for t in Path(f"/proc/{proc.pid}/task").iterdir() for c in (t / "children").read_text().split()}
    assert worker in children
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.time() + 20
    alive = children
    while alive and time.time() < deadline:
        time.sleep(0.5)
        alive = {pid for pid in alive if Path(f"/proc/{pid}").exists() and "Z" not in Path(f"/proc/{pid}/stat").read_text().split()[2]}
    assert not alive, f"still running after their parent was killed: {sorted(alive)}"


@pytest.mark.parametrize("another_builds", [False, True])
def test_a_tuned_kernel_that_does_not_lower_takes_another_record_or_is_built_untuned_in_its_network(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, another_builds: bool
) -> None:
    """A schedule replayed from another kernel's record can apply yet not lower: the kernel takes the fastest record
    of its anchor that builds (the tuner's answer, asked with a check that compiles it) or, where none does, is
    built as it came (untuned); the others as scheduled; the network computes what it does."""
    import torch
    import tvm
    from tvm import te

    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler.e2e import build_network, run_on_host
    from edgelat.profiler.recipes import TunedRecipe

    a = te.placeholder((4,), name="a")
    stray = te.create_prim_func([a, te.compute((4,), lambda i: a[i] + 1.0, name="T_add_intermediate")])

    class Broken(TunedRecipe):
        def schedule(self, funcs, tuner=None, trials=0):  # type: ignore[no-untyped-def]
            # Every kernel "scheduled" into a body whose buffers it does not define: none lowers.
            return {name: func.with_body(stray.body) for name, func in funcs.items()}, 0.0

    class Records:
        """A tuner whose next record is the kernel itself (it builds) or a copy of the broken one (it does not)."""

        asked: list[tuple[bool, bool]] = []

        def schedule_that_builds(self, func, builds):  # type: ignore[no-untyped-def]
            self.asked.append((builds(func), builds(func.with_body(stray.body))))
            candidate = func if another_builds else func.with_body(stray.body)
            return candidate if builds(candidate) else None

    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()).eval()
    x = torch.randn(1, 3, 8, 8)
    mod = relax_from_torch(net, x)
    tuner = Records()
    build_network(mod, {"kind": "llvm"}, tmp_path / "net.so", recipe=Broken(), tuner=tuner)
    assert tuner.asked == [(True, False)]  # asked once, for the one kernel, with a check that compiles it
    lib = tvm.runtime.load_module(str(tmp_path / "net.so"))
    vm = tvm.runtime.vm.VirtualMachine(lib, tvm.cpu())
    out = vm["main"](tvm.runtime.tensor(x.numpy()))
    out = out if hasattr(out, "numpy") else out[0]
    assert np.allclose(out.numpy(), net(x).detach().numpy(), atol=1e-5)
    took, untuned = (1, 0) if another_builds else (0, 1)
    assert f"1 tuned kernel(s) did not build with their anchor's fastest schedule: {took} took the next that builds, {untuned} stay untuned" in caplog.text
    assert np.allclose(run_on_host(mod, [x.numpy()])[0], net(x).detach().numpy(), atol=1e-5)
