"""Kernel builds: registry config -> Relax -> fused PrimFuncs -> a shared library for the device.

Builds run through an executor (long-lived local worker processes, TVM imported once in each, or
a Dask cluster: :mod:`edgelat.profiler.executors`) as pure functions returning library bytes, and
land in a content-addressed cache on this host keyed by op, config, target, recipe, TVM version
and the fusion pipeline version, so nothing is built twice.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from edgelat.errors import BuildError, BuildTimeoutError
from edgelat.files import write_text_atomic

__all__ = [
    "BuildRequest",
    "BuiltKernel",
    "Builder",
    "build_candidate",
    "build_kernel",
    "cache_key",
    "compile_kernel",
    "compile_scheduled",
    "elf_machine",
    "gpu_device_code",
]

log = logging.getLogger(__name__)

# ELF e_machine values of the architectures edgelat builds for.
ELF_MACHINES = {"x86_64": 62, "aarch64": 183, "arm64": 183, "armv7l": 40}


@dataclass(frozen=True)
class BuildRequest:
    op: str
    config: dict[str, Any]
    # TVM target dict of the device's CPU.
    target: dict[str, Any]
    # Compiler that links the shared library; None means the host's.
    cross_compiler: str | None
    # The machine the library must run on (``uname -m``), checked against the ELF header.
    arch: str
    recipe: str = "default"
    # MetaSchedule trials per kernel (tuned recipe only).
    trials: int = 0


@dataclass
class BuiltKernel:
    key: str
    lib: str | None
    # One entry per PrimFunc, in call order: {"name": ..., "args": [[shape, dtype], ...]}.
    kernels: list[dict[str, Any]] = field(default_factory=list)
    build_s: float = 0.0
    # Seconds spent in MetaSchedule search (tuned recipe), part of build_s.
    tune_s: float = 0.0
    error: str | None = None
    cached: bool = False


def cache_key(req: BuildRequest) -> str:
    import tvm

    from edgelat.ops import FUSION_PIPELINE_VERSION

    blob = json.dumps(
        {
            "op": req.op,
            "cfg": req.config,
            "target": req.target,
            "cc": req.cross_compiler,
            "recipe": req.recipe,
            "tvm": tvm.__version__,
            "fusion": FUSION_PIPELINE_VERSION,
        },
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()


def elf_machine(path: str | os.PathLike[str]) -> int:
    with open(path, "rb") as f:
        header = f.read(20)
    if header[:4] != b"\x7fELF":
        raise BuildError(f"{path} is not an ELF file")
    return int.from_bytes(header[18:20], "little" if header[5] == 1 else "big")


def _cached(req: BuildRequest, cache_dir: str) -> BuiltKernel | None:
    key = cache_key(req)
    folder = Path(cache_dir) / key[:2]
    lib, meta = folder / f"{key}.so", folder / f"{key}.json"
    if lib.exists() and meta.exists():
        cached = BuiltKernel(**json.loads(meta.read_text()))
        cached.cached = True
        cached.lib = str(lib)
        return cached
    return None


def _store(cache_dir: str, built: BuiltKernel, data: bytes | None) -> BuiltKernel:
    """Put a build's library into the cache (a failed build is returned as it is, not cached)."""
    if data is None:
        return built
    folder = Path(cache_dir) / built.key[:2]
    folder.mkdir(parents=True, exist_ok=True)
    lib = folder / f"{built.key}.so"
    with tempfile.NamedTemporaryFile(dir=folder, suffix=".so", delete=False) as f:
        f.write(data)
    os.replace(f.name, lib)
    built.lib = str(lib)
    write_text_atomic(folder / f"{built.key}.json", json.dumps(asdict(built)))
    return built


def compile_kernel(req: BuildRequest, tuner: Any = None) -> tuple[BuiltKernel, bytes | None]:
    """Build one op configuration: its record and its library's bytes (None when the build failed). Never raises.

    A pure function of ``req`` (on any machine with TVM and the cross compiler) unless a ``tuner`` (a
    :class:`edgelat.profiler.tuning.KernelTuner`, the tuned recipe) is given: it times candidates on the device.
    """
    key = cache_key(req)
    start = time.perf_counter()
    tuned: list[float] = []
    with tempfile.TemporaryDirectory(prefix="edgelat-build-") as tmp:
        lib = Path(tmp) / "k.so"
        try:
            kernels = _compile(req, lib, tuner, tuned)
        except Exception as exc:  # noqa: BLE001 - a failed build is data, recorded with its error
            return BuiltKernel(
                key=key,
                lib=None,
                build_s=time.perf_counter() - start,
                error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)[-1500:]}",
            ), None
        data = lib.read_bytes()
    return BuiltKernel(key=key, lib=None, kernels=kernels, build_s=time.perf_counter() - start, tune_s=sum(tuned)), data


