"""The tuned recipe's search: tile sizes refitted to new shapes, schedules transferred between kernels of
the same ops, and MetaSchedule's tensor intrinsics imported quickly (and completely)."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edgelat.ops import main_module
from edgelat.profiler.tuning import SEARCH_SETTINGS, KernelTuner, Representatives, shape_distance, snap_tiles


@pytest.mark.parametrize(
    ("factors", "extent"),
    [([1, 4, 8, 2], 64), ([1, 4, 8, 2], 96), ([2, 7, 1, 4], 56), ([16, 1], 1000), ([1, 1, 64, 16], 7), ([3, 5], 1), ([1, 32], 30)],
)
def test_snapped_tiles_multiply_to_the_new_extent_and_stay_close(factors: list[int], extent: int) -> None:
    snapped = snap_tiles(factors, extent)
    assert len(snapped) == len(factors) and math.prod(snapped) == extent and min(snapped) >= 1
    if math.prod(factors) == extent:
        assert snapped == factors  # the kernel's own extents: its decisions unchanged


def test_snapped_tiles_take_the_nearest_divisor_from_the_inside_out() -> None:
    # 96: the innermost 2 and then 8 divide what is left; 4 does not divide the 6 left, 3 is nearest
    assert snap_tiles([1, 4, 8, 2], 96) == [2, 3, 8, 2]
    assert snap_tiles([1, 16], 24) == [2, 12]  # 12 is nearer 16 than 24 is (by ratio)


def test_shape_distance_sums_the_log2_ratios_of_loop_extents() -> None:
    a, b = (1, 32, 8, 8, 16, 1, 1), (1, 64, 8, 8, 32, 3, 3)  # twice the channels in and out, 3x3 for 1x1
    assert shape_distance(a, b) == shape_distance(b, a) == pytest.approx(2 + 2 * math.log2(3))
    assert shape_distance(a, a) == 0.0


def test_search_settings_are_registered() -> None:
    assert {"stock", "small", "replay"} <= set(SEARCH_SETTINGS.names())


def test_the_quick_import_registers_every_tensor_intrinsic() -> None:
    """Every intrinsic the tensor_intrin modules declare resolves after the quick import (a fresh process, so
    nothing imported them before)."""
    code = (
        "import sys\n"
        "from edgelat.profiler.tuning import import_tensor_intrinsics\n"
        "import_tensor_intrinsics()\n"
        "from tvm.s_tir import TensorIntrin\n"
        "mods = [m for n, m in sys.modules.items() if n.startswith('tvm.s_tir.tensor_intrin.')]\n"
        "names = {v for m in mods for k, v in vars(m).items() if k.endswith('_INTRIN') and isinstance(v, str)}\n"
        "missing = sorted(n for n in names if TensorIntrin.get(n, allow_missing=True) is None)\n"
        "print(len(mods), len(names), missing)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split(maxsplit=2)
    assert int(out[0]) >= 5 and int(out[1]) >= 50 and out[2].strip() == "[]", out


def _conv(cin: int, hw: int, cout: int, epilogue: str = "add.c+relu", k: int = 1) -> Any:
    from edgelat.ops import get_op, kernel_funcs
    from edgelat.ops.lowering import fuse

    cfg = {
        "n": 1,
        "cin": cin,
        "h": hw,
        "w": hw,
        "cout": cout,
        "k": k,
        "stride": 1,
        "pad": k // 2,
        "groups": 1,
        "dilation": 1,
        "epilogue": epilogue,
    }
    funcs = kernel_funcs(fuse(get_op("conv2d").emit(cfg))[0])
    (name,) = [gv.name_hint for gv in funcs.functions if gv.name_hint != "main"]
    return funcs[name]


def _shapes(func: Any) -> list[list[int]]:
    from tvm.s_tir.meta_schedule.arg_info import ArgInfo

    return [[int(d) for d in a.shape] for a in ArgInfo.from_prim_func(func)]


def _run(func: Any, inputs: list[np.ndarray]) -> np.ndarray:
    import tvm

    lib = tvm.compile(main_module(func), target="llvm")
    out = tvm.runtime.tensor(np.zeros(_shapes(func)[-1], dtype="float32"))
    lib["main"](*[tvm.runtime.tensor(x) for x in inputs], out)
    return out.numpy()


def _assert_computes_the_same(scheduled: Any, plain: Any, tol: float = 1e-4) -> None:
    """``scheduled`` (a tuned PrimFunc) computes what ``plain`` (the kernel untuned) does, on random inputs."""
    rng = np.random.default_rng(0)
    inputs = [rng.standard_normal(shape).astype("float32") for shape in _shapes(plain)[:-1]]
    np.testing.assert_allclose(_run(scheduled, inputs), _run(plain, inputs), rtol=tol, atol=tol)


@pytest.mark.timed
@pytest.mark.slow
def test_a_schedule_transferred_to_another_shape_computes_the_same(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A kernel tuned (a few trials) lends its schedule to the same ops at another shape: tiles refitted, timed
    on the device, kept as that kernel's record without a search when fast enough, and the code computes what
    untuned code does."""
    from edgelat.profiler.inventory import agent_session, get_device
    from edgelat.workspace import open_workspace

    source, target_func = _conv(32, 14, 64), _conv(48, 10, 96)
    with open_workspace(tmp_path / "ws") as ws:
        device = get_device(ws, "local")
        with agent_session(ws, device, threads=1) as agent:

            def measure(path: str, args: list[list[Any]]) -> list[float]:
                return agent.time_library(Path(path), args, repeat=2, min_repeat_ms=1.0)

            # Kept by speedup alone: the throughput rule (tested on its own below) compares real timings of a source
            # tuned 4 trials with its transfer, and would search past the transfer whenever this host's noise says so.
            tuner = KernelTuner(tmp_path / "db", device.preset_info.target(), 1, None, measure, keep_speedup=0.0, keep_share=0.0)
            try:
                first = tuner.tune(source, 4)
                assert first.searched and first.transferred == 0  # nothing to transfer from yet
                # MetaSchedule's per-round tables stay off stdout (where `--json` goes)
                assert "Total trials" not in capfd.readouterr().out
                moved = tuner.tune(target_func, 4)
                assert moved.transferred == 1 and moved.kept_transfer and not moved.searched and moved.trials == 0
                assert math.isfinite(tuner.best_seconds(target_func))
                again = tuner.tune(target_func, 4)  # now a record of its own
                assert not again.searched and again.transferred == 0
                # Asked to be far faster than untuned code, the transferred schedule is tried, then searched past.
                tuner.keep_speedup = 1e9
                third = tuner.tune(_conv(24, 12, 40), 4)
                assert third.transferred >= 1 and not third.kept_transfer and third.searched
                # Another shape and other epilogue blocks (no activation stage): the anchor's schedule still applies,
                # the new epilogue inlined as it needs.
                other_func = _conv(20, 9, 36, epilogue="add.c")
                other = tuner.tune(other_func, 4)
                assert other.transferred >= 1
            finally:
                tuner.close()
    for tuned, plain in ((moved.func, target_func), (other.func, other_func)):
        _assert_computes_the_same(tuned, plain)


