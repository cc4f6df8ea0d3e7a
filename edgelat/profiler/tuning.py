"""The ``tuned`` recipe: MetaSchedule search per kernel, candidates timed on the device itself.

Candidates are built in this process (no worker pool restarted per batch: MetaSchedule's
own ``LocalBuilder`` spends 20-40 s importing TVM in fresh workers for every batch) as
shared libraries for the device, and timed by the device agent through the same channel as
every other measurement. Tuning records live in one MetaSchedule JSON database per device
in the workspace, so a kernel is tuned once and whole-network builds can reuse its record.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import tvm
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from edgelat.errors import BuildError, DamagedFileError
from edgelat.profiler.recipes import first_line

__all__ = ["KernelTuner", "TuneOutcome"]

# measure(artifact_path, args) -> seconds per call of each repeat
MeasureFn = Callable[[str, list[list[Any]]], list[float]]


@derived_object
class _Done(ms.runner.PyRunnerFuture):
    def __init__(self, result: ms.runner.RunnerResult) -> None:
        super().__init__()
        self._result = result

    def done(self) -> bool:
        return True

    def result(self) -> ms.runner.RunnerResult:
        return self._result


@derived_object
class AgentRunner(ms.runner.PyRunner):
    """Times MetaSchedule candidates through a callable (the device agent's ``bench``)."""

    def __init__(self, measure: MeasureFn) -> None:
        super().__init__()
        self._measure = measure

    def run(self, runner_inputs: list[ms.runner.RunnerInput]) -> list[ms.runner.RunnerFuture]:
        futures = []
        for inp in runner_inputs:
            args = [[[int(d) for d in a.shape], str(a.dtype)] for a in inp.args_info]
            try:
                futures.append(_Done(ms.runner.RunnerResult(self._measure(inp.artifact_path, args), None)))
            except Exception as exc:  # noqa: BLE001 - a failing candidate is MetaSchedule's to skip
                futures.append(_Done(ms.runner.RunnerResult(None, f"{type(exc).__name__}: {exc}")))
        return futures


@derived_object
class SharedLibraryBuilder(ms.builder.PyBuilder):
    """Builds candidates in this process into shared libraries the agent can load."""

    def __init__(self, out_dir: str, cross_compiler: str | None) -> None:
        super().__init__()
        self._out_dir = out_dir
        self._cc = cross_compiler

    def build(self, build_inputs: list[ms.builder.BuilderInput]) -> list[ms.builder.BuilderResult]:
        import tvm.s_tir.tensor_intrin  # noqa: F401 - registers the intrinsics schedules may use
        from tvm.s_tir.transform import RemoveWeightLayoutRewriteBlock
        from tvm.support import cc

        results = []
        for inp in build_inputs:
            try:
                mod = RemoveWeightLayoutRewriteBlock(skip_tensor_rewrite=True)(inp.mod)
                lib = tvm.compile(mod, target=inp.target)
                # One directory per candidate: MetaSchedule's RemoveBuildArtifact deletes it after timing.
                path = str(Path(tempfile.mkdtemp(prefix="cand-", dir=self._out_dir)) / "k.so")
                lib.export_library(path, fcompile=cc.cross_compiler(self._cc) if self._cc else None)
                results.append(ms.builder.BuilderResult(path, None))
            except Exception as exc:  # noqa: BLE001 - an invalid candidate is MetaSchedule's to skip
                results.append(ms.builder.BuilderResult(None, f"{type(exc).__name__}: {exc}"))
        return results


@dataclass
class TuneOutcome:
    func: Any  # the tuned tirx.PrimFunc
    tune_s: float
    trials: int
    # False when the database already held a record for this workload.
    searched: bool


MODULE_EQUALITY = "anchor-block"


def _own_log_handlers_only() -> None:
    """MetaSchedule builds its logging config from the names of the handlers on its logger and fails on one it
    did not make ("Unable to configure logger"); a test runner's log capture adds such handlers."""
    import logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in list(logger.handlers):
        if not (handler.get_name() or "").startswith("tvm.s_tir.meta_schedule"):
            logger.removeHandler(handler)


class KernelTuner:
    """Tunes PrimFuncs for one device and target, keeping every record in one database."""

    def __init__(self, work_dir: Path, target: dict[str, Any], threads: int, cross_compiler: str | None, measure: MeasureFn) -> None:
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.target = tvm.target.Target({**target, "num-cores": threads})
        # Kernels are told apart by their anchor block (the conv, matmul, pool...), whatever their
        # epilogue: a network's kernel finds the record of a profiled kernel with the same anchor even
        # where the epilogue differs (``b + x`` for ``x + b``, or another activation), and the anchor's
        # trace is applied to it (epilogue blocks inlined), as MetaSchedule's Relax integration does.
        # So a campaign tunes each anchor once; kernels sharing it get its schedule.
        try:
            self.database = ms.database.JSONDatabase(work_dir=str(self.work_dir), module_equality=MODULE_EQUALITY)
        except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes TVM raise, it is one reason
            raise DamagedFileError(
                f"the tuning database in {self.work_dir} cannot be read ({first_line(exc)[:200]}); move the folder away to tune from scratch"
            ) from None
        self._artifacts = tempfile.TemporaryDirectory(prefix="edgelat-ms-")
        self.builder = SharedLibraryBuilder(self._artifacts.name, cross_compiler)
        self.runner = AgentRunner(measure)

    def tune(self, func: Any, trials: int) -> TuneOutcome:
        """The best schedule of ``func`` (searching ``trials`` candidates unless already tuned)."""
        mod = tvm.IRModule({"main": func.with_attr("global_symbol", "main")})
        start = time.perf_counter()
        schedule = self._lookup(mod)
        searched = schedule is None
        if searched:
            _own_log_handlers_only()
            with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="logs-") as logs:
                ms.tune_tir(
                    mod,
                    self.target,
                    logs,
                    max_trials_global=trials,
                    num_trials_per_iter=min(trials, 16),
                    builder=self.builder,
                    runner=self.runner,
                    database=self.database,
                    num_tuning_cores=1,
                    module_equality=MODULE_EQUALITY,
                )
            schedule = self._lookup(mod)
        if schedule is None:
            raise BuildError(f"MetaSchedule found no valid candidate in {trials} trials (see the logs with -v)")
        return TuneOutcome(schedule.mod["main"], time.perf_counter() - start, trials if searched else 0, searched)

    def _lookup(self, mod: tvm.IRModule) -> Any:
        """The schedule of ``mod`` from the best record with the same anchor block, or None."""
        record = self.database.query_tuning_record(mod, self.target, "main")
        if record is None:
            return None
        sch = tvm.s_tir.Schedule(mod)
        ms.trace_apply.schedule_using_anchor_trace(sch, record.trace, self.target)
        return sch

    def close(self) -> None:
        self._artifacts.cleanup()