def build_kernel(req: BuildRequest, cache_dir: str, tuner: Any = None) -> BuiltKernel:
    """Build (or fetch from the cache) the library of one op configuration, in this process. Never raises."""
    return _cached(req, cache_dir) or _store(cache_dir, *compile_kernel(req, tuner))


def _compile(req: BuildRequest, lib: Path, tuner: Any, tune_seconds: list[float]) -> list[dict[str, Any]]:
    import tvm
    from tvm.support import cc

    from edgelat.ops import fuse, fused_groups, get_op, kernel_funcs
    from edgelat.profiler.recipes import get_recipe

    spec = get_op(req.op)
    fused, attrs = fuse(spec.emit(req.config))
    names = [g.name for g in fused_groups(fused, attrs)]
    funcs = kernel_funcs(fused)
    prims = {name: funcs[name].with_attr("global_symbol", name) for name in dict.fromkeys(names)}
    kernels = [{"name": name, "args": [[[int(d) for d in p.shape], str(p.dtype)] for p in prims[name].params]} for name in names]
    scheduled, searched = get_recipe(req.recipe).schedule(prims, tuner, req.trials)
    tune_seconds.append(searched)
    executable = compile_scheduled(tvm.IRModule(scheduled), prims, req.target, tuner)
    if req.cross_compiler:
        if shutil.which(req.cross_compiler) is None:
            raise BuildError(f"cross compiler {req.cross_compiler!r} not found; on Debian: apt-get install g++-aarch64-linux-gnu")
        executable.export_library(str(lib), fcompile=cc.cross_compiler(req.cross_compiler))
    else:
        executable.export_library(str(lib))
    want = ELF_MACHINES.get(req.arch)
    got = elf_machine(lib)
    if want is not None and got != want:
        raise BuildError(f"built library has ELF machine {got}, expected {want} for {req.arch}")
    return kernels


def compile_scheduled(mod: Any, unscheduled: Mapping[str, Any], target: dict[str, Any], tuner: Any = None) -> Any:
    """``tvm.compile`` of ``mod``, whose kernels (PrimFuncs named as in ``unscheduled``) a recipe has scheduled.

    A schedule replayed from another kernel's record (kernels share records by anchor block) can apply cleanly
    yet leave IR that does not lower (seen: a swish epilogue's intermediate used before its definition). When
    ``mod`` does not build, each scheduled kernel that does not build alone takes the fastest record of its
    anchor that does (``tuner.schedule_that_builds``) or, where none does, stays as it came (untuned); then
    ``mod`` is built again. Where no kernel is to blame, the first error stands."""
    import tvm

    try:
        return tvm.compile(mod, target=tvm.target.Target(target))
    except Exception:
        gvs = {gv.name_hint: gv for gv in mod.functions}
        broken = [name for name, func in unscheduled.items() if not mod[gvs[name]].same_as(func) and not _lowers(mod[gvs[name]], target)]
        if not broken:
            raise
        untuned = []
        for name in broken:
            func = unscheduled[name]
            other = tuner.schedule_that_builds(func, lambda f: _lowers(f, target)) if tuner is not None else None
            if other is None:
                untuned.append(name)
                mod[gvs[name]] = func
            else:
                other = other.with_attr("global_symbol", name)
                mod[gvs[name]] = other.with_attrs(func.attrs) if func.attrs else other
        log.warning(
            "%d tuned kernel(s) did not build with their anchor's fastest schedule: %d took the next that builds, %d stay untuned%s",
            len(broken),
            len(broken) - len(untuned),
            len(untuned),
            f" ({', '.join(untuned)})" if untuned else "",
        )
        return tvm.compile(mod, target=tvm.target.Target(target))


def _lowers(func: Any, target: dict[str, Any]) -> bool:
    """Whether a scheduled kernel builds on its own."""
    import tvm

    from edgelat.ops import main_module

    try:
        tvm.compile(main_module(func), target=tvm.target.Target(target))
    except Exception:  # noqa: BLE001 - any failure: it does not
        return False
    return True


def gpu_device_code(op: str, config: dict[str, Any], gpu_target: dict[str, Any]) -> tuple[str, str]:
    """Compile one op config for a GPU target and return (module kind, device source).

    GPU kernels need a schedule (thread binding) before they build: dlight's fallback rule
    gives every kernel one. Linking and timing need the device's own runtime (CUDA 12/13 on
    a Jetson, OpenCL on a phone), so this checks the compile path and returns the code.
    """
    import tvm
    from tvm import s_tir

    from edgelat.ops import fuse, fused_groups, get_op, kernel_funcs

    fused, attrs = fuse(get_op(op).emit(config))
    names = [g.name for g in fused_groups(fused, attrs)]
    funcs = kernel_funcs(fused)
    mod = tvm.IRModule({n: funcs[n].with_attr("global_symbol", n) for n in dict.fromkeys(names)})
    target = tvm.target.Target(gpu_target)
    with target:
        mod = s_tir.dlight.ApplyDefaultSchedule(s_tir.dlight.gpu.Fallback())(mod)
    executable = tvm.compile(mod, target=target)
    imported = list(executable.mod.imports)
    if not imported:
        raise BuildError(f"the {target.kind.name} build produced no device module (was the kernel scheduled?)")
    return str(imported[0].kind), str(imported[0].inspect_source())