def test_a_kernel_no_schedule_beats_stays_untuned(tmp_path: Path) -> None:
    """The untuned kernel is timed first and kept as a record: when the search finds nothing faster, a tuned
    build runs the untuned code (the timings are made up so that the untuned kernel wins)."""
    import tvm_ffi

    calls: list[str] = []

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls.append(path)
        return [1e-6] if len(calls) == 1 else [1.0]

    func = _conv(16, 8, 32)
    # (Seeded: some of the search's random picks do not transfer, and all of them tie here.)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, seed=0)
    try:
        outcome = tuner.tune(func, 4)
        assert outcome.searched and len(calls) > 1  # the search ran, and timed its candidates
        assert tuner.best_seconds(func) == pytest.approx(1e-6)
        assert tvm_ffi.structural_equal(outcome.func.body, func.body)  # untuned: no schedule applied
        # Its searched schedules, slower than untuned code here, are still lent to a kernel of another shape.
        assert tuner.tune(_conv(24, 6, 40), 4).transferred >= 1
    finally:
        tuner.close()


def test_a_source_whose_fastest_schedule_does_not_fit_lends_its_next(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Transfer tries a source's next fastest schedules where its fastest does not fit the new kernel's loops (here:
    its tiles refit to nothing, once), instead of passing the source over."""

    import edgelat.profiler.tuning as tuning

    times = iter(range(1, 1000))
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, lambda path, args: [1e-3 * next(times)], seed=0)
    refit, refits = tuning._refit, []

    def first_fails(trace: Any, *args: Any) -> Any:
        refits.append(trace)
        return None if len(refits) == 1 else refit(trace, *args)

    try:
        assert tuner.tune(_conv(16, 8, 32), 4).searched
        (source,) = tuner._source_index().values()
        assert len(source.ranked) >= 2 and [s for s, _ in source.ranked] == sorted(s for s, _ in source.ranked)
        monkeypatch.setattr(tuning, "_refit", first_fails)
        borrower = _conv(24, 6, 40)
        assert tuner.tune(borrower, 4).transferred == 1
        mod = main_module(borrower)
        lent = [str(tuning.anchor_trace(r, mod)) for _, r in source.ranked[:2]]
        assert len(refits) >= 2 and [str(t) for t in refits[:2]] == lent and lent[0] != lent[1]
    finally:
        tuner.close()


@pytest.mark.parametrize("keep_share", [0.0, 0.5])
def test_a_transfer_far_short_of_what_its_source_reached_is_searched_past_when_asked(tmp_path: Path, keep_share: float) -> None:
    """A transferred schedule 10x faster than untuned code is kept unsearched by the speedup rule alone; asked to
    reach half its source's throughput (anchor iterations a second), one at a hundredth is searched past.
    (Timings made up: the source's tuned schedules take 1 ms, the transferred one 100 ms, untuned code 1 s.)"""
    phase, calls = ["source"], [0]

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls[0] += 1
        if calls[0] == 1:
            return [1.0]  # each kernel's untuned code, timed first
        return [1e-3] if phase[0] == "source" else [0.1]

    source, near = _conv(32, 14, 64), _conv(48, 10, 96)  # of about the same work: 401k and 461k anchor iterations
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, keep_share=keep_share)
    try:
        assert tuner.tune(source, 4).searched
        phase[0], calls[0] = "near", 0
        outcome = tuner.tune(near, 4)
    finally:
        tuner.close()
    assert outcome.transferred >= 1
    assert (outcome.kept_transfer, outcome.searched) == ((True, False) if keep_share == 0.0 else (False, True))


def test_a_kernel_borrows_from_its_nearest_sources_and_from_the_fastest_nearby(tmp_path: Path) -> None:
    """Transfer sources: the nearest tuned kernels of the anchor, then (``fastest``) those nearby that reached the
    highest throughput, however far down the nearest they are. (Timings made up: every source's schedules take 1 ms,
    but the farthest's 10 us, so it is the fastest in anchor iterations a second by far.)"""

    scheduled, calls = [1e-3], [0]

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls[0] += 1
        return [1.0] if calls[0] == 1 else [scheduled[0]]  # each kernel's untuned code is timed first

    sources = [_conv(16, 8, cout) for cout in (40, 64, 128, 256)]  # 0.3, 1, 2 and 3 from the kernel below
    target = _conv(16, 8, 32)
    mod = main_module(target)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, seed=0)
    try:
        for i, func in enumerate(sources):
            scheduled[0], calls[0] = (1e-5 if i == len(sources) - 1 else 1e-3), 0
            tuner.tune(func, 2)
        couts = [s.extents[1] for s, _ in tuner.lenders(mod, nearest=1, fastest=1)]
        assert couts == [40, 256]
        assert [s.extents[1] for s, _ in tuner.lenders(mod, nearest=2, fastest=0)] == [40, 64]
        assert [s.extents[1] for s, _ in tuner.lenders(mod, nearest=0, fastest=2)] == [256, 128]  # then by throughput
    finally:
        tuner.close()


