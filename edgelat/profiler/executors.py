"""Where builds run: a ``concurrent.futures.Executor``, local worker processes or a Dask cluster.

Builds are pure functions of plain data (an op config or a candidate's module, a target, a recipe)
returning library bytes; the content-addressed cache stays on this host (:class:`~edgelat.profiler.builds.Builder`).
A new place to build is one function here returning an executor.

A Dask cluster is reached with ``--scheduler tcp://HOST:8786`` or ``$EDGELAT_DASK_SCHEDULER``; its
workers need edgelat, the pinned TVM and the device's cross compiler, checked on every worker when
connecting (:func:`dask_executor`), not at the first build.
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import Executor, ProcessPoolExecutor
from multiprocessing import get_context
from typing import Any

from edgelat.errors import BuildError, UsageError

__all__ = ["SCHEDULER_ENV", "builds_beside", "dask_executor", "local_executor", "scheduler_address"]

SCHEDULER_ENV = "EDGELAT_DASK_SCHEDULER"


def scheduler_address(given: str | None) -> str | None:
    """The Dask scheduler to build on: ``given``, else ``$EDGELAT_DASK_SCHEDULER``, else None (local workers)."""
    address = given or os.environ.get(SCHEDULER_ENV) or None
    if address is not None and "://" not in address:
        raise UsageError(f"--scheduler must be an address like tcp://HOST:8786, got {address!r}")
    return address


# -- local worker processes ---------------------------------------------------------------------
def _init_worker(parent: int) -> None:
    threading.Thread(target=_exit_with_parent, args=(parent,), name="exit-with-parent", daemon=True).start()
    import tvm  # noqa: F401 - import once per worker, not once per build

    import edgelat.ops  # noqa: F401


def _exit_with_parent(parent: int) -> None:
    """A worker whose parent died (SIGKILL leaves no time to shut the pool down) exits, and with the last
    worker gone multiprocessing's resource tracker exits too."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(1)


def local_executor(workers: int) -> ProcessPoolExecutor:
    """``workers`` long-lived processes on this host (TVM imported once in each)."""
    return ProcessPoolExecutor(workers, mp_context=get_context("spawn"), initializer=_init_worker, initargs=(os.getpid(),))


def this_host_ips() -> set[str]:
    """Every address of this machine's network interfaces."""
    import psutil

    return {a.address for addrs in psutil.net_if_addrs().values() for a in addrs if a.family in (socket.AF_INET, socket.AF_INET6)}


def builds_beside(device_ip: str | None, worker_ips: set[str] | None) -> bool:
    """Whether builds run on the machine that times: ``device_ip`` None is this machine (``local``, or SSH to a
    loopback address); ``worker_ips`` None are this machine's worker processes, else a Dask cluster's workers."""
    import ipaddress

    here = this_host_ips()
    if worker_ips is None:
        return device_ip is None or device_ip in here
    on_this_host = any(ip in here or (ip and ipaddress.ip_address(ip.split("%")[0]).is_loopback) for ip in worker_ips)
    return on_this_host if device_ip is None else device_ip in worker_ips or (device_ip in here and on_this_host)


# -- a Dask cluster -----------------------------------------------------------------------------
def _check_worker(cross_compiler: str | None) -> dict[str, Any]:
    """What a Dask worker can build with (run on every worker when connecting)."""
    info: dict[str, Any] = {"host": socket.gethostname(), "problems": []}
    try:
        import tvm

        import edgelat

        info["tvm"], info["edgelat"] = tvm.__version__, edgelat.__version__
    except Exception as exc:  # noqa: BLE001 - reported to the host as this worker's problem
        info["problems"].append(f"cannot import edgelat and TVM ({type(exc).__name__}: {exc})")
    if cross_compiler and shutil.which(cross_compiler) is None:
        info["problems"].append(f"no cross compiler {cross_compiler!r}")
    return info


def run_logged(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)`` on a Dask worker, said in its log (which builds ran where)."""
    log = logging.getLogger("distributed.worker")
    start = time.perf_counter()
    result = fn(*args, **kwargs)
    log.info("edgelat: %s done in %.2f s on %s", getattr(fn, "__name__", fn), time.perf_counter() - start, socket.gethostname())
    return result


class DaskExecutor(Executor):
    """A Dask client's executor whose tasks log themselves on the worker; closes the client with it."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._executor = client.get_executor(pure=False)

    def worker_ips(self) -> set[str]:
        """The addresses of the cluster's workers now."""
        from urllib.parse import urlparse

        return {urlparse(address).hostname or "" for address in self.client.scheduler_info()["workers"]}

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
        import warnings

        with warnings.catch_warnings():
            # A whole network's module (weights included) is one argument, sent once: that is the point.
            warnings.filterwarnings("ignore", message="Sending large graph", category=UserWarning)
            return self._executor.submit(run_logged, fn, *args, **kwargs)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        try:
            self._executor.shutdown(wait=wait)
        finally:
            self.client.close()


def dask_executor(address: str, cross_compiler: str | None, timeout_s: float = 10.0) -> DaskExecutor:
    """An executor on the Dask cluster at ``address``, once every worker proved it can build."""
    try:
        from distributed import Client
    except ImportError:
        raise UsageError("building on a Dask cluster needs dask.distributed: pip install distributed") from None
    from edgelat import __version__
    from edgelat.profiler.setup import TVM_VERSION

    try:
        client = Client(address, timeout=timeout_s, set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise BuildError(f"cannot reach the Dask scheduler at {address} ({exc})") from None
    try:
        client.wait_for_workers(1, timeout=timeout_s)
        reports = client.run(_check_worker, cross_compiler)
    except Exception as exc:  # noqa: BLE001 - no workers, or a worker failing the check call itself
        client.close()
        raise BuildError(f"the Dask cluster at {address} has no worker that answers ({type(exc).__name__}: {exc})") from None
    bad = []
    for worker, info in sorted(reports.items()):
        problems = list(info["problems"])
        if info.get("tvm") not in (None, TVM_VERSION):
            problems.append(f"TVM {info['tvm']}, not {TVM_VERSION}")
        if info.get("edgelat") not in (None, __version__):
            problems.append(f"edgelat {info['edgelat']}, not {__version__}")
        if problems:
            bad.append(f"{worker} ({info['host']}): {'; '.join(problems)}")
    if bad:
        client.close()
        raise BuildError(f"Dask workers at {address} cannot build here: " + " | ".join(bad))
    return DaskExecutor(client)
