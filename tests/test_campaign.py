"""Profiling campaigns end to end: real builds, the real agent, the store, faults and resumes."""

from __future__ import annotations

import json
from collections import Counter
from concurrent.futures import Future
from pathlib import Path

import pytest
from tvm import relax
from tvm.script import tirx as T

import edgelat
from edgelat.datasets.store import export_measurements, measurements_frame
from edgelat.errors import CampaignInterrupted, UsageError
from edgelat.ops import OpSpec, config_id, get_op, register_op, unregister_op
from edgelat.profiler import inventory
from edgelat.profiler.builds import BuildRequest, BuiltKernel
from edgelat.profiler.campaign import ProfileConfig, _batches, campaign_plan, plan_configs, profile
from edgelat.workspace import Workspace, measured_by
from tests.sshd import SSHServer

# Fast timing: these tests check the path, not the numbers.
FAST = {"repeat": 3, "min_repeat_ms": 2.0, "build_workers": 0, "weighted": False}


def _rows(ws: Workspace, campaign_id: int | None = None) -> list[dict]:
    q = "SELECT * FROM measurements" + (" WHERE campaign_id = :campaign_id" if campaign_id else "")
    return [dict(r) for r in ws.store.rows(q, {"campaign_id": campaign_id} if campaign_id else None)]


def test_plan_is_reproducible_and_interleaved() -> None:
    a = plan_configs(["conv2d", "add"], 3, seed=5, weighted=False)
    assert a == plan_configs(["conv2d", "add"], 3, seed=5, weighted=False)
    assert [op for op, _ in a] == ["conv2d", "add"] * 3
    assert a != plan_configs(["conv2d", "add"], 3, seed=6, weighted=False)


def test_weighted_plan_draws_more_of_the_heavy_kinds_in_proportion() -> None:
    plan = plan_configs(["add", "conv2d", "dense"], 3, seed=5)
    ops = [op for op, _ in plan]
    assert (ops.count("conv2d"), ops.count("dense"), ops.count("add")) == (12, 6, 3)
    assert len({config_id(op, c) for op, c in plan}) == 21
    # Every third of the plan holds a third of each kind: a campaign stopped early keeps the mix.
    assert sorted(ops[:7]) == ["add", "conv2d", "conv2d", "conv2d", "conv2d", "dense", "dense"]