def _pool(c: int, hw: int) -> Any:
    """A global average pool as a campaign profiles it (its input named ``x``, so its reduction block ``x_red``)."""
    from edgelat.ops import get_op, kernel_funcs
    from edgelat.ops.lowering import fuse

    funcs = kernel_funcs(fuse(get_op("global_avg_pool").emit({"n": 1, "c": c, "h": hw, "w": hw, "epilogue": ""}))[0])
    (name,) = [gv.name_hint for gv in funcs.functions if gv.name_hint != "main"]
    return funcs[name]


def _network_pools(c: int, hw: int) -> list[Any]:
    """The two global pools of a network imported from PyTorch (``x.mean((2, 3))``), whose reduction blocks TVM
    names after the tensors they read (not ``x_red``)."""
    import torch

    from edgelat.ops import kernel_funcs
    from edgelat.ops.lowering import fuse
    from edgelat.ops.network import relax_from_torch

    class TwoPools(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            y = x * x.mean((2, 3), keepdim=True)
            return y * torch.relu(y).mean((2, 3), keepdim=True)

    funcs = kernel_funcs(fuse(relax_from_torch(TwoPools().eval(), torch.zeros(1, c, hw, hw)))[0])
    return [funcs[gv] for gv in funcs.functions if gv.name_hint != "main" and "mean" in gv.name_hint]


def _rfactor_record(tuner: KernelTuner, func: Any, inner: int) -> None:
    """A record for the pool ``func`` as MetaSchedule's rfactor rule schedules a reduction: its two reduction loops
    fused, the fused loop tiled (``inner`` inside), the inner part made a partial sum."""
    import tvm
    from tvm.s_tir import meta_schedule as ms

    from edgelat.profiler.tuning import _anchor

    mod = main_module(func)
    anchor = _anchor(mod)
    assert anchor is not None
    sch = tvm.s_tir.Schedule(mod)
    loops = sch.get_loops(sch.get_sblock(anchor[0]))
    fused = sch.fuse(*loops[-2:])
    extent = anchor[1][-2] * anchor[1][-1]
    _, inside = sch.split(fused, sch.sample_perfect_tile(fused, n=2, decision=[extent // inner, inner]))
    sch.rfactor(inside, 0)
    args = ms.arg_info.ArgInfo.from_prim_func(func)
    record = ms.database.TuningRecord(sch.trace, tuner.database.commit_workload(mod), [1e-6], tuner.target, args)
    tuner.add_records(func, [record])


def test_a_network_kernel_takes_the_record_of_a_profiled_kernel_whose_blocks_are_named_otherwise(tmp_path: Path) -> None:
    """TVM names a reduction's block after the tensor it reads: a network's global pool (``lv3_red``) finds the record
    of the profiled pool of its shape (``x_red``; the database matches them by structure) and runs its schedule, not
    untuned code; and the network's second pool of the same shape, named otherwise again, runs it too."""
    import tvm_ffi

    profiled = _pool(32, 8)
    pools = _network_pools(32, 8)
    assert len(pools) == 2
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, lambda path, args: [1.0])
    try:
        _rfactor_record(tuner, profiled, inner=8)
        scheduled = [tuner.scheduled(func) for func in pools]
    finally:
        tuner.close()
    for tuned, plain in zip(scheduled, pools, strict=True):
        assert tuned is not None and not tvm_ffi.structural_equal(tuned.body, plain.body)  # scheduled, not untuned
        assert "rf" in tuned.script()  # the profiled pool's partial sums
        _assert_computes_the_same(tuned, plain)


def test_a_network_layer_norm_runs_the_schedule_searched_for_the_profiled_one(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A layer norm's three reductions are all named after its input (``x_sum``, ``x_mean``, ``x_var_sum`` profiled,
    ``lv_sum``... in a network): a record searched for the profiled kernel applies to the network's, every block
    looked up under the network's name for it, and computes the same."""
    import torch
    import tvm_ffi

    from edgelat.ops import get_op, kernel_funcs
    from edgelat.ops.lowering import fuse
    from edgelat.ops.network import relax_from_torch

    class Norm(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.nn.functional.layer_norm(x, (64,))

    def only(funcs: Any) -> Any:
        return next(funcs[gv] for gv in funcs.functions if "layer_norm" in gv.name_hint)

    profiled = only(kernel_funcs(fuse(get_op("layernorm").emit({"rows": 49, "dim": 64}))[0]))
    network = only(kernel_funcs(fuse(relax_from_torch(Norm().eval(), torch.zeros(49, 64)))[0]))
    calls = [0]

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls[0] += 1
        return [1.0] if calls[0] == 1 else [1e-3]  # the untuned kernel, timed first, loses

    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, seed=0)
    try:
        assert tuner.tune(profiled, 4).searched
        tuned = tuner.scheduled(network)
    finally:
        tuner.close()
    assert tuned is not None and not tvm_ffi.structural_equal(tuned.body, network.body)
    assert "does not apply" not in caplog.text
    _assert_computes_the_same(tuned, network)


def test_pools_lend_schedules_that_tile_their_fused_reduction_loops(tmp_path: Path) -> None:
    """A pool's schedule tiles its reduction loops fused into one (rfactor): transferred to a pool of another size
    (and another block name), the tile is snapped to a divisor of the new fused extent (6 x 6: 8 inside becomes 9)."""

    calls = [0]

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls[0] += 1
        return [1.0] if calls[0] == 1 else [1e-6]  # the untuned kernel, timed first, loses; as fast as the source

    (_, pool) = _network_pools(48, 6)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, keep_speedup=0.0)
    try:
        _rfactor_record(tuner, _pool(32, 8), inner=8)
        outcome = tuner.tune(pool, 4)
        assert outcome.transferred == 1 and outcome.kept_transfer and not outcome.searched
        record = tuner.database.query_tuning_record(main_module(pool), tuner.target, "main")
        tiles = [[int(d) for d in record.trace.get_decision(i)] for i in record.trace.insts if i.kind.name == "SamplePerfectTile"]
        assert tiles == [[4, 9]]
    finally:
        tuner.close()
    _assert_computes_the_same(outcome.func, pool)


def test_a_record_that_anchor_scheduling_refuses_is_replayed_or_left_untuned(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """MetaSchedule's anchor-trace scheduling fails on kernels without an anchor block (a channel shuffle's concat,
    transposes and split): the record's trace is then replayed as it is, and where that fails too the kernel
    is searched again and, none of those applying either, stays untuned, with a warning; a tuned build never fails
    for it. (The failures are forced here.)"""
    import tvm
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    calls: list[str] = []

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls.append(path)
        return [1.0] if len(calls) == 1 else [1e-3]  # the untuned kernel (timed first) loses

    def refuse(*args: Any, **kwargs: Any) -> None:
        raise tvm.error.InternalError("All blocks should have been scheduled or only one (fused) spatial block can remain")

    func = _conv(16, 8, 32)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure)
    try:
        assert tuner.tune(func, 4).searched
        monkeypatch.setattr(ms.trace_apply, "schedule_using_anchor_trace", refuse)
        replayed = tuner.tune(func, 4)
        assert not replayed.searched and not tvm_ffi.structural_equal(replayed.func.body, func.body)
        assert "does not apply" not in caplog.text
        monkeypatch.setattr(tvm.s_tir.Trace, "apply_to_schedule", refuse)
        # No record applies, so it is searched again (``trials`` more), and with none of those applying either
        # it runs untuned.
        untuned = tuner.tune(func, 4)
        assert untuned.searched and tvm_ffi.structural_equal(untuned.func.body, func.body)
        assert "no tuned record of kernel conv2d_nchw applies to it; it runs untuned" in caplog.text
    finally:
        tuner.close()
    _assert_computes_the_same(replayed.func, func)


def test_a_kernel_whose_fastest_record_does_not_apply_takes_the_fastest_that_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """Twins (one conv, two epilogues) share records, and the fastest can be the twin's search trace, which does not
    replay on this epilogue: the kernel takes the fastest record that applies, quietly, and is tuned again when no
    tuned record applies. (Refusals forced here; timings made up, each candidate faster than the one before.)"""
    import logging

    import tvm_ffi

    from edgelat.profiler.tuning import _is_untuned

    calls: list[str] = []

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls.append(path)
        return [1.0] if len(calls) == 1 else [1e-3 / len(calls)]

    func = _conv(16, 8, 32)
    mod = main_module(func)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, seed=0)
    apply = KernelTuner._apply
    try:
        assert tuner.tune(func, 6).searched
        records = [r for r in tuner.database.get_top_k(tuner.database.commit_workload(mod), 16) if r.run_secs]
        refused = {str(records[0].trace)}
        monkeypatch.setattr(KernelTuner, "_apply", lambda self, m, r: None if str(r.trace) in refused else apply(self, m, r))
        with caplog.at_level(logging.WARNING, logger="edgelat.profiler.tuning"):
            second = tuner.scheduled(func)
            assert second is not None and tvm_ffi.structural_equal(second, apply(tuner, mod, records[1]).mod["main"])
            assert not tvm_ffi.structural_equal(second.body, func.body)  # tuned, not the untuned record
            assert "runs untuned" not in caplog.text
            refused |= {str(r.trace) for r in records if not _is_untuned(r.trace)}  # every tuned record
            # No tuned record applies: a build would tune it (it is not built untuned), so it has no schedule yet,
            # and tuning it searches (the refused records are not its own schedule).
            assert tuner.scheduled(func) is None
        tuned = tuner.tune(func, 6)
        assert tuned.searched and not tvm_ffi.structural_equal(tuned.func.body, func.body)
    finally:
        tuner.close()
    _assert_computes_the_same(tuned.func, func)


@pytest.mark.parametrize("lent", [True, False], ids=["transferred", "searched"])
def test_a_twin_that_no_record_of_its_anchor_fits_is_tuned_on_its_own_and_found_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, lent: bool
) -> None:
    """A twin (the same conv, another epilogue) that none of its anchor's records fits is tuned on its own, into a
    database of its own: schedules of other kernels transferred first, and searched where none is kept (no schedule
    lent: ``lent`` False). Opened again by another process, the shared database reads whole (a twin's records would
    not replay on the workload it shares), and the twin finds its own schedule without tuning. (That no shared record
    fits the twin is forced; timings made up, each candidate faster than the one before.)"""
    import tvm_ffi

    from edgelat.profiler import tuning

    calls: list[str] = []
    slow = [1]  # the calls that time an untuned kernel: the first of each tuning (``transfer`` times it first)

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls.append(path)
        return [1.0] if len(calls) in slow else [1e-3 / len(calls)]

    plain, twin = _conv(16, 8, 32), _conv(16, 8, 32, epilogue="add.c+tir_sigmoid+multiply.i1")
    is_twin = lambda m: tvm_ffi.structural_equal(m, main_module(twin))  # noqa: E731
    apply, lenders = KernelTuner._apply, KernelTuner.lenders
    monkeypatch.setattr(KernelTuner, "_apply", lambda self, m, r: None if is_twin(m) else apply(self, m, r))
    if not lent:
        monkeypatch.setattr(KernelTuner, "lenders", lambda self, m, *a, **k: [] if is_twin(m) else lenders(self, m, *a, **k))
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, seed=0)
    try:
        assert tuner.tune(plain, 6).searched
        before = len(tuner._records(main_module(plain)))
        slow.append(len(calls) + 1)
        tuned = tuner.tune(twin, 6)
        assert len(tuner._records(main_module(plain))) == before  # nothing of the twin's under the shared workload
        assert (tuned.transferred > 0 and tuned.kept_transfer and not tuned.searched) if lent else (tuned.transferred == 0 and tuned.searched)
        assert not tvm_ffi.structural_equal(tuned.func.body, twin.body)
    finally:
        tuner.close()
    monkeypatch.setattr(tuning, "_OPEN_DATABASES", {})  # as another process finds them
    again = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, seed=0)
    try:
        found = again.scheduled(twin)
        assert found is not None and tvm_ffi.structural_equal(found, tuned.func)
        for func in (plain, twin):
            outcome = again.tune(func, 6)
            assert not outcome.searched and outcome.transferred == 0
    finally:
        again.close()
    assert not list((tmp_path / "db").rglob("*.damaged*")) and "cannot be read" not in caplog.text
    _assert_computes_the_same(found, twin)


