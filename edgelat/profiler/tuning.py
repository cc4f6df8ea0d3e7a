"""The ``tuned`` recipe: MetaSchedule search per kernel, candidates timed on the device itself.

Candidates are built in this process (no worker pool restarted per batch: MetaSchedule's
own ``LocalBuilder`` spends 20-40 s importing TVM in fresh workers for every batch) as
shared libraries for the device, and timed by the device agent through the same channel as
every other measurement. Tuning records live in one MetaSchedule JSON database per device
in the workspace, so a kernel is tuned once and whole-network builds can reuse its record.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import math
import os
import re
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

import tvm
import tvm_ffi
from tvm.ir.utils import derived_object
from tvm.s_tir import meta_schedule as ms

from edgelat.errors import BuildError, DamagedFileError
from edgelat.ops.lowering import main_module
from edgelat.profiler.recipes import first_line
from edgelat.registry import Registry

__all__ = ["SEARCH_SETTINGS", "KernelTuner", "Representatives", "TuneOutcome", "kernel_args", "snap_tiles"]

logger = logging.getLogger(__name__)

# Ctrl-C, or SIGTERM (the CLI turns it into KeyboardInterrupt), lands in whatever Python code runs; during a search
# that is a callback of MetaSchedule's C++ loop (the builder, the runner, the cost model), and tvm-ffi hands an
# exception it has no name for back as RuntimeError(''): the interrupt became a failed kernel and the campaign went
# on. Named, it comes back as itself, and stops the campaign as it does between kernels (resumable).
tvm_ffi.register_error("KeyboardInterrupt", KeyboardInterrupt)

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
        self.seconds = 0.0  # spent timing candidates (shipping them to the device included)

    def run(self, runner_inputs: list[ms.runner.RunnerInput]) -> list[ms.runner.RunnerFuture]:
        start = time.perf_counter()
        try:
            return self._run(runner_inputs)
        finally:
            self.seconds += time.perf_counter() - start

    def _run(self, runner_inputs: list[ms.runner.RunnerInput]) -> list[ms.runner.RunnerFuture]:
        futures = []
        for inp in runner_inputs:
            args = _arg_specs(inp.args_info)
            try:
                futures.append(_Done(ms.runner.RunnerResult(self._measure(inp.artifact_path, args), None)))
            except Exception as exc:  # noqa: BLE001 - a failing candidate is MetaSchedule's to skip
                futures.append(_Done(ms.runner.RunnerResult(None, f"{type(exc).__name__}: {exc}")))
        return futures


@derived_object
class SharedLibraryBuilder(ms.builder.PyBuilder):
    """Builds candidates into shared libraries the agent can load: in the build workers of ``builder`` when
    given (a batch of candidates in parallel), else in this process (not MetaSchedule's ``LocalBuilder``,
    which restarts its worker pool, and so re-imports TVM, for every batch)."""

    def __init__(self, out_dir: str, cross_compiler: str | None, builder: Any = None) -> None:
        super().__init__()
        self._out_dir = out_dir
        self._cc = cross_compiler
        self._builder = builder
        self.seconds = 0.0  # spent compiling candidates

    def build(self, build_inputs: list[ms.builder.BuilderInput]) -> list[ms.builder.BuilderResult]:
        start = time.perf_counter()
        try:
            return self._build(build_inputs)
        finally:
            self.seconds += time.perf_counter() - start

    def _build(self, build_inputs: list[ms.builder.BuilderInput]) -> list[ms.builder.BuilderResult]:
        from edgelat.profiler.builds import Builder, build_candidate

        builder = self._builder or Builder(Path(self._out_dir), workers=0)
        futures = [builder.call(build_candidate, tvm.ir.save_json(inp.mod), dict(inp.target.export()), self._cc) for inp in build_inputs]
        results = []
        for future in futures:
            try:
                # In workers a runaway compile is cut off (in this process it cannot be)
                data = builder.wait(future, CANDIDATE_BUILD_TIMEOUT_S)
            except Exception as exc:  # noqa: BLE001 - an invalid candidate is MetaSchedule's to skip
                results.append(ms.builder.BuilderResult(None, f"{type(exc).__name__}: {exc}"))
                continue
            # One directory per candidate: MetaSchedule's RemoveBuildArtifact deletes it after timing.
            path = Path(tempfile.mkdtemp(prefix="cand-", dir=self._out_dir)) / "k.so"
            path.write_bytes(data)
            results.append(ms.builder.BuilderResult(str(path), None))
        return results


@dataclass
class TuneOutcome:
    func: Any  # the tuned tirx.PrimFunc
    tune_s: float
    trials: int
    # False when the database already held a record for this workload.
    searched: bool
    # Of tune_s: compiling candidates, and timing them on the device; the rest is the search itself
    # (generating and mutating schedules, the cost model).
    build_s: float = 0.0
    measure_s: float = 0.0
    # Schedules of other kernels tried on this one (see KernelTuner.transfer), and whether one of them
    # was kept without searching.
    transferred: int = 0
    kept_transfer: bool = False

    @property
    def search_s(self) -> float:
        return max(0.0, self.tune_s - self.build_s - self.measure_s)


MODULE_EQUALITY = "anchor-block"

# A kernel whose anchor's records are another kernel's (a twin: the same conv with another epilogue) and none of
# which applies to it is searched on its own, and its records are kept in a database of their own, in this folder
# beside the shared one, by the whole kernel: under the shared workload they would have to replay on the other kernel
# whenever the database is opened, and a search trace of one epilogue does not replay on another.
OWN_FOLDER, OWN_EQUALITY = "own", "structural"

# Tuning databases this process opened, by folder: opening one of 10k records takes minutes, and a validation
# run builds many networks. One is reused while its files are as this process's tuners left them (another
# process that tuned into the folder since makes it read again).
_OPEN_DATABASES: dict[Path, tuple[tuple[tuple[int, int], ...], Any]] = {}


def _files_signature(work_dir: Path) -> tuple[tuple[int, int], ...]:
    """Size and modification time of each file of the database in ``work_dir`` (what changes when records land)."""
    return tuple((st.st_size, st.st_mtime_ns) for p in sorted(Path(work_dir).glob("database_*.json")) for st in [p.stat()])


def _open_database(work_dir: Path, module_equality: str = MODULE_EQUALITY) -> Any:
    """The MetaSchedule database in ``work_dir``: opened once per process while no one else writes to it."""
    key = work_dir.resolve()
    known = _OPEN_DATABASES.get(key)
    if known is not None and known[0] == _files_signature(work_dir):
        return known[1]
    try:
        database = ms.database.JSONDatabase(work_dir=str(work_dir), module_equality=module_equality)
    except Exception as exc:  # noqa: BLE001 - whatever a damaged file makes TVM raise, it is one reason
        # TVM reads every record or none: one line cut short by a crash mid-write, or one record that no longer
        # replays on its workload, would lose a device's hours of tuning. Those lines are set aside instead.
        reason = first_line(exc)[:200]
        if not _set_aside_damaged_records(Path(work_dir), reason):
            raise DamagedFileError(
                f"the tuning database in {work_dir} cannot be read ({reason}); move the folder away to tune from scratch"
            ) from None
        try:
            database = ms.database.JSONDatabase(work_dir=str(work_dir), module_equality=module_equality)
        except Exception as again:  # noqa: BLE001
            raise DamagedFileError(
                f"the tuning database in {work_dir} cannot be read ({first_line(again)[:200]}); move the folder away to tune from scratch"
            ) from None
    _OPEN_DATABASES[key] = (_files_signature(work_dir), database)
    return database


def _set_aside_damaged_records(work_dir: Path, reason: str) -> bool:
    """Move the lines of ``work_dir``'s database that cannot be read (cut short, or a record whose trace does not replay
    on its workload) to ``*.damaged`` files beside it, keeping the rest; False when none could be told apart (a damaged
    workload that records after it refer to: nothing is changed then)."""
    workload_file, record_file = work_dir / "database_workload.json", work_dir / "database_tuning_record.json"
    if not workload_file.exists() or not record_file.exists():
        return False
    workload_lines = workload_file.read_text().splitlines()
    workloads: list[Any] = []
    for i, line in enumerate(workload_lines):
        try:
            workloads.append(ms.database.Workload.from_json(json.loads(line)))
        except Exception:  # noqa: BLE001 - a workload line TVM cannot read
            if i < len(workload_lines) - 1:
                return False  # records refer to workloads by line: the ones after it cannot be placed
    record_lines = record_file.read_text().splitlines()
    logger.warning("the tuning database in %s cannot be read (%s); checking its %d records one by one", work_dir, reason, len(record_lines))
    kept: list[str] = []
    damaged: list[str] = []
    for line in record_lines:
        try:
            index, record = json.loads(line)
            ms.database.TuningRecord.from_json(record, workloads[index])  # replays the trace on the workload
            kept.append(line)
        except Exception:  # noqa: BLE001 - cut short, out of range, or a trace that does not replay
            damaged.append(line)
    cut = workload_lines[len(workloads) :]
    if not damaged and not cut:
        return False
    stamp = time.strftime("%Y%m%d-%H%M%S")
    asides: list[str] = []
    for path, good, bad in ((record_file, kept, damaged), (workload_file, workload_lines[: len(workloads)], cut)):
        if not bad:
            continue
        aside = path.with_name(f"{path.name}.damaged-{stamp}")
        aside.write_text("".join(f"{line}\n" for line in bad))
        asides.append(str(aside))
        partial = path.with_name(f"{path.name}.partial")
        partial.write_text("".join(f"{line}\n" for line in good))
        partial.replace(path)
    logger.warning(
        "set aside %d of %d records%s that cannot be read (in %s); the other %d are kept",
        len(damaged),
        len(record_lines),
        " and a workload line cut short" if cut else "",
        " and ".join(asides),
        len(kept),
    )
    return True


# A candidate compiles in about a second; some (huge unrolls) keep LLVM busy for many minutes. Built in
# workers, one still compiling after this long is dropped and its worker replaced (MetaSchedule's own
# LocalBuilder stops at 30 s).
CANDIDATE_BUILD_TIMEOUT_S = 60.0

# How MetaSchedule searches, by name: each makes a fresh search strategy (they keep state) for a budget of
# trials. A new setting is one entry here.
SEARCH_SETTINGS: Registry[Callable[[int], Any]] = Registry("search setting")
# MetaSchedule's defaults: an evolutionary search over a population of 512 schedules, 4 genetic rounds
# per batch of candidates, whatever the budget.
SEARCH_SETTINGS.register("stock", lambda trials: ms.search_strategy.EvolutionarySearch())
# Sized to the budget: a population a few times the trials, fewer genetic rounds; the cost model and
# the measured candidates still steer it.
SEARCH_SETTINGS.register(
    "small",
    lambda trials: ms.search_strategy.EvolutionarySearch(
        population_size=max(32, 4 * trials), init_min_unmeasured=max(8, trials), genetic_num_iters=2
    ),
)
# No cost model, no evolution: the design space's traces replayed with fresh random decisions.
SEARCH_SETTINGS.register("replay", lambda trials: ms.search_strategy.ReplayTrace())


def import_tensor_intrinsics() -> None:
    """Import ``tvm.s_tir.tensor_intrin`` (MetaSchedule needs it; it registers the intrinsics schedules may
    use), quickly.

    It parses a few hundred TVMScript functions, and TVMScript's parser calls ``inspect.stack()`` for each,
    which reads the source of every frame and, for frames without a file (importlib's), scans all of
    ``sys.modules``: about 40 s on this machine, paid by every process that tunes. The parser reads the
    source context of the decorator's caller only (two frames up), so during the import ``inspect.stack``
    gives it that and the bare frames beyond.
    """
    if "tvm.s_tir.tensor_intrin" in sys.modules:
        return
    original = inspect.stack

    def stack(context: int = 1) -> list[inspect.FrameInfo]:
        frames: list[inspect.FrameInfo] = []
        frame: FrameType | None = sys._getframe(1)
        while frame is not None:
            if len(frames) < 4:
                info = inspect.getframeinfo(frame, context)
                extra = {"positions": getattr(info, "positions", None)} if sys.version_info >= (3, 11) else {}
                frames.append(inspect.FrameInfo(frame, info.filename, info.lineno, info.function, info.code_context, info.index, **extra))
            else:
                extra = {"positions": None} if sys.version_info >= (3, 11) else {}
                code = frame.f_code
                frames.append(inspect.FrameInfo(frame, code.co_filename, frame.f_lineno, code.co_name, None, None, **extra))
            frame = frame.f_back
        return frames

    inspect.stack = stack
    try:
        import tvm.s_tir.tensor_intrin  # noqa: F401
    finally:
        inspect.stack = original


def _prepare_metaschedule_logging() -> None:
    """Before each search: MetaSchedule builds its logging config from the names of the handlers on its logger
    and fails on one it did not make ("Unable to configure logger"; a test runner's log capture adds such
    handlers), so only its own stay. Its console handler takes the logger's level at that moment: warnings
    only, unless edgelat logs at debug level (-vv); its per-round tables are in the search's log files."""
    import logging

    logger = logging.getLogger("tvm.s_tir.meta_schedule")
    for handler in list(logger.handlers):
        if not (handler.get_name() or "").startswith("tvm.s_tir.meta_schedule"):
            logger.removeHandler(handler)
    logger.setLevel(logging.DEBUG if logging.getLogger().isEnabledFor(logging.DEBUG) else logging.WARNING)


def snap_tiles(factors: list[int], extent: int) -> list[int]:
    """Tile factors for a loop of ``extent`` close to ``factors`` (made for another extent): each inner
    factor becomes the divisor of what is left nearest to it (by ratio), the outermost takes the rest.
    Their product is ``extent``."""
    out = [1] * len(factors)
    left = extent
    for i in range(len(factors) - 1, 0, -1):
        want = max(1, factors[i])
        divisors = [d for d in range(1, left + 1) if left % d == 0]
        d = min(divisors, key=lambda d: (abs(math.log(d / want)), -d))
        out[i] = d
        left //= d
    out[0] = left
    return out


def _arg_specs(args_info: Any) -> list[list[Any]]:
    return [[[int(d) for d in a.shape], str(a.dtype)] for a in args_info]


def kernel_args(func: Any) -> list[list[Any]]:
    """``[shape, dtype]`` of each buffer of the PrimFunc ``func``: what the agent allocates to time it."""
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    return _arg_specs(ArgInfo.from_prim_func(func))


def _anchor(mod: tvm.IRModule) -> tuple[str, tuple[int, ...]] | None:
    """The name of ``mod``'s anchor block (its conv, matmul, pool...) and the extents of its loops; None for a
    kernel of data movement only. Kernels with the same anchor name can take each other's schedules (tiles
    refitted, epilogues inlined as the new kernel needs: :func:`_refit`); the extents say how far apart they are."""
    from tvm.s_tir.analysis import find_anchor_sblock

    block = find_anchor_sblock(mod)
    if block is None:
        return None
    return block.name_hint, tuple(int(iv.dom.extent) for iv in block.iter_vars)


def block_kind(mod: tvm.IRModule, name: str) -> str:
    """What the block ``name`` of ``mod`` computes, as kernels that may lend each other schedules share it: its name
    without the name of the value TVM took it from. TOPI names a reduction after the tensor it reads: a network's
    global pools are ``lv9_red``, ``lv82_red``..., the pool a campaign profiles ``x_red``, a layer norm's variance
    ``lv_var_sum``: their kinds are ``red`` and ``var_sum``, and the loops' extents tell kernels apart. The value is
    one of ``mod``'s inputs, or one fused away inside it, named as Relax (``lv``, ``lv1``...) or torch.export
    (``args_0``...) names them."""
    for tensor in sorted((str(p.name) for p in mod["main"].params), key=len, reverse=True):
        if name.startswith(f"{tensor}_"):
            return name[len(tensor) + 1 :]
    return re.sub(r"^(lv|gv|args_)\d*_", "", name)


def shape_distance(a: tuple[int, ...], b: tuple[int, ...]) -> float:
    """How far apart two anchors' loop extents are: the sum over loops of |log2| of their ratio (a 3x3 kernel is
    3.2 from a 1x1 one; twice the channels in and out, 2)."""
    return sum(abs(math.log2(max(x, 1) / max(y, 1))) for x, y in zip(a, b, strict=True))


def unit_loops(extents: tuple[int, ...]) -> tuple[bool, ...]:
    """Which of an anchor's loops have extent 1 (a 1x1 convolution's window, a 1x1 map, a batch of one)."""
    return tuple(e == 1 for e in extents)


def _refit(trace: Any, extents: tuple[int, ...], anchor: str) -> Any:
    """``trace`` (a schedule of another kernel with the same anchor) with the tile sizes of the anchor's loops, and of
    loops fused from them (a reduction's loops fused before an rfactor), snapped to divisors of the new extents
    (:func:`snap_tiles`); None when it tiles a loop it did not get that way (then its decisions cannot be mapped to
    the new loops)."""
    anchor_rv, known = None, list[tuple[Any, int]]()  # loop RVs whose extent in the new kernel is known
    for inst in trace.insts:
        kind = inst.kind.name
        if kind == "EnterPostproc":
            break
        if kind == "GetSBlock" and str(inst.attrs[0]) == anchor:
            anchor_rv = inst.outputs[0]
        elif kind == "GetLoops" and anchor_rv is not None and inst.inputs[0].same_as(anchor_rv) and not known:
            known = list(zip(inst.outputs, extents, strict=False))
        elif kind == "Fuse":
            fused = [_extent(known, loop) for loop in inst.inputs]
            if all(e is not None for e in fused):
                known.append((inst.outputs[0], math.prod(e for e in fused if e is not None)))
        elif kind == "SamplePerfectTile":
            extent, decision = _extent(known, inst.inputs[0]), trace.get_decision(inst)
            if extent is None or decision is None:
                return None
            trace = trace.with_decision(inst, snap_tiles([int(d) for d in decision], extent), remove_postproc=False)
    return trace


def _extent(known: list[tuple[Any, int]], loop: Any) -> int | None:
    return next((extent for rv, extent in known if rv.same_as(loop)), None)


def schedule_like(mod: tvm.IRModule, trace: Any, target: tvm.target.Target) -> tvm.s_tir.Schedule:
    """``mod`` scheduled by ``trace``, a schedule of a kernel with the same anchor block (MetaSchedule's anchor-trace
    scheduling), after its epilogue is collapsed (:func:`collapse_epilogue`); raises where the trace does not apply.
    The schedule's trace replays on ``mod`` (a database reloads a record by replaying it on its workload): it
    starts with the collapse, which :func:`anchor_trace` takes off again before another kernel borrows it."""
    anchor = _anchor(mod)
    sch = tvm.s_tir.Schedule(mod)
    if anchor is not None:
        _collapse(sch, anchor[0])
    ms.trace_apply.schedule_using_anchor_trace(sch, trace, target)
    return sch


def collapse_epilogue(mod: tvm.IRModule, anchor: str) -> tvm.IRModule:
    """``mod`` with every elementwise block after the anchor inlined into the blocks that read it, except the
    anchor's consumer when it has one only, so that the epilogue is at most that consumer and the output block.

    Anchor-trace scheduling replays another kernel's inlining by block name: a trace of ``conv -> add -> relu``
    ends by reverse-inlining ``compute`` (the relu) into ``T_add``. In a swish epilogue (``add -> sigmoid ->
    multiply``, the multiply reading the add too), ``compute`` is the sigmoid, and inlining it into the add leaves
    the multiply reading a buffer nobody writes: the kernel does not build. Collapsed, the swish epilogue is one
    block, ``x * sigmoid(x)`` (likewise hard swish's five), which the trace's names do not reach. Without a bias,
    the sigmoid and the multiply both read the anchor: the sigmoid goes into the multiply all the same."""
    sch = tvm.s_tir.Schedule(mod)
    _collapse(sch, anchor)
    return sch.mod


def _collapse(sch: tvm.s_tir.Schedule, anchor: str) -> list[str]:
    """:func:`collapse_epilogue` done on ``sch``; the names of the blocks inlined. Its trace records only a
    ``GetSBlock`` and a ``ComputeInline`` for each (:func:`_uncollapsed` takes them off again): the blocks are
    found on a copy, since a walk over the consumers in the trace would replay only on kernels whose epilogue
    has as many blocks (a residual conv's record would not apply to the same conv without the residual)."""
    walk = tvm.s_tir.Schedule(sch.mod)
    consumers = walk.get_consumers(walk.get_sblock(anchor))
    kept = {walk.get(consumers[0]).name_hint} if len(consumers) == 1 else set()
    after: list[str] = []  # every block after the anchor, breadth first
    frontier = list(consumers)
    while frontier:
        block = frontier.pop(0)
        if walk.get(block).name_hint not in after:
            after.append(walk.get(block).name_hint)
            frontier += list(walk.get_consumers(block))
    inlined: list[str] = []
    for name in after:
        if name in kept:
            continue
        try:
            walk.compute_inline(walk.get_sblock(name))
        except tvm.s_tir.ScheduleError:  # the output block (nothing reads it) and blocks that are not elementwise stay
            continue
        inlined.append(name)
    for name in inlined:
        sch.compute_inline(sch.get_sblock(name))
    return inlined


def anchor_trace(record: Any, borrower: tvm.IRModule | None = None) -> Any:
    """What ``record`` lends another kernel: its trace without the epilogue collapse :func:`schedule_like` put
    first (the borrower collapses its own epilogue; the lender's block names would reach the borrower's blocks),
    its blocks looked up under the names the ``borrower``'s blocks of the same kind have (:func:`block_kind`: TVM
    names some blocks after tensors, ``x_red`` in one kernel, ``lv82_red`` in another)."""
    trace = record.trace
    anchor = _anchor(record.workload.mod)
    if anchor is None:
        return trace
    trace = _uncollapsed(record, anchor[0])
    if borrower is not None:
        trace = _renamed(trace, _same_kind_names(record.workload.mod, borrower))
    # A search's trace keeps the queries its rules made of the graph around the anchor (the consumers of the
    # bias add: none in a conv + bias kernel) even where nothing uses their answers; replayed on a twin whose
    # epilogue has one more block, such a query returns another number of blocks and the whole trace fails.
    # Dead-code elimination drops them (queries only: what they return is used by nothing after them).
    return trace.simplified(remove_postproc=False)


def _block_names(mod: tvm.IRModule) -> list[str]:
    sch = tvm.s_tir.Schedule(mod)
    return [sch.get(b).name_hint for b in sch.get_child_blocks(sch.get_sblock("root"))]


def _same_kind_names(lender: tvm.IRModule, borrower: tvm.IRModule) -> dict[str, str]:
    """The borrower's name for each block of the lender it has under another name: its one block of the same kind."""
    mine = _block_names(borrower)
    by_kind: dict[str, list[str]] = {}
    for name in mine:
        by_kind.setdefault(block_kind(borrower, name), []).append(name)
    renames = {}
    for name in _block_names(lender):
        same = by_kind.get(block_kind(lender, name), [])
        if name not in mine and len(same) == 1:
            renames[name] = same[0]
    return renames


def _renamed(trace: Any, names: dict[str, str]) -> Any:
    """``trace`` looking each block up under its name in ``names`` (where it has one)."""
    if not names:
        return trace
    insts = [
        tvm.s_tir.schedule.Instruction(i.kind, i.inputs, [names[str(i.attrs[0])], *i.attrs[1:]], i.outputs)
        if i.kind.name == "GetSBlock" and str(i.attrs[0]) in names
        else i
        for i in trace.insts
    ]
    return tvm.s_tir.schedule.Trace(insts, dict(trace.decisions.items()))


def _uncollapsed(record: Any, anchor: str) -> Any:
    """``record``'s trace without the epilogue collapse :func:`schedule_like` put first: the ``GetSBlock`` and
    ``ComputeInline`` of each block inlined, after (in records written before the collapse left it out) a
    ``GetSBlock`` of the anchor and the ``GetConsumers`` of a walk over its epilogue. Taken from the trace itself,
    not from the record's workload: kernels with one anchor share a workload, and its epilogue may be another's."""
    insts = list(record.trace.insts)
    start = 0
    if len(insts) > 1 and insts[0].kind.name == "GetSBlock" and str(insts[0].attrs[0]) == anchor and insts[1].kind.name == "GetConsumers":
        start = 1
        while start < len(insts) and insts[start].kind.name == "GetConsumers":
            start += 1
    while (
        start + 1 < len(insts)
        and insts[start].kind.name == "GetSBlock"
        and insts[start + 1].kind.name == "ComputeInline"
        and insts[start + 1].inputs[0].same_as(insts[start].outputs[0])
    ):
        start += 2
    rest = insts[start:]
    dropped = [rv for inst in insts[:start] for rv in inst.outputs]
    if not start or any(rv.same_as(d) for inst in rest for rv in _flat(inst.inputs) for d in dropped):
        return record.trace  # no collapse in front (a search's own record), or the rest uses what it found
    return tvm.s_tir.schedule.Trace(rest, {inst: d for inst, d in record.trace.decisions.items() if any(inst.same_as(i) for i in rest)})


def _flat(values: Any) -> list[Any]:
    """The objects among an instruction's inputs (arrays opened; None and numbers left out)."""
    out: list[Any] = []
    for v in values:
        if isinstance(v, (list, tuple, tvm.ir.Array)):
            out += _flat(v)
        elif hasattr(v, "same_as"):
            out.append(v)
    return out


def _untuned(mod: tvm.IRModule) -> tvm.s_tir.Schedule:
    """``mod`` unscheduled, with a trace that only looks its root block up: MetaSchedule's database drops
    records whose trace is empty, and this one changes nothing."""
    sch = tvm.s_tir.Schedule(mod)
    sch.get_sblock("root")
    return sch


def _is_untuned(trace: Any) -> bool:
    """Whether ``trace`` only looks blocks and loops up (an untuned kernel's record)."""
    return all(inst.kind.name in ("GetSBlock", "GetLoops") for inst in trace.insts)


# How many of the nearest tuned workloads (by :func:`shape_distance`) a kernel's ``fastest`` transfer sources are
# chosen from.
FASTEST_POOL = 16

# How many of a source's fastest schedules a new kernel may try, fastest first: the fastest may not fit the new
# loops (its tiles refit to no divisor, or the trace does not apply), the next often does.
LENT_PER_SOURCE = 3


@dataclass
class _Source:
    """A tuned workload whose fastest schedules other kernels may try: what picking it needs, computed once."""

    ranked: list[tuple[float, Any]]  # (mean seconds, ms.database.TuningRecord), fastest first, LENT_PER_SOURCE at most
    anchor: str  # its anchor block's name
    kind: str  # what that block computes (:func:`block_kind`): sources lend to kernels of their kind
    extents: tuple[int, ...]
    records: int  # measured records of its workload: how long it was searched

    @property
    def seconds(self) -> float:
        return float(self.ranked[0][0])

    def offer(self, seconds: float, record: Any) -> None:
        """Rank ``record`` among the kept ones (a record already kept, the same trace, is not kept twice)."""
        if any(r is record or (s == seconds and str(r.trace) == str(record.trace)) for s, r in self.ranked):
            return
        self.ranked = sorted([*self.ranked, (seconds, record)], key=lambda sr: sr[0])[:LENT_PER_SOURCE]


@dataclass(frozen=True)
class Representatives:
    """Tune representatives long, transfer to the rest: a kernel with no representative of its anchor within
    ``radius`` (:func:`shape_distance`) becomes one, searched with ``trials`` (``search`` setting, ``per_round``
    candidates a round); the others take schedules from the nearest tuned kernels first (``KernelTuner.transfer``).
    A workload in the database with at least half of ``trials`` measured records counts as a representative.
    A kernel whose best code before the search (untuned, or a transferred schedule) runs in under ``min_ms`` is
    not searched long: the long search takes minutes, and could save it less than that per run. It is tuned as the
    kernels near a representative are, and the next kernel of its anchor far from every representative is tried.
    With ``same_unit_loops`` a representative covers only kernels whose anchor loops of extent 1 are its own (a 1x1
    convolution is not covered by a 3x3 one however near their channels are, nor a convolution of a 1x1 map by one
    of a larger map): a schedule tiles and unrolls a window, or a map, that the other kernel does not have."""

    trials: int = 256
    radius: float = 8.0
    search: str = "stock"
    per_round: int = 64
    min_ms: float = 0.05
    same_unit_loops: bool = False


class KernelTuner:
    """Tunes PrimFuncs for one device and target, keeping every record in one database."""

    def __init__(
        self,
        work_dir: Path,
        target: dict[str, Any],
        threads: int,
        cross_compiler: str | None,
        measure: MeasureFn,
        search: str = "small",
        transfers: int = 4,
        fastest: int = 4,
        keep_speedup: float = 1.5,
        keep_share: float = 0.5,
        share_min_ms: float = Representatives.min_ms,
        builder: Any = None,
        per_round: int = 16,
        representatives: Representatives | None = None,
        seed: int | None = None,
        search_cores: int | None = None,
    ) -> None:
        """``builder``: a :class:`edgelat.profiler.builds.Builder` whose workers build candidates (default: this process).
        ``per_round``: candidates the search proposes, builds and times per round (MetaSchedule's default is 64;
        small budgets are better spent in more, smaller rounds).
        ``representatives``: search a kernel far from every representative of its anchor long (it becomes one),
        the others ``trials`` at most; None: every kernel the same.
        ``seed``: MetaSchedule's random state (None: a fresh one per search; the candidates' timings vary anyway).
        ``search_cores``: this host's cores MetaSchedule's search runs on (its evolution, feature extraction and cost
        model; None: all of them). A round searches, then builds, then times, so the search never runs beside a timed
        candidate, even where the device is this machine."""
        self.search = search
        self.search_cores = search_cores or max(1, os.cpu_count() or 1)
        self.seed = seed
        SEARCH_SETTINGS.get(search)  # an unknown name fails here, not at the first search
        self.per_round = per_round
        self.representatives = representatives
        import_tensor_intrinsics()
        # How many tuned kernels' schedules a new kernel tries first (the nearest, and the fastest nearby:
        # :meth:`lenders`), and how much faster than its untuned code the best of them must be to be kept
        # without a search; and what share of the throughput its sources reached (the median of theirs, in
        # anchor iterations a second) it must reach too, unless it runs in under ``share_min_ms`` already (a
        # search would cost more than it could save).
        self.transfers = transfers
        self.fastest = fastest
        self.keep_speedup = keep_speedup
        self.keep_share = keep_share
        self.share_min_ms = share_min_ms
        self.work_dir = Path(work_dir)
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.target = tvm.target.Target({**target, "num-cores": threads})
        # Kernels are told apart by their anchor block (the conv, matmul, pool...), whatever their
        # epilogue: a network's kernel finds the record of a profiled kernel with the same anchor even
        # where the epilogue differs (``b + x`` for ``x + b``, or another activation), and the anchor's
        # trace is applied to it (epilogue blocks inlined), as MetaSchedule's Relax integration does.
        # So a campaign tunes each anchor once; kernels sharing it get its schedule.
        self.database = _open_database(self.work_dir)
        self._own_db: Any = None  # (OWN_FOLDER, opened when first needed)
        # Transfer sources by workload, read from the database on first use and kept current as kernels are
        # tuned: scanning every record per kernel would make a campaign quadratic in its records.
        self._sources: dict[int, _Source] | None = None
        self._artifacts = tempfile.TemporaryDirectory(prefix="edgelat-ms-")
        self.builder = SharedLibraryBuilder(self._artifacts.name, cross_compiler, builder)
        self.runner = AgentRunner(measure)

    def tune(self, func: Any, trials: int) -> TuneOutcome:
        """The best schedule of ``func`` (searching ``trials`` candidates unless already tuned; a kernel that
        becomes a representative is searched as :class:`Representatives` says)."""
        mod = main_module(func)
        start, built, measured = time.perf_counter(), self.builder.seconds, self.runner.seconds
        schedule = self._lookup(mod, untuned=False)
        searched, transferred, kept = 0, 0, False
        if schedule is None and self._records(mod):
            # Its anchor has records, none of them a tuned one that applies (a twin's, whose traces do not replay on
            # this epilogue): it is tuned on its own (OWN_FOLDER), not built untuned; schedules transferred first, as
            # for any new kernel, then searched where they fall short.
            transferred, kept = self.transfer(mod, own=True)
            if not kept:
                searched = self._search(mod, trials, self.search, self.per_round, own=True)
            schedule = self._lookup(mod)
        if schedule is None:
            far = self._far_from_representatives(mod)
            # Transferred schedules (if any) and the untuned kernel, timed first: kept, or the search's seeds.
            transferred, kept = self.transfer(mod)
            rep = self.representatives
            if far and rep is not None and not self.best_seconds(func) * 1e3 < rep.min_ms:
                searched = self._search(mod, rep.trials, rep.search, rep.per_round)
                schedule = self._lookup(mod, untuned=False)
            elif kept:
                schedule = self._lookup(mod, untuned=False)
        if schedule is None:
            searched = self._search(mod, trials, self.search, self.per_round)
            schedule = self._lookup(mod)
        if schedule is None:
            raise BuildError(f"MetaSchedule found no valid candidate in {trials} trials (see the logs with -v)")
        return TuneOutcome(
            schedule.mod["main"],
            time.perf_counter() - start,
            searched,
            searched > 0,
            self.builder.seconds - built,
            self.runner.seconds - measured,
            transferred,
            kept,
        )

    def add_records(self, func: Any, records: list[Any]) -> None:
        """Keep tuning ``records`` of another database (same target) as ``func``'s, as if they were found here."""
        mod = main_module(func)
        workload = self.database.commit_workload(mod)
        for r in records:
            self.database.commit_tuning_record(ms.database.TuningRecord(r.trace, workload, r.run_secs, self.target, r.args_info))
        self._remember(mod)

    def needs_representative(self, func: Any) -> bool:
        """Whether ``func`` would be searched as a representative: representatives are on, it has no record yet,
        and no representative of its anchor is within their radius."""
        mod = main_module(func)
        if self.database.has_workload(mod) and self.database.query_tuning_record(mod, self.target, "main") is not None:
            return False
        return self._far_from_representatives(mod)

    def _far_from_representatives(self, mod: tvm.IRModule) -> bool:
        """Whether representatives are on and none of ``mod``'s anchor is within their radius."""
        rep = self.representatives
        anchor = _anchor(mod) if rep is not None else None
        if rep is None or anchor is None:
            return False
        name, extents = anchor
        kind = block_kind(mod, name)
        return not any(
            s.kind == kind
            and len(s.extents) == len(extents)
            and s.records * 2 >= rep.trials
            and shape_distance(s.extents, extents) <= rep.radius
            and (not rep.same_unit_loops or unit_loops(s.extents) == unit_loops(extents))
            for s in self._source_index().values()
        )

    def _search(self, mod: tvm.IRModule, trials: int, search: str, per_round: int, own: bool = False) -> int:
        """MetaSchedule's search of ``mod``, ``trials`` candidates built and timed on the device into the database
        (``own``: the database of kernels tuned on their own, :data:`OWN_FOLDER`)."""
        _prepare_metaschedule_logging()
        # Its console handler writes to the stdout of the moment: stderr, so `--json` output stays clean.
        with tempfile.TemporaryDirectory(dir=self.work_dir, prefix="logs-") as logs, contextlib.redirect_stdout(sys.stderr):
            ms.tune_tir(
                mod,
                self.target,
                logs,
                max_trials_global=trials,
                num_trials_per_iter=min(trials, per_round),
                builder=self.builder,
                runner=self.runner,
                database=self._own_database() if own else self.database,
                num_tuning_cores=self.search_cores,
                module_equality=OWN_EQUALITY if own else MODULE_EQUALITY,
                strategy=SEARCH_SETTINGS.get(search)(trials),
                seed=self.seed,
            )
        if not own:
            self._remember(mod)
        return trials

    def _own_database(self, create: bool = True) -> Any:
        """The database of kernels tuned on their own (:data:`OWN_FOLDER`); None where it does not exist and ``create``
        is False."""
        if self._own_db is None:
            folder = self.work_dir / OWN_FOLDER
            if not create and not folder.exists():
                return None
            folder.mkdir(exist_ok=True)
            self._own_db = _open_database(folder, OWN_EQUALITY)
        return self._own_db

    def _own(self, mod: tvm.IRModule) -> Any:
        """``mod`` scheduled by the best record of its own search (:data:`OWN_FOLDER`); None without one that applies."""
        database = self._own_database(create=False)
        record = database.query_tuning_record(mod, self.target, "main") if database is not None and database.has_workload(mod) else None
        if record is None:
            return None
        sch = tvm.s_tir.Schedule(mod)
        try:
            record.trace.apply_to_schedule(sch, remove_postproc=False)
        except Exception as exc:  # noqa: BLE001 - TVM raises InternalError or TVMError for a trace that does not fit
            logger.debug("its own record does not apply to %s: %s", _anchor(mod), first_line(exc))
            return None
        return sch

    def transfer(self, mod: tvm.IRModule, own: bool = False) -> tuple[int, bool]:
        """Try the best schedules of kernels already tuned, of the same anchor but other shapes, on ``mod`` (their
        records kept in the database of kernels tuned on their own with ``own``, :data:`OWN_FOLDER`).

        The sources are tuned workloads with the same anchor block (:func:`_anchor`), nearest first
        (:func:`shape_distance`); each one's fastest trace gets its tile sizes snapped to divisors of the new
        loop extents (:func:`_refit`) and is applied with MetaSchedule's anchor-trace scheduling (the new
        kernel's epilogue inlined as it needs); where it does not apply, the source's next fastest is tried
        (``LENT_PER_SOURCE`` in all), until ``transfers`` sources lent one, and ``fastest`` more of the nearby
        ones that reached the highest throughput (:meth:`lenders`). Those are built, with ``mod`` untuned, in
        one batch, and timed on the device; all are kept as records, the untuned one too (:func:`_untuned`), so
        a kernel no schedule beats stays untuned in a tuned build, whatever a search finds later. Returns how
        many schedules were transferred, and whether the best was ``keep_speedup`` times faster than the untuned
        kernel (then no search is needed: a schedule that only matches untuned code is not worth keeping
        unsearched) and reached ``keep_share`` of its sources' median throughput (anchor iterations a second:
        how far it is from what its neighbours reached) or runs in under ``share_min_ms``.
        """
        from tvm.s_tir.meta_schedule.arg_info import ArgInfo

        anchor = _anchor(mod)
        picked: list[Any] = []
        reached: list[float] = []  # the throughput of each source picked: anchor iterations per second
        for source, sch in self.lenders(mod):
            picked.append(sch)
            reached.append(math.prod(source.extents) / source.seconds)
        args = ArgInfo.from_prim_func(mod["main"])
        candidates = [_untuned(mod), *picked]
        built = self.builder.build([ms.builder.BuilderInput(sch.mod, self.target) for sch in candidates])
        seconds = [self._time(b, args) for b in built]
        database = self._own_database() if own else self.database
        workload = database.commit_workload(mod)
        for sch, runs in zip(candidates, seconds, strict=True):
            if runs:
                database.commit_tuning_record(ms.database.TuningRecord(sch.trace, workload, runs, self.target, args))
        if not own:
            self._remember(mod)
        untuned, best = (min((sum(r) / len(r) for r in rs if r), default=math.inf) for rs in (seconds[:1], seconds[1:]))
        if not math.isfinite(best) or best * self.keep_speedup > untuned:
            return len(picked), False
        # Far short of what its neighbours reached, a transferred schedule is searched past even when it beats
        # untuned code (untuned dense convolutions are so slow that almost any schedule does), and a short search
        # often finds far better (README: "Keeping a transferred schedule").
        assert anchor is not None
        if best * 1e3 < self.share_min_ms:
            return len(picked), True
        return len(picked), math.prod(anchor[1]) / best >= self.keep_share * statistics.median(reached)

    def lenders(self, mod: tvm.IRModule, nearest: int | None = None, fastest: int | None = None) -> list[tuple[_Source, Any]]:
        """The tuned workloads whose schedules ``mod`` tries first, each with its schedule refitted to ``mod``: the
        ``nearest`` (default ``self.transfers``) of ``mod``'s anchor that lend one (:func:`shape_distance`), then the
        ``fastest`` (default ``self.fastest``) others among the ``FASTEST_POOL`` nearest, by the throughput they
        reached (anchor iterations a second). Most tuned workloads were themselves transferred, so the nearest alone
        pass a mediocre schedule on from kernel to kernel; the fastest nearby pass on the best one."""
        anchor = _anchor(mod)
        if anchor is None:
            return []
        name, extents = anchor
        kind = block_kind(mod, name)
        nearest = self.transfers if nearest is None else nearest
        fastest = self.fastest if fastest is None else fastest
        sources = sorted(
            (s for s in self._source_index().values() if s.kind == kind and len(s.extents) == len(extents)),
            key=lambda s: shape_distance(s.extents, extents),
        )
        picked: list[tuple[_Source, Any]] = []
        for want, pool in ((nearest, sources), (fastest, sorted(sources[:FASTEST_POOL], key=lambda s: -math.prod(s.extents) / s.seconds))):
            taken = 0
            for source in pool:
                if taken == want:
                    break
                if any(source is s for s, _ in picked):
                    continue
                sch = self._lend(source, mod, extents, name)
                if sch is not None:
                    picked.append((source, sch))
                    taken += 1
        return picked

    def _lend(self, source: _Source, mod: tvm.IRModule, extents: tuple[int, ...], anchor: str) -> Any:
        """``mod`` scheduled by the fastest of ``source``'s kept schedules that fits its loops (None if none does)."""
        for _, record in source.ranked:
            trace = _refit(anchor_trace(record, mod), extents, anchor)
            if trace is None:
                continue
            try:
                return schedule_like(mod, trace, self.target)
            except Exception:  # noqa: BLE001 - a schedule that does not fit these loops: try the source's next
                continue
        return None

    def _time(self, built: ms.builder.BuilderResult, args: list[Any]) -> list[float]:
        """Seconds per repeat of one built candidate on the device ([] when it failed to build or run)."""
        if built.error_msg or not built.artifact_path:
            return []
        try:
            (future,) = self.runner.run([ms.runner.RunnerInput(built.artifact_path, "cpu", args)])
            result = future.result()
        finally:
            shutil.rmtree(Path(built.artifact_path).parent, ignore_errors=True)
        return [float(t) for t in result.run_secs] if not result.error_msg and result.run_secs else []

    def _source_index(self) -> dict[int, _Source]:
        """The best record of every tuned workload in the database, by the workload's structural hash."""
        if self._sources is None:
            self._sources = {}
            records = self.database.get_all_tuning_records()
            counts: dict[int, int] = {}
            for record in records:
                if record.run_secs:
                    key = int(tvm_ffi.structural_hash(record.workload.mod))
                    counts[key] = counts.get(key, 0) + 1
            for record in records:
                self._add_source(record, counts)
        return self._sources

    def _add_source(self, record: Any, counts: dict[int, int]) -> None:
        if self._sources is None or not record.run_secs:
            return
        key = int(tvm_ffi.structural_hash(record.workload.mod))
        known = self._sources.get(key)
        seconds = sum(float(t) for t in record.run_secs) / len(record.run_secs)
        if known is not None:
            known.records = counts.get(key, known.records)
        if _is_untuned(record.trace):  # no schedule to lend
            return
        if known is not None:
            known.offer(seconds, record)
            return
        anchor = _anchor(record.workload.mod)
        if anchor is not None:
            kind = block_kind(record.workload.mod, anchor[0])
            self._sources[key] = _Source([(seconds, record)], anchor[0], kind, anchor[1], counts.get(key, 1))

    def _remember(self, mod: tvm.IRModule) -> None:
        """Make ``mod``'s best record (just tuned or transferred) a source for the kernels after it."""
        if self._sources is None:
            return  # read in full on first use
        if not self.database.has_workload(mod):
            return
        records = [r for r in self.database.get_top_k(self.database.commit_workload(mod), 1 << 30) if r.run_secs]
        if records:
            counts = {int(tvm_ffi.structural_hash(records[0].workload.mod)): len(records)}
            # The best record may be the untuned kernel's (no schedule to lend): the tuned ones after it are.
            for record in records[: LENT_PER_SOURCE + 1]:
                self._add_source(record, counts)

    def scheduled(self, func: Any) -> Any:
        """``func`` as a tuned build runs it now (the best record of its anchor applied, as :meth:`tune` returns it),
        without tuning anything; None when a build would tune it first: its anchor has no record yet, or no tuned
        record of it applies."""
        schedule = self._lookup(main_module(func), untuned=False)
        return None if schedule is None else schedule.mod["main"]

    def best_seconds(self, func: Any) -> float:
        """The mean time of the best record for ``func``'s anchor (NaN without one)."""
        mod = main_module(func)
        record = self.database.query_tuning_record(mod, self.target, "main")
        runs = [float(t) for t in record.run_secs] if record is not None and record.run_secs else []
        return sum(runs) / len(runs) if runs else float("nan")

    def _lookup(self, mod: tvm.IRModule, untuned: bool = True) -> Any:
        """The schedule of ``mod`` from the fastest record with the same anchor block that applies to it, or None when
        its anchor has no record. Where its anchor has records but no tuned one applies (and the untuned kernel was
        not the fastest), the best of its own search (:meth:`tune`, :data:`OWN_FOLDER`), else ``mod`` as it is, with
        a warning; None instead with ``untuned`` False.

        Kernels share records by anchor block, so the fastest may be a twin's (the same conv with another epilogue)
        whose search trace does not replay on this epilogue; the next records, transferred ones (whose epilogue
        collapse comes off, :func:`_uncollapsed`) or the twin's other candidates, often do."""
        records = self._records(mod)
        if not records:
            return None
        applied = self._applied(mod, records, lambda s: True)
        # The fastest record that applies, unless it is the untuned kernel's while faster tuned ones did not apply.
        if applied is not None and (_is_untuned(records[0].trace) or not _is_untuned(applied[1].trace)):
            return applied[0]
        own = self._own(mod)
        if own is not None:
            return own
        if not untuned:
            return None
        # A tuned build runs this kernel untuned while its records say otherwise: say so.
        anchor = _anchor(mod)
        logger.warning("no tuned record of kernel %s applies to it; it runs untuned (-v says why)", anchor[0] if anchor else "?")
        return tvm.s_tir.Schedule(mod)

    def _records(self, mod: tvm.IRModule, tries: int = 16) -> list[Any]:
        """The fastest ``tries`` records of ``mod``'s anchor, fastest first (none when it has none)."""
        if not self.database.has_workload(mod):
            return []
        return list(self.database.get_top_k(self.database.commit_workload(mod), tries))

    def _applied(self, mod: tvm.IRModule, records: list[Any], builds: Callable[[Any], bool]) -> tuple[Any, Any] | None:
        """The schedule of ``mod`` by the first of ``records`` that applies and whose function ``builds``, with that
        record; None when none does."""
        for record in records:
            sch = self._apply(mod, record) if record.run_secs else None
            if sch is not None and builds(sch.mod["main"]):
                return sch, record
        return None

    def _apply(self, mod: tvm.IRModule, record: Any) -> Any:
        """``record``'s schedule applied to ``mod`` (None when it does not fit)."""
        if _is_untuned(record.trace):  # the untuned kernel was the fastest: kept as it is
            return tvm.s_tir.Schedule(mod)
        # MetaSchedule's anchor-trace scheduling assumes an anchor block (a conv, a matmul, a pool); a kernel of
        # data movement only (concat, transposes, split) can have none. Then the trace is replayed as it is,
        # and where that does not fit either, the kernel stays untuned rather than failing the build.
        try:
            return schedule_like(mod, anchor_trace(record, mod), self.target)
        except Exception as exc:  # noqa: BLE001 - TVM raises InternalError or TVMError for a trace that does not fit
            logger.debug("a tuning record does not apply to %s: %s", _anchor(mod), first_line(exc))
        sch = tvm.s_tir.Schedule(mod)
        try:
            record.trace.apply_to_schedule(sch, remove_postproc=False)
        except Exception as exc:  # noqa: BLE001
            logger.debug("nor does its trace replayed as it is: %s", first_line(exc))
            return None
        return sch

    def schedule_that_builds(self, func: Any, builds: Callable[[Any], bool], tries: int = 16) -> Any:
        """``func`` scheduled by the fastest of its anchor's records (up to ``tries``) whose schedule ``builds``;
        None when none does.

        Kernels share records by anchor block, so the fastest may be another kernel's: its schedule can apply
        to this kernel's epilogue cleanly yet leave IR that does not lower (seen: a swish epilogue's
        intermediate used before its definition). The next records, other kernels' or this one's own, often do."""
        mod = main_module(func)
        applied = self._applied(mod, self._records(mod, tries), builds)
        return None if applied is None else applied[0].mod["main"]

    def close(self) -> None:
        _OPEN_DATABASES[self.work_dir.resolve()] = (_files_signature(self.work_dir), self.database)  # its own commits
        if self._own_db is not None:
            own = self.work_dir / OWN_FOLDER
            _OPEN_DATABASES[own.resolve()] = (_files_signature(own), self._own_db)
        self._artifacts.cleanup()