def test_twins_give_every_epilogue_its_uniform_share_at_drawn_shapes() -> None:
    seeds = {"conv2d": [{"n": 1, "cin": 32, "h": 28, "w": 28, "cout": 64, "k": 3, "stride": 1, "pad": 1, "groups": 1, "dilation": 1,
                         "epilogue": "add.c+relu"}]}  # fmt: skip
    plain = plan_configs(["conv2d", "add"], 40, seed=2, seeds=seeds, weighted=False)
    twinned = plan_configs(["conv2d", "add"], 40, seed=2, seeds=seeds, weighted=False, twins=True)
    assert twinned == plan_configs(["conv2d", "add"], 40, seed=2, seeds=seeds, weighted=False, twins=True)
    drawn = [c for op, c in plain if op == "conv2d"]
    convs = [c for op, c in twinned if op == "conv2d"]
    assert [c for op, c in twinned if op == "add"] == [c for op, c in plain if op == "add"]  # a kind without epilogues is as drawn
    # The drawn configs are all there, in order, and each twin follows its original, differing only in the epilogue.
    originals = [c for c in convs if any(c == d for d in drawn)]
    assert originals == drawn
    last = None
    for c in convs:
        if any(c == d for d in drawn):
            last = c
        else:
            assert last is not None and {**c, "epilogue": last["epilogue"]} == last and c["epilogue"] != last["epilogue"]
    families = get_op("conv2d").epilogues
    counts = Counter(c["epilogue"] for c in convs)
    assert min(counts[f] for f in families) >= -(-len(drawn) // len(families))
    assert Counter(c["epilogue"] for c in drawn)["add.c+relu"] > len(drawn) // len(families)  # the seed's epilogue dominated the draw
    assert counts["add.c+relu"] == Counter(c["epilogue"] for c in drawn)["add.c+relu"]  # and gets no twins
    assert len({config_id("conv2d", c) for c in convs}) == len(convs)


class _RecordingBuilder:
    """Builds nothing; remembers how many builds were asked for."""

    def __init__(self) -> None:
        self.submitted = 0

    def submit(self, req: BuildRequest) -> Future[BuiltKernel]:
        self.submitted += 1
        done: Future[BuiltKernel] = Future()
        done.set_result(BuiltKernel(key=str(self.submitted), lib=None))
        return done


@pytest.mark.parametrize("overlap", [True, False])
def test_builds_pause_while_a_batch_is_timed_on_this_machine(overlap: bool) -> None:
    plan = plan_configs(["add"], 40, seed=0, weighted=False)
    configs = {config_id(op, c): (op, c) for op, c in plan}
    builder = _RecordingBuilder()
    cfg = ProfileConfig(batch=8)
    chunks = _batches(list(configs), builder, configs, {"kind": "llvm"}, None, "x86_64", cfg, overlap=overlap)  # type: ignore[arg-type]
    timed, ahead = 0, []
    for chunk in chunks:  # the body of this loop is where the device times the chunk
        timed += len(chunk)
        ahead.append(builder.submitted - timed)  # builds asked for beyond what was handed out to time
    assert timed == 40
    assert max(ahead) == (cfg.batch if overlap else 0)


def test_the_machine_itself_is_recognised_whatever_the_transport() -> None:
    def ssh(**settings: object) -> inventory.Device:
        return inventory.Device("d", "rpi4", "ssh", dict(settings))

    assert inventory.Device("local", "local").shares_host_cpu
    assert ssh(host="127.0.0.1").shares_host_cpu
    assert ssh(host="::1").shares_host_cpu
    assert ssh(host="localhost").shares_host_cpu
    assert not ssh(host="192.168.1.20").shares_host_cpu
    assert not ssh(host="pi.lan").shares_host_cpu
    assert not ssh(host="127.0.0.1", jump="gateway").shares_host_cpu  # a tunnel ends elsewhere


@pytest.mark.timed
def test_small_campaign_on_local(ws: Workspace, tmp_path: Path) -> None:
    result = profile(ws, "local", ProfileConfig(ops=("conv2d", "add", "dense"), samples=2, **FAST))
    assert (result.status, result.planned, result.measured, result.failed) == ("done", 6, 6, 0)
    rows = _rows(ws)
    assert all(r["status"] == "ok" and r["median_ms"] > 0 and r["repeats"] == 3 and r["threads"] == 1 for r in rows)
    assert all(r["caches"] == "warm" for r in rows)  # the default recipe times kernels on warm caches
    assert {(r["measured_by"], r["edgelat_version"]) for r in rows} == {(measured_by(), edgelat.__version__)}
    assert all(r["min_ms"] <= r["median_ms"] <= r["max_ms"] for r in rows)
    assert json.loads(rows[0]["state_before"])["t"] > 0
    frame = measurements_frame(ws, "local")
    for column in ("op", "config_id", "recipe", "caches", "median_ms", "std_ms", "status", "p_cin", "p_epilogue"):
        assert column in frame.columns
    csv = export_measurements(ws, "local", "csv", tmp_path / "k.csv")
    parquet = export_measurements(ws, "local", "parquet", tmp_path / "k.parquet")
    import pandas as pd

    assert len(pd.read_csv(csv)) == 6 and len(pd.read_parquet(parquet)) == 6


def test_flushed_timings_are_unstable_when_they_shift_not_when_single_calls_spread() -> None:
    from edgelat.profiler.campaign import _spread

    spread_calls = [1.0, 3.0] * 20  # single calls far apart, the same all along: steady
    assert _spread(spread_calls, cv=0.5, flushed=True) == 0.0
    shifted = [1.0] * 20 + [1.5] * 20  # the machine slowed half-way: disturbed
    assert _spread(shifted, cv=0.2, flushed=True) > 0.3
    assert _spread(spread_calls, cv=0.5, flushed=False) == 0.5  # warm repeats: their coefficient of variation


@pytest.mark.timings_ignored
@pytest.mark.parametrize("caches", ["flushed", "llc"])
def test_a_kernel_of_several_functions_is_timed_flushed_as_one(ws: Workspace, monkeypatch: pytest.MonkeyPatch, caches: str) -> None:
    """Flushed (or llc) repeats are single calls: every function of a multi-kernel op gets as many, summed repeat by repeat."""
    from edgelat.profiler.recipes import get_recipe

    monkeypatch.setattr(get_recipe("default"), "caches", caches)  # the tuned recipe's way, without tuning
    result = profile(ws, "local", ProfileConfig(ops=("squeeze_excite",), samples=2, **FAST))
    assert (result.measured, result.failed) == (2, 0)
    rows = _rows(ws)
    assert all(r["status"] == "ok" and r["caches"] == caches and r["number"] == 1 and r["repeats"] >= 3 for r in rows)


@pytest.mark.timed
def test_interrupted_campaign_resumes_without_loss_or_repeats(ws: Workspace) -> None:
    cfg = ProfileConfig(ops=("add", "activation"), samples=3, **FAST)

    def stop_after_4(done: int) -> None:
        if done == 4:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        profile(ws, "local", cfg, fault=stop_after_4)
    (campaign,) = ws.store.rows("SELECT id, status FROM campaigns")
    assert campaign["status"] == "interrupted"
    assert len(_rows(ws)) == 4
    first_ids = {r["config_id"] for r in _rows(ws)}
    result = profile(ws, "local", cfg, resume=True)
    assert (result.campaign_id, result.measured, result.status) == (campaign["id"], 6, "done")
    rows = _rows(ws)
    assert len(rows) == len({r["config_id"] for r in rows}) == 6
    assert first_ids < {r["config_id"] for r in rows}
    with pytest.raises(UsageError, match="nothing to resume"):
        profile(ws, "local", cfg, resume=True)


@pytest.mark.timings_ignored
def test_a_run_of_failures_restarts_the_agent_then_stops_and_is_measured_again_on_resume(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A device or agent gone sick fails every kernel: restart the agent after ``failure_streak`` failures in a row;
    at twice that, stop and forget them, so the resume measures those kernels instead of keeping the failures."""
    from edgelat.profiler import campaign

    sick, restarts = [False], []
    measure, restart = campaign._measure_one, campaign._Session.restart_agent

    def measure_one(session, built, cfg):  # type: ignore[no-untyped-def]
        return {"status": "failed", "error": "sick"} if sick[0] else measure(session, built, cfg)

    def restart_agent(session):  # type: ignore[no-untyped-def]
        restarts.append(1)
        restart(session)

    monkeypatch.setattr(campaign, "_measure_one", measure_one)
    monkeypatch.setattr(campaign._Session, "restart_agent", restart_agent)
    cfg = ProfileConfig(ops=("add", "activation"), samples=5, failure_streak=2, **FAST)

    def fall_ill(done: int) -> None:
        sick[0] = done >= 3

    with pytest.raises(CampaignInterrupted, match="4 kernels in a row failed on local, the last with: sick"):
        profile(ws, "local", cfg, fault=fall_ill)
    assert len(restarts) == 1
    assert [r["status"] for r in _rows(ws)] == ["ok"] * 3  # the four failures were forgotten
    (campaign_row,) = ws.store.rows("SELECT status FROM campaigns")
    assert campaign_row["status"] == "interrupted"
    sick[0] = False
    result = profile(ws, "local", cfg, resume=True)
    assert (result.measured, result.failed, result.status) == (10, 0, "done")


@pytest.mark.timed
@pytest.mark.ssh
def test_campaign_over_ssh_survives_the_server_dying(ws: Workspace, ssh_device: inventory.Device, sshd_server: SSHServer) -> None:
    cfg = ProfileConfig(ops=("add", "max_pool2d"), samples=2, **FAST)

    def kill_sshd_after_2(done: int) -> None:
        if done == 2:
            sshd_server.kill()

    with pytest.raises(CampaignInterrupted, match="--resume"):
        profile(ws, ssh_device.name, cfg, fault=kill_sshd_after_2)
    assert len(_rows(ws)) == 2
    sshd_server.start()
    result = profile(ws, ssh_device.name, cfg, resume=True)
    assert (result.measured, result.failed, result.status) == (4, 0, "done")
    assert {r["device"] for r in _rows(ws)} == {"loopback"}


@T.prim_func(s_tir=True)
def _out_of_bounds(a: T.Buffer((4,), "float32"), b: T.Buffer((4,), "float32")) -> None:
    for i in range(4):
        with T.sblock("b"):
            vi = T.axis.spatial(4, i)
            b[vi * 50000000 + 300000000] = a[vi]  # about 1.2 GB past a 16-byte buffer


@pytest.fixture
def crashing_op() -> str:
    @register_op("test_crash")
    class Crash(OpSpec):
        params = ("n",)

        def sample(self, rng, seeds):  # noqa: ANN001, ANN202
            return {"n": 4}

        def emit(self, cfg):  # noqa: ANN001, ANN202
            bb = relax.BlockBuilder()
            x = relax.Var("x", relax.TensorType((4,), "float32"))
            with bb.function("main", [x]):
                with bb.dataflow():
                    gv = bb.add_func(_out_of_bounds, "crash")
                    out = bb.emit_output(bb.emit(relax.call_tir(gv, [x], out_ty=relax.TensorType((4,), "float32"))))
                bb.emit_func_output(out)
            return bb.get()

        def features(self, cfg):  # noqa: ANN001, ANN202
            return {"n": 4.0}

    yield "test_crash"
    unregister_op("test_crash")


@pytest.mark.timed
def test_crashing_kernel_is_recorded_and_the_campaign_goes_on(ws: Workspace, crashing_op: str) -> None:
    result = profile(ws, "local", ProfileConfig(ops=("add", crashing_op), samples=2, **FAST))
    rows = {r["op"]: r for r in _rows(ws)}
    assert result.measured == 3 and result.failed == 1  # the crash op has one config only
    assert rows[crashing_op]["status"] == "crashed" and "exited" in rows[crashing_op]["error"]
    assert [r["status"] for r in _rows(ws) if r["op"] == "add"] == ["ok", "ok"]


@pytest.mark.timed
def test_hanging_kernel_times_out_and_the_agent_restarts(ws: Workspace) -> None:
    cfg = ProfileConfig(ops=("add",), samples=2, repeat=3, min_repeat_ms=4000.0, kernel_timeout_s=1.0, build_workers=0)
    result = profile(ws, "local", cfg)
    assert result.measured == 2
    assert {r["status"] for r in _rows(ws)} == {"timeout"}
    assert "agent restarted" in _rows(ws)[0]["error"]


def test_bad_input(ws: Workspace) -> None:
    with pytest.raises(UsageError, match="unknown recipe"):
        profile(ws, "local", ProfileConfig(recipe="fast"))
    with pytest.raises(UsageError, match="unknown op"):
        profile(ws, "local", ProfileConfig(ops=("conv9d",)))
    with pytest.raises(UsageError, match="no device"):
        profile(ws, "pi", ProfileConfig())


@pytest.mark.timed
@pytest.mark.slow
def test_tuned_recipe_tunes_once_and_reuses_records(ws: Workspace) -> None:
    """MetaSchedule candidates are timed by the agent; a second campaign finds the records."""
    # One small kernel (a sampled one can be a 4096-wide layer whose candidates take minutes to build).
    kernel = ("dense", {"m": 1, "k": 128, "n": 64, "epilogue": "add.c+relu"})
    cfg = ProfileConfig(configs=(kernel,), recipe="tuned", trials=4, rep_trials=0, repeat=3, min_repeat_ms=2.0)
    first = profile(ws, "local", cfg)
    (row,) = _rows(ws, first.campaign_id)
    assert row["status"] == "ok" and row["recipe"] == "tuned" and row["tune_s"] > 0
    # Timed as in a network: one call per repeat after the core's own caches are written over, at least as many repeats.
    assert row["caches"] == "llc" and row["number"] == 1 and row["repeats"] >= 3
    assert list(ws.tuning_dir("local").glob("*.json")), "no MetaSchedule database in the workspace"
    import shutil

    shutil.rmtree(ws.cache_dir)  # force a rebuild: the database, not the build cache, must answer
    second = profile(ws, "local", cfg)
    (again,) = _rows(ws, second.campaign_id)
    assert again["status"] == "ok" and again["tune_s"] < row["tune_s"] / 2


@pytest.mark.timed
@pytest.mark.slow
def test_tuned_network_build_reuses_the_campaigns_records_and_tunes_only_what_is_missing(ws: Workspace) -> None:
    import torch

    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler.e2e import measure_network

    def workloads() -> int:
        return sum(len(f.read_text().splitlines()) for f in ws.tuning_dir("local").glob("*workload*.json"))

    def net(n_out: int) -> object:
        return relax_from_torch(torch.nn.Sequential(torch.nn.Linear(64, n_out), torch.nn.ReLU()), torch.randn(1, 64))

    # The network's one kernel (dense 1x64x32 + bias + relu), profiled tuned first.
    kernel = ("dense", {"m": 1, "k": 64, "n": 32, "epilogue": "add.c+relu"})
    profile(ws, "local", ProfileConfig(configs=(kernel,), recipe="tuned", trials=4, rep_trials=0, repeat=3, min_repeat_ms=2.0))
    tuned = workloads()
    assert tuned >= 1, [r["error"] for r in ws.store.rows("SELECT status, error FROM measurements")]
    same = measure_network(ws, "local", net(32), recipe="tuned", trials=4, rep_trials=0, repeat=3, min_repeat_ms=5.0, per_kernel=False)
    assert same.recipe == "tuned" and same.median_ms > 0
    assert workloads() == tuned  # found in the campaign's records: nothing tuned again
    other = measure_network(ws, "local", net(48), recipe="tuned", trials=4, rep_trials=0, repeat=3, min_repeat_ms=5.0, per_kernel=False)
    assert other.median_ms > 0
    assert workloads() == tuned + 1  # a kernel no campaign tuned: tuned now, and only it


@pytest.mark.timed
@pytest.mark.slow
def test_a_tuned_network_measurement_is_reused_only_while_its_schedules_are_the_same(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A tuned build runs what the device's tuning database holds, which grows, and what the code applying its records
    makes of them: a stored measurement stands for a new one only while the kernels would be scheduled the same."""
    import shutil

    import torch

    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler.e2e import NetworkMeasurement, measure_network
    from edgelat.profiler.tuning import KernelTuner

    mod = relax_from_torch(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()), torch.randn(1, 64))

    def measure() -> NetworkMeasurement:
        return measure_network(
            ws, "local", mod, recipe="tuned", trials=4, rep_trials=0, repeat=3, min_repeat_ms=5.0, per_kernel=False, reuse=True
        )

    def stored() -> int:
        return len(ws.store.rows("SELECT id FROM network_measurements"))

    first = measure()
    assert stored() == 1 and first.schedules is not None
    assert measure() == first and stored() == 1  # nothing changed: the stored one
    shutil.rmtree(ws.tuning_dir("local"))  # the records gone: a build would tune again
    second = measure()
    assert stored() == 2 and second.schedules is not None
    original = KernelTuner.scheduled
    monkeypatch.setattr(KernelTuner, "scheduled", lambda self, func: original(self, func).with_attr("applied", "otherwise"))
    third = measure()  # the same records, applied otherwise
    assert stored() == 3 and third.schedules not in (None, second.schedules)


def test_weights_shape_the_default_plan_only() -> None:
    """`--samples N` with named kinds is N of each (it was N times the kind's weight: 200 conv2d asked, 800 drawn)."""
    def counts(cfg: ProfileConfig) -> Counter[str]:
        return Counter(op for op, _ in campaign_plan(cfg)[1])

    assert counts(ProfileConfig(ops=("conv2d", "add"), samples=7)) == {"conv2d": 7, "add": 7}
    # Weighted, conv2d draws 4x, and epilogue twins come on top (test_twins_...).
    weighted = counts(ProfileConfig(ops=("conv2d", "add"), samples=7, weighted=True))
    assert weighted["add"] == 7 and weighted["conv2d"] > 28
    default = counts(ProfileConfig(ops=("conv2d", "add")))
    assert default["add"] == 100 and default["conv2d"] > 400
    assert counts(ProfileConfig(ops=("conv2d", "add"), weighted=False)) == {"conv2d": 100, "add": 100}


@pytest.mark.timed
@pytest.mark.slow
def test_a_kept_tuned_library_is_timed_again_only_while_its_schedules_are_the_same(
    ws: Workspace, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """`measure_network(library_dir=...)` (validate's rounds) times the library it kept instead of building the
    network again, but only while the device's tuning database would schedule its kernels the same."""
    import torch

    from edgelat.ops.network import relax_from_torch
    from edgelat.profiler import e2e
    from edgelat.profiler.tuning import KernelTuner

    mod = relax_from_torch(torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU()), torch.randn(1, 64))
    builds: list[int] = []
    build = e2e._build_for
    monkeypatch.setattr(e2e, "_build_for", lambda *a, **k: builds.append(1) or build(*a, **k))
    kept = tmp_path / "libraries"

    def measure() -> e2e.NetworkMeasurement:
        return e2e.measure_network(
            ws, "local", mod, recipe="tuned", trials=4, rep_trials=0, repeat=3, min_repeat_ms=5.0, per_kernel=False, library_dir=kept
        )

    first = measure()
    assert len(builds) == 1 and len(list(kept.glob("*.so"))) == 1 and first.schedules is not None
    second = measure()  # the kept library, timed again and stored again
    assert len(builds) == 1 and second.schedules == first.schedules and second.size_bytes == first.size_bytes
    assert len(ws.store.rows("SELECT id FROM network_measurements")) == 2
    original = KernelTuner.scheduled
    monkeypatch.setattr(KernelTuner, "scheduled", lambda self, func: original(self, func).with_attr("applied", "otherwise"))
    third = measure()  # the same records applied otherwise: another library
    assert len(builds) == 2 and len(list(kept.glob("*.so"))) == 2 and third.schedules != first.schedules