def test_a_kernel_whose_fastest_record_does_not_build_takes_the_fastest_that_does(tmp_path: Path) -> None:
    """Kernels share records by anchor block, and the fastest can apply to a kernel yet not build for it: the
    next records are tried, fastest first, and one that builds is taken; none when none does. (Which records
    build is decided by the check given; the timings are made up, each candidate faster than the one before.)"""
    import tvm_ffi

    calls: list[str] = []

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls.append(path)
        return [1.0 / len(calls)]

    func = _conv(16, 8, 32)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure)
    try:
        assert tuner.tune(func, 4).searched and len(calls) >= 3
        fastest = tuner.tune(func, 4).func
        checked: list[Any] = []
        second = tuner.schedule_that_builds(func, lambda f: checked.append(f) or len(checked) > 1)
        assert second is not None and len(checked) == 2
        assert tvm_ffi.structural_equal(checked[0].body, fastest.body)  # the fastest was checked first, and refused
        assert not tvm_ffi.structural_equal(second.body, fastest.body) and not tvm_ffi.structural_equal(second.body, func.body)
        assert tuner.schedule_that_builds(func, lambda f: False) is None
        assert tuner.schedule_that_builds(_conv(16, 8, 32, epilogue="add.c"), lambda f: True) is not None  # same anchor, another epilogue
    finally:
        tuner.close()
    _assert_computes_the_same(second, func)