T = TypeVar("T")


def build_candidate(mod_json: str, target: dict[str, Any], cross_compiler: str | None) -> bytes:
    """Compile one MetaSchedule candidate (``tvm.ir.save_json`` of its module); the shared library's bytes.

    A plain function of plain data, so that any build worker can run it (see :class:`Builder`)."""
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    from tvm.support import cc

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(tvm.ir.load_json(mod_json))
    lib = tvm.compile(mod, target=tvm.target.Target(target))
    with tempfile.TemporaryDirectory(prefix="edgelat-cand-") as tmp:
        out = Path(tmp) / "k.so"
        lib.export_library(str(out), fcompile=cc.cross_compiler(cross_compiler) if cross_compiler else None)
        return out.read_bytes()


class Builder:
    """Builds through one executor (:mod:`edgelat.profiler.executors`), cached on this host.

    Example:
        >>> with Builder(ws.cache_dir, workers=2) as b:  # doctest: +SKIP
        ...     built = b.submit(request).result()
    """

    def __init__(
        self, cache_dir: Path, workers: int | None = None, scheduler: str | None = None, cross_compiler: str | None = None
    ) -> None:
        """``workers=None`` uses one local worker per core; ``workers=0`` builds in this process (ops registered
        at run time, as tests do, exist only here). ``scheduler``: a Dask scheduler's address instead, whose
        workers are checked for TVM and ``cross_compiler`` now."""
        from edgelat.profiler.executors import dask_executor

        self.cache_dir = str(cache_dir)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.scheduler = scheduler
        self.workers = max(1, os.cpu_count() or 2) if workers is None else workers
        self._executor: Executor | None
        if scheduler is not None:
            self._executor = dask_executor(scheduler, cross_compiler)
        else:
            self._executor = self._new_pool() if self.workers else None

    def builds_beside(self, device: Any) -> bool:
        """Whether a build can run on a core ``device`` times on: this host's workers beside ``local`` or a loopback
        device, or a Dask worker on the device's machine (found by its address)."""
        from edgelat.profiler.executors import DaskExecutor, builds_beside

        device_ip = None if device.shares_host_cpu else device.transport_kind.ip(device.settings)
        if device_ip is None and not device.shares_host_cpu:
            return False  # a device whose address is not known here (behind a jump host): not a worker of ours
        workers = self._executor.worker_ips() if isinstance(self._executor, DaskExecutor) else None
        return builds_beside(device_ip, workers)

    def _new_pool(self) -> Executor:
        from edgelat.profiler.executors import local_executor

        return local_executor(self.workers)

    def submit(self, req: BuildRequest) -> Future[BuiltKernel]:
        result: Future[BuiltKernel] = Future()
        cached = _cached(req, self.cache_dir)
        if cached is not None or self._executor is None:
            result.set_result(cached or build_kernel(req, self.cache_dir))
            return result

        def store(done: Future[tuple[BuiltKernel, bytes | None]]) -> None:
            try:
                result.set_result(_store(self.cache_dir, *done.result()))
            except BaseException as exc:  # noqa: BLE001 - a lost worker or a cancelled build, delivered to the caller
                result.set_exception(exc)

        self._executor.submit(compile_kernel, req).add_done_callback(store)
        return result

    def call(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """``fn(*args)`` in a worker (in this process without workers); ``fn`` and ``args`` must pickle."""
        if self._executor is None:
            future: Future[T] = Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - delivered through the future, as a worker's would be
                future.set_exception(exc)
            return future
        return self._executor.submit(fn, *args)

    def wait(self, future: Future[T], timeout: float | None) -> T:
        """``future``'s result. One not done after ``timeout`` seconds (an LLVM compile can run away on a huge
        unroll) raises BuildTimeoutError. Local workers are then killed and replaced (the other builds still
        running in them fail too: they cannot be told apart); on Dask the task is cancelled."""
        try:
            return future.result(timeout=timeout)
        except FutureTimeoutError:
            if self.scheduler is not None:
                future.cancel()
            elif self._executor is not None:
                old, self._executor = self._executor, self._new_pool()
                for process in list((getattr(old, "_processes", None) or {}).values()):
                    process.kill()
                old.shutdown(wait=False, cancel_futures=True)
            raise BuildTimeoutError(f"a build ran for more than {timeout:g} s; its worker was replaced") from None

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Builder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
