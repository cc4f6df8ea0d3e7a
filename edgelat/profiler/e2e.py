"""Whole-network ground truth: build a network with the recipe's pipeline, time it on the device.

The network goes through exactly the fusion pipeline the kernels were profiled with
(:mod:`edgelat.ops.lowering`), then TVM's default build; the agent times the VM end to end
with the same protocol and thread count as kernels.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import statistics
import tempfile
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import tvm

import edgelat
from edgelat.errors import AgentReplyError, BuildError
from edgelat.ops import fuse, kernel_funcs
from edgelat.ops.footprint import network_footprint
from edgelat.ops.lowering import shape_of
from edgelat.profiler.builds import compile_scheduled
from edgelat.profiler.inventory import agent_session, get_device
from edgelat.profiler.recipes import Recipe, first_line, get_recipe
from edgelat.workspace import Workspace, measured_by

__all__ = [
    "NetworkMeasurement",
    "OutputCheck",
    "check_outputs",
    "build_network",
    "measure_network",
    "stored_measurements",
    "network_hash",
    "run_network",
    "run_on_host",
]

log = logging.getLogger(__name__)


@dataclass
class NetworkMeasurement:
    device: str
    recipe: str
    name: str
    median_ms: float
    mean_ms: float
    std_ms: float
    min_ms: float
    max_ms: float
    repeats: int
    number: int
    threads: int
    # The kernels the VM called in one run, timed in place: [name, ms].
    kernels: list[list[Any]] = field(default_factory=list)
    # The TVM target the network was built for (None in measurements made before it was recorded).
    target: dict[str, Any] | None = None
    # With ``check``: the library timed, run once on a random input against this host's build (OutputCheck's fields).
    check: dict[str, Any] | None = None
    # Lightness (None in measurements made before they were recorded). The deployable size: the library
    # shipped, weights included. Peak resident memory of a fresh process loading and running the network once
    # (Python and TVM's runtime included: runtime_memory_mb is that process before loading it).
    size_bytes: int | None = None
    peak_memory_mb: float | None = None
    runtime_memory_mb: float | None = None
    # From the module (edgelat.ops.footprint): weights embedded, activation memory Relax's planner allocates, kernels.
    params_bytes: int | None = None
    planned_activation_bytes: int | None = None
    kernels_built: int | None = None
    workspace_bytes: int | None = None
    # For a recipe that tunes: a digest of the kernels as the device's tuning database scheduled them
    # (:func:`schedules_digest`); a stored measurement stands for a new one only while it is the same.
    schedules: str | None = None
    # Energy, where the board has power monitors the agent can read (Jetson's INA3221): the mean board power
    # sampled during the timed runs, the rail it came from, and that power times the median latency.
    power_mw: float | None = None
    power_rail: str | None = None
    energy_mj: float | None = None

    @property
    def size_mb(self) -> float | None:
        return None if self.size_bytes is None else self.size_bytes / 2**20

    @property
    def params_mb(self) -> float | None:
        return None if self.params_bytes is None else self.params_bytes / 2**20

    @property
    def planned_activation_mb(self) -> float | None:
        return None if self.planned_activation_bytes is None else self.planned_activation_bytes / 2**20


def network_hash(mod: tvm.IRModule) -> str:
    return hashlib.sha256(tvm.ir.save_json(mod["main"]).encode()).hexdigest()[:16]


def build_network(
    mod: tvm.IRModule,
    target: dict[str, Any],
    out: Path,
    cross_compiler: str | None = None,
    recipe: Recipe | None = None,
    tuner: Any = None,
    trials: int = 0,
) -> list[list[Any]]:
    """Compile ``mod`` with ``recipe`` (default: untuned) into a shared library; returns its input specs."""
    recipe = recipe or get_recipe("default")
    from tvm.support import cc

    fused = kernel_funcs(fuse(mod)[0])
    prims = {gv.name_hint: (gv, func) for gv, func in fused.functions.items() if isinstance(func, tvm.tirx.PrimFunc)}
    scheduled, _ = recipe.schedule({name: func for name, (_, func) in prims.items()}, tuner, trials)
    for name, (gv, func) in prims.items():
        if scheduled[name] is not func:
            fused[gv] = scheduled[name].with_attrs(func.attrs) if func.attrs else scheduled[name]
    inputs = _input_specs(mod)
    try:
        executable = compile_scheduled(fused, {name: func for name, (_, func) in prims.items()}, target, tuner)
        out.parent.mkdir(parents=True, exist_ok=True)
        executable.export_library(str(out), fcompile=cc.cross_compiler(cross_compiler) if cross_compiler else None)
    except Exception as exc:  # noqa: BLE001 - surfaced as one clear error
        raise BuildError(f"could not build the network: {type(exc).__name__}: {first_line(exc)}") from exc
    return inputs


def _input_specs(mod: tvm.IRModule) -> list[list[Any]]:
    return [[list(shape_of(p) or ()), str(p.ty.dtype)] for p in mod["main"].params]


def compile_network(mod_json: str, target: dict[str, Any], cross_compiler: str | None, recipe: str) -> bytes:
    """An untuned network (``tvm.ir.save_json`` of its module) built into a shared library's bytes: a pure
    function of its arguments, run in a build worker (:mod:`edgelat.profiler.executors`)."""
    with tempfile.TemporaryDirectory(prefix="edgelat-net-") as tmp:
        out = Path(tmp) / "net.so"
        build_network(tvm.ir.load_json(mod_json), target, out, cross_compiler, get_recipe(recipe))
        return out.read_bytes()


# Seconds a whole-network build may take in a build worker before it is presumed stuck.
NETWORK_BUILD_TIMEOUT_S = 1800.0


_LOCAL_NETWORK_BUILDER: Any = None


def _network_builder(ws: Workspace, scheduler: str | None, cross_compiler: str | None) -> tuple[Any, bool]:
    """Where an untuned network builds: a Dask cluster's worker (a builder closed after this network), or one
    long-lived local worker process shared by every network this process builds (started once: it imports
    TVM once, and a runaway compile can be cut off). Returns the builder and whether to close it."""
    from edgelat.profiler.builds import Builder

    global _LOCAL_NETWORK_BUILDER
    if scheduler is not None:
        return Builder(ws.cache_dir, scheduler=scheduler, cross_compiler=cross_compiler), True
    if _LOCAL_NETWORK_BUILDER is None:
        _LOCAL_NETWORK_BUILDER = Builder(ws.cache_dir, workers=1)
    return _LOCAL_NETWORK_BUILDER, False


def _build_for(
    ws: Workspace,
    device: Any,
    agent: Any,
    mod: tvm.IRModule,
    lib: Path,
    recipe: Recipe,
    threads: int,
    trials: int,
    scheduler: str | None = None,
    rep_trials: int | None = None,
) -> list[list[Any]]:
    """Build ``mod`` into ``lib`` for ``device`` with ``recipe`` (a tuned one times candidates through ``agent``).

    Builds go through an executor (:mod:`edgelat.profiler.executors`): an untuned network is built whole in a
    build worker (:func:`_network_builder`); a tuned one is assembled here, between the device's timings of
    its candidates, which are built in workers (a Dask cluster's with ``scheduler``)."""
    from edgelat.profiler.builds import Builder

    preset = device.preset_info
    if not recipe.tunes:
        builder, owned = _network_builder(ws, scheduler, preset.cross_compiler)
        try:
            job = builder.call(compile_network, tvm.ir.save_json(mod), device.target(recipe.name), preset.cross_compiler, recipe.name)
            lib.write_bytes(builder.wait(job, NETWORK_BUILD_TIMEOUT_S))
        finally:
            if owned:
                builder.close()
        return _input_specs(mod)
    from edgelat.profiler.tuning import KernelTuner, Representatives

    # Candidates are built in workers (in parallel, and a runaway compile is cut off), between timings.
    workers = Builder(ws.cache_dir, scheduler=scheduler, cross_compiler=preset.cross_compiler)
    tuner = KernelTuner(
        ws.tuning_dir(device.name),
        device.target(recipe.name),
        threads,
        preset.cross_compiler,
        lambda p, a: agent.time_library(Path(p), a, caches=recipe.candidate_caches),
        builder=workers,
        # None: representatives as the tuner's defaults are; 0: none.
        representatives=Representatives() if rep_trials is None else Representatives(rep_trials) if rep_trials else None,
    )
    try:
        return build_network(mod, device.target(recipe.name), lib, preset.cross_compiler, recipe, tuner, trials)
    finally:
        tuner.close()
        workers.close()


def schedules_digest(ws: Workspace, device: Any, mod: tvm.IRModule, recipe: Recipe, threads: int) -> str | None:
    """What a tuned build of ``mod`` runs now: a digest of its kernels as the device's tuning database schedules
    them (how records are applied included); None when a kernel has no record yet (a build would tune it).

    A tuned network's time depends on the database, which grows with every profile and build, and on the code
    that applies its records: a measurement is reused only where this digest has not changed."""
    import tvm_ffi

    from edgelat.profiler.tuning import KernelTuner

    def no_timing(path: str, args: list[list[Any]]) -> list[float]:
        raise AssertionError("a digest looks schedules up, it times nothing")

    fused = kernel_funcs(fuse(mod)[0])
    tuner = KernelTuner(ws.tuning_dir(device.name), device.target(recipe.name), threads, device.preset_info.cross_compiler, no_timing)
    digest = hashlib.sha256()
    try:
        for func in fused.functions.values():
            if not isinstance(func, tvm.tirx.PrimFunc):
                continue
            scheduled = tuner.scheduled(func)
            if scheduled is None:
                return None
            digest.update(f"{tvm_ffi.structural_hash(scheduled)};".encode())
    finally:
        tuner.close()
    return digest.hexdigest()[:16]


def run_network(
    ws: Workspace,
    device_name: str,
    mod: tvm.IRModule,
    inputs: Sequence[Any],
    *,
    recipe: str = "default",
    trials: int = 16,
    rep_trials: int | None = None,
) -> list[Any]:
    """What ``mod``, built for ``device_name`` as it is measured, computes there on ``inputs`` (numpy arrays)."""
    chosen = get_recipe(recipe)
    chosen.check(trials)
    device = get_device(ws, device_name)
    with agent_session(ws, device, threads=device.measure_threads) as agent, tempfile.TemporaryDirectory(prefix="edgelat-net-") as tmp:
        lib = Path(tmp) / f"{network_hash(mod)}.so"
        _build_for(ws, device, agent, mod, lib, chosen, device.measure_threads, trials, rep_trials=rep_trials)
        try:
            return agent.run(lib, inputs)
        except AgentReplyError as exc:
            raise BuildError(f"the device could not run the network: {exc.remote_message}") from exc


def run_on_host(mod: tvm.IRModule, inputs: Sequence[Any]) -> list[Any]:
    """What ``mod`` computes on ``inputs`` built untuned for this host's generic CPU: the reference."""
    from tvm.runtime.vm import VirtualMachine

    fused = kernel_funcs(fuse(mod)[0])
    dev = tvm.cpu(0)
    result = VirtualMachine(tvm.compile(fused, target=tvm.target.Target({"kind": "llvm"})), dev)["main"](
        *[tvm.runtime.tensor(x, dev) for x in inputs]
    )
    outs = list(result) if not hasattr(result, "numpy") else [result]
    return [o.numpy() for o in outs]


@dataclass
class OutputCheck:
    """A network's outputs on the device against the same network built for this host, on one random input."""

    max_abs_error: float
    max_abs_output: float
    # Differences within this are rounding (another CPU's vector width, fused multiply-adds).
    tolerance: float

    @property
    def ok(self) -> bool:
        return self.max_abs_error <= self.tolerance


def check_outputs(ws: Workspace, device_name: str, mod: tvm.IRModule, *, recipe: str = "default", seed: int = 0) -> OutputCheck:
    """Run ``mod`` once on the device and once built for this host; how far apart their outputs are."""
    inputs = random_inputs(mod, seed)
    return compare_outputs(run_network(ws, device_name, mod, inputs, recipe=recipe), run_on_host(mod, inputs))


def random_inputs(mod: tvm.IRModule, seed: int = 0) -> list[Any]:
    """One random input per parameter of ``mod``'s main function (normal floats; integers 0 or 1)."""
    import numpy as np

    rng = np.random.default_rng(seed)
    inputs = []
    for p in mod["main"].params:
        shape, dtype = [int(d) for d in shape_of(p) or ()], str(p.ty.dtype)
        inputs.append(rng.standard_normal(shape).astype(dtype) if "float" in dtype else rng.integers(0, 2, size=shape).astype(dtype))
    return inputs


def compare_outputs(device_outs: Sequence[Any], host_outs: Sequence[Any]) -> OutputCheck:
    """How far the device's outputs are from the host's (a BuildError when their shapes differ)."""
    import numpy as np

    if len(device_outs) != len(host_outs) or any(d.shape != h.shape for d, h in zip(device_outs, host_outs, strict=False)):
        raise BuildError(f"the device returned outputs of shapes {[d.shape for d in device_outs]}, the host {[h.shape for h in host_outs]}")
    error = max(
        (float(np.max(np.abs(d.astype("float64") - h))) for d, h in zip(device_outs, host_outs, strict=True) if d.size), default=0.0
    )
    scale = max((float(np.max(np.abs(h))) for h in host_outs if h.size), default=0.0)
    return OutputCheck(error, scale, 1e-3 * max(1.0, scale))


def _stored(ws: Workspace, device: Any, key: str, recipe: str, threads: int, target: dict[str, Any], schedules: str | None) -> list[NetworkMeasurement]:
    """The stored measurements of the network ``key`` built the same way (recipe, threads, target; tuned: the
    same schedules), newest first. Older rows have no memory, and older tuned ones no schedules: left out."""
    rows = ws.store.rows(
        "SELECT data FROM network_measurements WHERE device = :device AND recipe = :recipe AND network_hash = :hash AND threads = :threads "
        "ORDER BY id DESC",
        {"device": device.name, "recipe": recipe, "hash": key, "threads": threads},
    )
    found = [NetworkMeasurement(**json.loads(row["data"])) for row in rows]
    return [m for m in found if m.target == target and m.peak_memory_mb is not None and m.schedules == schedules]


def stored_measurements(ws: Workspace, device_name: str, mod: tvm.IRModule, *, recipe: str = "default", threads: int | None = None) -> list[NetworkMeasurement]:
    """The workspace's measurements of ``mod`` that stand for a new one on ``device_name`` (built the same way
    now: recipe, threads, target and, for a tuned recipe, the same schedules), newest first."""
    chosen = get_recipe(recipe)
    device = get_device(ws, device_name)
    n_threads = threads or device.measure_threads
    schedules = schedules_digest(ws, device, mod, chosen, n_threads) if chosen.tunes else None
    if chosen.tunes and schedules is None:  # a kernel without a record: a build would tune it, nothing stored stands for that
        return []
    return _stored(ws, device, network_hash(mod), recipe, n_threads, device.target(recipe), schedules)


def _kept_library(folder: Path | None, key: str, recipe: str, target: dict[str, Any], schedules: str | None) -> Path | None:
    """Where ``measure_network(library_dir=folder)`` keeps the library of network ``key`` built this way."""
    if folder is None:
        return None
    how = hashlib.sha256(json.dumps([recipe, target, schedules], sort_keys=True).encode()).hexdigest()[:12]
    return folder / f"{key}-{how}.so"


def measure_network(
    ws: Workspace,
    device_name: str,
    mod: tvm.IRModule,
    *,
    name: str = "network",
    recipe: str = "default",
    threads: int | None = None,
    repeat: int = 7,
    min_repeat_ms: float = 100.0,
    per_kernel: bool = True,
    trials: int = 16,
    rep_trials: int | None = None,
    reuse: bool = False,
    check: bool = False,
    scheduler: str | None = None,
    library_dir: Path | None = None,
) -> NetworkMeasurement:
    """Build ``mod`` for ``device_name`` and time it there end to end; stored in the workspace.

    With ``reuse``, a stored measurement of the same network, recipe and threads is returned
    instead of measuring again. With ``check``, the library timed also runs once on a random input
    and its outputs are compared with this host's build (``result.check``; see :class:`OutputCheck`).
    ``scheduler``: build on this Dask cluster (see :func:`_build_for`). ``library_dir``: keep the library
    built there, and time one kept there of the same network built the same way (recipe, target; tuned: the
    same schedules) instead of building it again; a fresh process on the device still loads it.
    """
    chosen = get_recipe(recipe)
    chosen.check(trials)
    device = get_device(ws, device_name)
    n_threads = threads or device.measure_threads
    target = device.target(recipe)
    key = network_hash(mod)
    looks_up = (reuse and not check) or library_dir is not None
    schedules = schedules_digest(ws, device, mod, chosen, n_threads) if chosen.tunes and looks_up else None
    if reuse and not check and (schedules is not None or not chosen.tunes):
        stored = _stored(ws, device, key, recipe, n_threads, target, schedules)
        if stored:
            return stored[0]
    footprint = network_footprint(mod)
    with agent_session(ws, device, threads=n_threads) as agent, tempfile.TemporaryDirectory(prefix="edgelat-net-") as tmp:
        kept = _kept_library(library_dir, key, recipe, target, schedules) if schedules is not None or not chosen.tunes else None
        if kept is not None and kept.exists():
            lib, inputs = kept, _input_specs(mod)
        else:
            lib = Path(tmp) / f"{key}.so"
            inputs = _build_for(ws, device, agent, mod, lib, chosen, n_threads, trials, scheduler, rep_trials)
            if chosen.tunes and schedules is None:  # (after the build, which tuned the kernels the database lacked)
                schedules = schedules_digest(ws, device, mod, chosen, n_threads)
            kept = _kept_library(library_dir, key, recipe, target, schedules)
            if kept is not None:
                kept.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(lib, kept.with_suffix(".part"))
                kept.with_suffix(".part").replace(kept)
        size_bytes = lib.stat().st_size
        remote = agent.remote_library(lib)
        agent.transport.put(lib, remote)
        try:
            reply = agent.request(
                "bench_network",
                {"lib": remote, "inputs": inputs, "repeat": repeat, "min_repeat_ms": min_repeat_ms, "per_kernel": per_kernel},
                timeout=1800,
            )
            memory = agent.request("memory_network", {"lib": remote, "inputs": inputs}, timeout=900)
            checked = None
            if check:
                inputs_now = random_inputs(mod)
                outcome = compare_outputs(agent.run(lib, inputs_now), run_on_host(mod, inputs_now))
                checked = {**asdict(outcome), "ok": outcome.ok}
        except AgentReplyError as exc:
            raise BuildError(f"the device could not run the network: {exc.remote_message}") from exc
    ms = [s * 1000 for s in reply["seconds"]]
    power = reply.get("power") or {}
    energy = (
        {"power_mw": power["mean_mw"], "power_rail": power["rail"], "energy_mj": power["mean_mw"] * statistics.median(ms) / 1000}
        if power
        else {}
    )
    result = NetworkMeasurement(
        device=device.name, recipe=recipe, name=name, median_ms=statistics.median(ms), mean_ms=statistics.fmean(ms),
        std_ms=statistics.pstdev(ms), min_ms=min(ms), max_ms=max(ms), repeats=len(ms), number=int(reply["number"]), threads=n_threads,
        kernels=[[n, t * 1000] for n, t in reply.get("kernels", [])], target=target, check=checked, size_bytes=size_bytes,
        peak_memory_mb=memory["peak_mb"], runtime_memory_mb=memory["runtime_mb"], params_bytes=footprint.params_bytes,
        planned_activation_bytes=footprint.activation_bytes, kernels_built=footprint.kernels,
        workspace_bytes=footprint.workspace_bytes, schedules=schedules, **energy,
    )  # fmt: skip
    ws.store.insert(
        "network_measurements",
        {
            "uid": uuid.uuid4().hex,
            "device": device.name,
            "recipe": recipe,
            "name": name,
            "network_hash": key,
            "threads": n_threads,
            "median_ms": result.median_ms,
            "data": json.dumps(asdict(result)),
            "measured_by": measured_by(),
            "edgelat_version": edgelat.__version__,
        },
    )
    return result