@pytest.mark.parametrize(
    ("epilogue", "after_anchor"),
    [
        ("add.c+tir_sigmoid+multiply.i1", 2),
        ("tir_sigmoid+multiply.i1", 1),
        ("add.c+add.s+tir_clip+tir_clip+multiply.i3+divide.s", 2),
        ("add.c+relu", 2),
    ],
)
def test_an_epilogue_collapses_to_the_anchors_consumer_and_the_output(epilogue: str, after_anchor: int) -> None:
    """What anchor-trace scheduling is given: at most the anchor's one consumer and the output block after the
    anchor, computing what the kernel did. Without a bias, swish's sigmoid and multiply both read the conv: the
    sigmoid goes into the multiply, as after a bias add."""
    import tvm

    from edgelat.profiler.tuning import _anchor, collapse_epilogue

    func = _conv(16, 8, 24, epilogue=epilogue)
    mod = tvm.IRModule({"main": func})
    anchor = _anchor(mod)
    assert anchor is not None
    collapsed = collapse_epilogue(mod, anchor[0])
    sch = tvm.s_tir.Schedule(collapsed)
    blocks, frontier = [], list(sch.get_consumers(sch.get_sblock(anchor[0])))
    while frontier:
        block = frontier.pop(0)
        blocks.append(sch.get(block).name_hint)
        frontier += [b for b in sch.get_consumers(block) if sch.get(b).name_hint not in blocks]
    assert len(set(blocks)) == after_anchor, blocks
    _assert_computes_the_same(collapsed["main"], func, tol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize(("swish", "relu"), [("add.c+tir_sigmoid+multiply.i1", "add.c+relu"), ("tir_sigmoid+multiply.i1", "relu")])
def test_a_swish_kernel_builds_with_the_schedule_of_a_kernel_with_another_epilogue(tmp_path: Path, swish: str, relu: str) -> None:
    """Kernels share records by anchor block, and anchor-trace scheduling replays a record's inlining by block name.
    A chain seen in efficientnet's tuned build: a swish kernel searched, its schedule lent to a conv + bias + relu
    kernel of another shape, and that record then taken by a swish kernel with the same conv. Replayed as it came,
    the record reverse-inlines ``compute`` (there the relu, here the sigmoid) into the bias add, and the multiply
    reads a buffer nobody writes; with the epilogue collapsed first it builds, tuned, and computes what untuned
    code does; with or without a bias. (Timings made up, each
    candidate faster than the one before, so that the transfers are kept.)"""
    import tvm_ffi

    from edgelat.profiler.builds import _lowers

    calls: list[str] = []

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls.append(path)
        return [1.0 / len(calls)]

    llvm = {"kind": "llvm"}
    tuner = KernelTuner(tmp_path / "db", llvm, 1, None, measure, keep_speedup=0.0)
    try:
        assert tuner.tune(_conv(16, 8, 32, epilogue=swish), 8).searched
        lent = tuner.tune(_conv(24, 8, 48, epilogue=relu), 8)
        assert lent.transferred == 1 and lent.kept_transfer
        func = _conv(24, 8, 48, epilogue=swish)
        tuned = tuner.tune(func, 8)
        assert not tuned.searched and tuned.transferred == 0  # the record of the relu kernel, looked up
        assert tuner.tune(_conv(40, 8, 56, epilogue=swish), 8).transferred  # schedules lent to a swish kernel, kept
    finally:
        tuner.close()
    # A database is read back by replaying each record on its workload: the transferred ones replay too.
    from tvm.s_tir import meta_schedule as ms

    from edgelat.profiler.tuning import MODULE_EQUALITY

    records = (tmp_path / "db" / "database_tuning_record.json").read_text().splitlines()
    assert len(ms.database.JSONDatabase(work_dir=str(tmp_path / "db"), module_equality=MODULE_EQUALITY).get_all_tuning_records()) == len(
        records
    )
    assert not tvm_ffi.structural_equal(tuned.func.body, func.body) and _lowers(tuned.func, llvm)
    _assert_computes_the_same(tuned.func, func)


@pytest.mark.slow
def test_a_conv_takes_the_transferred_record_of_the_same_conv_with_a_residual(tmp_path: Path) -> None:
    """Kernels with one anchor share a workload: resnet's conv + bias + relu looks up the record transferred to
    its residual twin (conv + bias + add + relu). A transferred record starts with its own epilogue's collapse;
    when that collapse walked the epilogue's consumers in the trace, the walk did not replay on the shorter
    epilogue, and the kernel ran untuned in the tuned build (four of resnet18's convolutions). (Timings made up,
    each candidate faster than the one before, so that the transfer is kept.)"""
    import tvm_ffi

    calls: list[str] = []

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls.append(path)
        return [1.0 / len(calls)]

    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, keep_speedup=0.0)
    try:
        assert tuner.tune(_conv(16, 8, 16, epilogue="add.c+add.t+relu", k=3), 8).searched
        residual = tuner.tune(_conv(24, 8, 24, epilogue="add.c+add.t+relu", k=3), 8)
        assert residual.transferred == 1 and residual.kept_transfer
        func = _conv(24, 8, 24, epilogue="add.c+relu", k=3)
        mod = main_module(func)
        record = tuner.database.query_tuning_record(mod, tuner.target, "main")
        assert record is not None and "T_add1" in record.workload.mod.script()  # the residual's transferred record
        scheduled = tuner.scheduled(func)
    finally:
        tuner.close()
    assert scheduled is not None and not tvm_ffi.structural_equal(scheduled.body, func.body)
    _assert_computes_the_same(scheduled, func)


