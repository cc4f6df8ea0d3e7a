"""Kernel builds: registry config -> Relax -> fused PrimFuncs -> a shared library for the device.

Builds run in long-lived worker processes (TVM imports once per worker) and land in a
content-addressed cache keyed by op, config, target, recipe, TVM version and the fusion
pipeline version, so nothing is built twice.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from dataclasses import asdict, dataclass, field
from multiprocessing import get_context
from pathlib import Path
from typing import Any, TypeVar

from edgelat.errors import BuildError, BuildTimeoutError
from edgelat.files import write_text_atomic

__all__ = ["BuildRequest", "BuiltKernel", "Builder", "build_kernel", "cache_key", "elf_machine", "gpu_device_code"]

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


def build_kernel(req: BuildRequest, cache_dir: str, tuner: Any = None) -> BuiltKernel:
    """Build (or fetch from the cache) the library of one op configuration. Never raises.

    The tuned recipe needs ``tuner`` (a :class:`edgelat.profiler.tuning.KernelTuner`).
    """
    key = cache_key(req)
    folder = Path(cache_dir) / key[:2]
    lib, meta = folder / f"{key}.so", folder / f"{key}.json"
    if lib.exists() and meta.exists():
        cached = BuiltKernel(**json.loads(meta.read_text()))
        cached.cached = True
        cached.lib = str(lib)
        return cached
    start = time.perf_counter()
    tuned: list[float] = []
    try:
        kernels = _compile(req, lib, tuner, tuned)
    except Exception as exc:  # noqa: BLE001 - a failed build is data, recorded with its error
        return BuiltKernel(
            key=key,
            lib=None,
            build_s=time.perf_counter() - start,
            error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=3)[-1500:]}",
        )
    built = BuiltKernel(key=key, lib=str(lib), kernels=kernels, build_s=time.perf_counter() - start, tune_s=sum(tuned))
    write_text_atomic(meta, json.dumps(asdict(built)))
    return built


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
    prims, searched = get_recipe(req.recipe).schedule(prims, tuner, req.trials)
    tune_seconds.append(searched)
    executable = tvm.compile(tvm.IRModule(prims), target=tvm.target.Target(req.target))
    lib.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
        out = Path(tmp) / "k.so"
        if req.cross_compiler:
            if shutil.which(req.cross_compiler) is None:
                raise BuildError(f"cross compiler {req.cross_compiler!r} not found; on Debian: apt-get install g++-aarch64-linux-gnu")
            executable.export_library(str(out), fcompile=cc.cross_compiler(req.cross_compiler))
        else:
            executable.export_library(str(out))
        want = ELF_MACHINES.get(req.arch)
        got = elf_machine(out)
        if want is not None and got != want:
            raise BuildError(f"built library has ELF machine {got}, expected {want} for {req.arch}")
        os.replace(out, lib)
    return kernels


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


def _init_worker(parent: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    import tvm  # noqa: F401 - import once per worker, not once per build

    import edgelat.ops  # noqa: F401


T = TypeVar("T")


def build_candidate(mod_json: str, target: dict[str, Any], out: str, cross_compiler: str | None) -> str:
    """Compile one MetaSchedule candidate (``tvm.ir.save_json`` of its module) into the shared library ``out``.

    A plain function of plain data, so that a build worker can run it (see :class:`Builder`)."""
    import tvm
    from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
    from tvm.support import cc

    mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(tvm.ir.load_json(mod_json))
    lib = tvm.compile(mod, target=tvm.target.Target(target))
    lib.export_library(out, fcompile=cc.cross_compiler(cross_compiler) if cross_compiler else None)
    return out


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (SIGKILL leaves no time to shut the pool down) exits, and with the last
    worker gone multiprocessing's resource tracker exits too."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


class Builder:
    """A pool of long-lived build workers sharing one cache directory.

    Example:
        >>> with Builder(ws.cache_dir, workers=2) as b:  # doctest: +SKIP
        ...     built = b.submit(request).result()
    """

    def __init__(self, cache_dir: Path, workers: int | None = None) -> None:
        """``workers=None`` uses one worker per core; ``workers=0`` builds in this process
        (ops registered at run time, as tests do, exist only here)."""
        self.cache_dir = str(cache_dir)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        self.workers = max(1, os.cpu_count() or 2) if workers is None else workers
        self._pool = self._new_pool() if self.workers else None

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),))

    def submit(self, req: BuildRequest) -> Future[BuiltKernel]:
        if self._pool is None:
            future: Future[BuiltKernel] = Future()
            future.set_result(build_kernel(req, self.cache_dir))
            return future
        return self._pool.submit(build_kernel, req, self.cache_dir)

    def call(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """``fn(*args)`` in a worker (in this process without workers); ``fn`` and ``args`` must pickle."""
        if self._pool is None:
            future: Future[T] = Future()
            try:
                future.set_result(fn(*args))
            except Exception as exc:  # noqa: BLE001 - delivered through the future, as a worker's would be
                future.set_exception(exc)
            return future
        return self._pool.submit(fn, *args)

    def wait(self, future: Future[T], timeout: float | None) -> T:
        """``future``'s result. One not done after ``timeout`` seconds (an LLVM compile can run away on a huge
        unroll) raises BuildTimeoutError, and the pool's workers are killed and replaced: the other builds
        still running in them fail too (they cannot be told apart)."""
        try:
            return future.result(timeout=timeout)
        except FutureTimeoutError:
            if self._pool is not None:
                old, self._pool = self._pool, self._new_pool()
                for process in list((getattr(old, "_processes", None) or {}).values()):
                    process.kill()
                old.shutdown(wait=False, cancel_futures=True)
            raise BuildTimeoutError(f"a build ran for more than {timeout:g} s; its worker was replaced") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)

    def __enter__(self) -> Builder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