def test_a_conv_with_a_residual_takes_the_searched_record_of_the_same_conv_without(tmp_path: Path) -> None:
    """The other direction: a searched conv + bias lends its record to its twin with a residual add. A search's
    trace can keep queries whose answers nothing uses (mnasnet's asked for the bias add by name, then for its
    consumers: none there, the residual add in the twin); replayed as they are, the answer differed, the whole
    trace failed, and the twin ran untuned (2 ms instead of 0.02). Such queries are put near the front of a
    searched trace here, as in mnasnet's record."""
    import tvm
    import tvm_ffi
    from tvm.s_tir import meta_schedule as ms

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        return [1e-3]

    func, twin = _conv(24, 8, 16, epilogue="add.c"), _conv(24, 8, 16, epilogue="add.c+add.t")
    mod, twin_mod = (main_module(f) for f in (func, twin))
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, seed=0)
    try:
        assert tuner.tune(func, 4).searched
        workload = tuner.database.commit_workload(mod)
        (searched, *_) = [r for r in tuner.database.get_top_k(workload, 16) if r.run_secs and r.trace.insts[1:]]
        sch = tvm.s_tir.Schedule(mod)
        sch.get_sblock("root")
        sch.get_sblock("T_add")
        (bias,) = sch.get_consumers(sch.get_sblock("conv2d_nchw"))
        assert sch.get_consumers(bias) == []  # what the twin answers otherwise
        searched.trace.apply_to_schedule(sch, remove_postproc=False)
        probed = ms.database.TuningRecord(sch.trace, workload, [1e-6], tuner.target, searched.args_info)
        tuner.database.commit_tuning_record(probed)
        assert tuner._apply(twin_mod, probed) is not None
        scheduled = tuner.scheduled(twin)
    finally:
        tuner.close()
    assert scheduled is not None and not tvm_ffi.structural_equal(scheduled.body, twin.body)
    _assert_computes_the_same(scheduled, twin)


def test_a_records_collapse_comes_off_in_the_form_it_was_written() -> None:
    """The collapse a trace starts with is its inlining only; records written before also walked the epilogue's
    consumers first (workspaces keep them). Both come off, and a trace that uses what its first instructions
    found is left whole."""
    from types import SimpleNamespace

    import tvm

    from edgelat.profiler.tuning import _anchor, _collapse, _uncollapsed

    mod = tvm.IRModule({"main": _conv(16, 8, 16, epilogue="add.c+add.t+relu", k=3)})
    anchor = _anchor(mod)
    assert anchor is not None
    sch = tvm.s_tir.Schedule(mod)
    assert _collapse(sch, anchor[0]) == ["T_add1"]
    assert [i.kind.name for i in sch.trace.insts] == ["GetSBlock", "ComputeInline"]
    sch.get_loops(sch.get_sblock(anchor[0]))
    assert [i.kind.name for i in _uncollapsed(SimpleNamespace(trace=sch.trace), anchor[0]).insts] == ["GetSBlock", "GetLoops"]

    legacy = tvm.s_tir.Schedule(mod)
    block = legacy.get_sblock(anchor[0])
    while consumers := legacy.get_consumers(block):
        block = consumers[0]
    legacy.compute_inline(legacy.get_sblock("T_add1"))
    conv = legacy.get_sblock(anchor[0])
    legacy.get_loops(conv)
    assert [i.kind.name for i in _uncollapsed(SimpleNamespace(trace=legacy.trace), anchor[0]).insts] == ["GetSBlock", "GetLoops"]

    searched = tvm.s_tir.Schedule(mod)
    first = searched.get_sblock(anchor[0])
    searched.get_consumers(first)
    searched.get_loops(first)  # uses the block the first instruction found: nothing to take off
    assert len(_uncollapsed(SimpleNamespace(trace=searched.trace), anchor[0]).insts) == 3


def test_a_runaway_build_is_cut_off_and_its_worker_replaced(tmp_path: Path) -> None:
    import operator
    import time

    from edgelat.errors import BuildTimeoutError
    from edgelat.profiler.builds import Builder

    with Builder(tmp_path, workers=1) as builder:
        assert builder.wait(builder.call(operator.add, 1, 1), 120) == 2  # the worker is up
        runaway = builder.call(time.sleep, 3600)
        with pytest.raises(BuildTimeoutError):
            builder.wait(runaway, 1.0)
        # The one worker was still sleeping: only a replaced worker can answer this.
        assert builder.wait(builder.call(operator.add, 2, 3), 120) == 5


def test_a_tuning_database_is_read_once_per_process_until_someone_else_writes_to_it(tmp_path: Path) -> None:
    """Opening a large database takes minutes, so a process's tuners share the one they opened (a validation run
    builds a dozen networks); when another writer changed its files since, it is read again."""
    from tvm.s_tir import meta_schedule as ms

    from edgelat.profiler.tuning import MODULE_EQUALITY

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        return [1.0]

    first = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure)
    first.close()
    second = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure)
    assert second.database is first.database
    second.close()
    other = ms.database.JSONDatabase(work_dir=str(tmp_path / "db"), module_equality=MODULE_EQUALITY)  # another process
    other.commit_workload(main_module(_conv(8, 4, 8)))
    third = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure)
    try:
        assert third.database is not first.database and len(third.database) == 0  # read again (a workload, no records)
        assert third.database.has_workload(main_module(_conv(8, 4, 8)))
    finally:
        third.close()


def test_records_a_database_cannot_read_are_set_aside_and_the_rest_kept(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """TVM reads a tuning database whole or not at all. A line cut short (a crash mid-write) or a record whose trace
    does not replay on its workload (here a convolution's schedule filed under a pool) is moved to a ``.damaged``
    file beside it, with a warning; the device's other records stay usable."""
    import json
    import logging


    def measure(path: str, args: list[list[Any]]) -> list[float]:
        return [1.0]

    conv, pool = _conv(16, 8, 32), _pool(16, 8)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, seed=0)
    try:
        tuner.tune(conv, 2)
        tuner.database.commit_workload(main_module(pool))
    finally:
        tuner.close()
    records = tmp_path / "db" / "database_tuning_record.json"
    lines = records.read_text().splitlines()
    tuned = [line for line in lines if len(json.loads(line)[1][0][0]) > 1]  # a searched schedule, not the untuned kernel
    assert tuned
    _, record = json.loads(tuned[0])
    misfiled = json.dumps([1, record])  # workload 1 is the pool
    with records.open("a") as f:
        f.write(misfiled + "\n" + lines[0][: len(lines[0]) // 2])  # and a last line cut short, no newline
    with caplog.at_level(logging.WARNING, logger="edgelat.profiler.tuning"):
        reopened = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure)
    try:
        assert len(reopened.database) == len(lines)
        assert math.isfinite(reopened.best_seconds(conv))
        assert reopened.scheduled(conv) is not None
    finally:
        reopened.close()
    (aside,) = (tmp_path / "db").glob("database_tuning_record.json.damaged-*")
    assert aside.read_text().splitlines() == [misfiled, lines[0][: len(lines[0]) // 2]]
    assert records.read_text().splitlines() == lines
    assert "set aside 2 of" in caplog.text


def test_representatives_are_searched_long_and_the_kernels_near_them_take_their_schedules(tmp_path: Path) -> None:
    """A kernel with no representative of its anchor within the radius is searched with the representatives'
    budget; one near a representative starts from its schedule and searches only the small budget (here never:
    any transferred schedule is kept); one far from it becomes a representative too. What counts as one is read
    back from the database by a fresh tuner. (Timings made up.)"""

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        return [1e-3]

    reps = Representatives(trials=6, radius=2.0, search="small", per_round=6)
    first, near, far = _conv(16, 8, 32), _conv(16, 8, 48), _conv(64, 4, 128, epilogue="add.c")
    assert shape_distance((1, 32, 8, 8, 16, 1, 1), (1, 48, 8, 8, 16, 1, 1)) < 2.0
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, keep_speedup=0.0, representatives=reps)
    try:
        assert tuner.needs_representative(first)
        a = tuner.tune(first, 2)
        assert a.searched and a.trials == 6
        assert not tuner.needs_representative(near) and tuner.needs_representative(far)
        b = tuner.tune(near, 2)
        assert not b.searched and b.kept_transfer and b.transferred >= 1
        c = tuner.tune(far, 2)
        assert c.searched and c.trials == 6 and c.transferred >= 1  # seeded with the nearest schedules
    finally:
        tuner.close()
    again = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, representatives=reps)
    try:  # the near kernel has a record (not a representative); a new one near the first needs none
        assert not again.needs_representative(near) and not again.needs_representative(_conv(16, 8, 40))
        assert again.needs_representative(_conv(16, 8, 40, epilogue="add.c")) is False  # another epilogue, same anchor
        assert KernelTuner(tmp_path / "db2", {"kind": "llvm"}, 1, None, measure, representatives=reps).needs_representative(near)
    finally:
        again.close()


def test_a_representative_covers_only_kernels_with_its_unit_loops_when_asked(tmp_path: Path) -> None:
    """With ``same_unit_loops`` a 3x3 convolution's representative does not cover a 1x1 convolution of the same
    channels and map (its window loops have extent 1), though it is within the radius; without it, it does. A 3x3
    convolution nearby is covered either way. (Timings made up.)"""

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        return [1e-3]

    loose = Representatives(trials=6, radius=4.0, search="small", per_round=6)
    strict = Representatives(trials=6, radius=4.0, search="small", per_round=6, same_unit_loops=True)
    one_by_one, three_by_three = _conv(16, 8, 32), _conv(16, 8, 48, k=3)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, keep_speedup=0.0, representatives=loose)
    try:
        assert tuner.tune(_conv(16, 8, 32, k=3), 2).trials == 6
        assert not tuner.needs_representative(one_by_one) and not tuner.needs_representative(three_by_three)
    finally:
        tuner.close()
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, representatives=strict)
    try:
        assert tuner.needs_representative(one_by_one) and not tuner.needs_representative(three_by_three)
    finally:
        tuner.close()


def test_a_kernel_fast_before_any_search_is_not_searched_long(tmp_path: Path) -> None:
    """A kernel far from every representative whose untuned code already runs in under ``min_ms`` is searched with
    the small budget, not the representatives' (a long search would cost minutes to save microseconds), and does
    not become a representative: the next kernel of its anchor, slow, is searched long. (Timings made up.)"""
    seconds = 1e-6

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        return [seconds]

    reps = Representatives(trials=12, radius=2.0, search="small", per_round=6, min_ms=0.05)
    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure, keep_speedup=0.0, representatives=reps)
    try:
        cheap = tuner.tune(_conv(16, 8, 32), 2)
        assert cheap.searched and 0 < cheap.trials <= 2
        slow_func = _conv(16, 8, 48)
        assert tuner.needs_representative(slow_func)
        seconds = 1e-3
        slow = tuner.tune(slow_func, 2)
        assert slow.searched and slow.trials == 12 and slow.transferred >= 1
    finally:
        tuner.close()


@pytest.mark.timed
def test_candidates_are_timed_with_the_cache_state_asked_for(tmp_path: Path) -> None:
    """MetaSchedule's candidates go through ``time_library``, in the cache state a recipe asks for
    (``Recipe.candidate_caches``), which the agent must receive: an unknown state is refused there, a known one is timed."""
    import tvm

    from edgelat.profiler.agent_client import AgentReplyError
    from edgelat.profiler.inventory import agent_session, get_device
    from edgelat.workspace import open_workspace

    func = _conv(8, 6, 8)
    lib = tmp_path / "cand" / "mod.so"
    lib.parent.mkdir()
    tvm.compile(main_module(func), target="llvm").export_library(str(lib))
    args = [[shape, "float32"] for shape in _shapes(func)]
    with open_workspace(tmp_path / "ws") as ws:
        with agent_session(ws, get_device(ws, "local"), threads=1) as agent:
            with pytest.raises(AgentReplyError, match="caches must be"):
                agent.time_library(lib, args, caches="lukewarm")
            seconds = agent.time_library(lib, args, repeat=2, min_repeat_ms=1.0, caches="llc")
    # llc: one call per repeat, as many repeats as a warm 1 ms repeat would have calls (more than the 2 asked)
    assert len(seconds) > 2 and min(seconds) > 0


def test_an_interrupt_during_a_search_stops_it_and_is_not_a_failed_kernel(tmp_path: Path) -> None:
    """Ctrl-C (or SIGTERM, which the CLI turns into KeyboardInterrupt) while MetaSchedule's C++ loop is timing a
    candidate comes back out of the recipe as KeyboardInterrupt: the campaign stops, resumable, instead of storing
    the kernel as failed to build and going on."""
    from edgelat.profiler.recipes import get_recipe

    calls = []

    def measure(path: str, args: list[list[Any]]) -> list[float]:
        calls.append(path)
        raise KeyboardInterrupt

    tuner = KernelTuner(tmp_path / "db", {"kind": "llvm"}, 1, None, measure)
    try:
        with pytest.raises(KeyboardInterrupt):
            get_recipe("tuned").schedule({"k": _conv(8, 6, 8)}, tuner, 4)
    finally:
        tuner.close()
    assert len(calls) == 1  # stopped at the first candidate, not after the search's trials
