"""Device groups (fleets): two loopback-sshd devices sharing one campaign, one of them killed mid-way.

Both members are this machine through their own sshd, so they time on the same cores: these tests check
that every planned kernel is measured once by some member, not the times (`timings_ignored`).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import pytest
from typer.testing import CliRunner

from edgelat.cli import app
from edgelat.errors import CampaignInterrupted, TransportError, UsageError
from edgelat.profiler import inventory
from edgelat.profiler.campaign import ProfileConfig
from edgelat.profiler.executors import builds_beside
from edgelat.profiler.fleet import SENTINEL_TOLERANCE, _Work, profile_group, sentinel_deviations
from edgelat.workspace import Workspace, open_workspace
from tests.sshd import SSHServer, find_sshd, start_sshd

QUICK = ProfileConfig(ops=("conv2d", "dense"), samples=8, weighted=False, repeat=2, min_repeat_ms=1.0)


@pytest.fixture(scope="module")
def servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[SSHServer]]:
    if find_sshd() is None:
        pytest.fail("OpenSSH's sshd is not installed (apt-get install openssh-server; .ci/run does this)")
    found = [start_sshd(tmp_path_factory.mktemp(f"sshd{i}")) for i in range(2)]
    yield found
    for server in found:
        server.stop()


def _add_members(ws: Workspace, servers: list[SSHServer], preset: str = "local") -> list[str]:
    names = []
    for i, server in enumerate(servers):
        if server.process is None:
            server.start()
        name = f"board{i}"
        inventory.add_device(ws, name, host="127.0.0.1", port=server.port, user=server.user, key_file=str(server.client_key),
                             preset=preset, python=sys.executable)  # fmt: skip
        inventory.trust_device(ws, name)
        names.append(name)
    return names


@pytest.fixture
def fleet(ws: Workspace, servers: list[SSHServer]) -> inventory.Device:
    members = _add_members(ws, servers)
    return inventory.add_group(ws, "fleet", members)[0]


def _rows(ws: Workspace, campaign_id: int) -> list[tuple[str, str, str | None]]:
    query = "SELECT config_id, member, flagged FROM measurements WHERE campaign_id = :campaign_id"
    return [(r["config_id"], r["member"], r["flagged"]) for r in ws.store.rows(query, {"campaign_id": campaign_id})]


def test_a_group_holds_identical_real_devices(ws: Workspace, servers: list[SSHServer], tmp_path: Path) -> None:
    members = _add_members(ws, servers)
    group, probes = inventory.add_group(ws, "pis", members)
    assert group.members == members and group.preset == "local" and set(probes) == set(members)
    assert inventory.get_device(ws, "pis").is_group
    # Each member was probed (and the probes stored) to check they are the same board.
    assert all(inventory.latest_probe(ws, m) is not None for m in members)
    inventory.add_device(ws, "other", host="127.0.0.1", port=servers[0].port, user=servers[0].user, preset="rpi4")
    with pytest.raises(UsageError, match="one preset; these have local, rpi4"):
        inventory.add_group(ws, "mixed", [members[0], "other"])
    with pytest.raises(UsageError, match="pis is a group"):
        inventory.add_group(ws, "nested", ["pis"])
    with pytest.raises(UsageError, match="named twice"):
        inventory.add_group(ws, "twice", [members[0], members[0]])
    # Anything but profile/train/predict goes to one member, said in one line.
    with pytest.raises(UsageError, match="pis is a group of identical devices"):
        inventory.connect(ws, group)
    inventory.remove_device(ws, members[1])
    assert inventory.get_device(ws, "pis").members == [members[0]]


def test_group_cli_lines(tmp_path: Path, servers: list[SSHServer]) -> None:
    root = tmp_path / "ws"
    with open_workspace(root) as ws:
        members = _add_members(ws, servers)
    result = CliRunner().invoke(app, ["device", "group", "add", "fleet", *members, "-w", str(root)])
    assert result.exit_code == 0 and "added group fleet (local) of board0, board1: probes agree" in result.output, result.output
    listed = json.loads(CliRunner().invoke(app, ["device", "list", "--json", "-w", str(root)]).output)
    assert {d["name"]: d["address"] for d in listed}["fleet"] == "group of board0, board1"
    for args, message in [
        (["device", "group", "add", "fleet2", "board0", "nosuch"], "no device named 'nosuch'"),
        (["profile", "fleet", "--recipe", "tuned"], "profile it on one member of fleet"),
        (["device", "probe", "fleet"], "fleet is a group of identical devices"),
    ]:
        result = CliRunner().invoke(app, [*args, "-w", str(root)])
        assert result.exit_code == 2 and message in result.stderr and "Traceback" not in result.output, (args, result.output)


@pytest.mark.timings_ignored
def test_a_fleet_campaign_shares_one_plan_and_trains_one_model(ws: Workspace, fleet: inventory.Device) -> None:
    result, report = profile_group(ws, fleet, QUICK)
    rows = _rows(ws, result.campaign_id)
    assert result.status == "done" and result.planned == 16 and len(rows) == 16 and len({cid for cid, _, _ in rows}) == 16
    # Both members measured a share, and every row says which.
    assert {member for _, member, _ in rows} == set(fleet.members) and sum(report.rows.values()) == 16
    assert all(n > 0 for n in report.rows.values()) and not report.dropped
    # Every member timed the sentinels (one conv2d, one dense) before and after; flags follow from them.
    stored = ws.store.rows("SELECT member, phase, config_id, median_ms FROM sentinels WHERE campaign_id = :campaign_id", {"campaign_id": result.campaign_id})
    times: dict[str, dict[str, dict[str, float]]] = {}
    for s in stored:
        times.setdefault(s["phase"], {}).setdefault(s["member"], {})[s["config_id"]] = s["median_ms"]
    assert {p: {m: len(t) for m, t in by.items()} for p, by in times.items()} == {p: {m: 2 for m in fleet.members} for p in ("before", "after")}
    for phase, by_member in times.items():
        assert report.deviations[phase] == pytest.approx(sentinel_deviations(by_member))
    off = {m for phase in times for m, d in report.deviations[phase].items() if abs(d) > SENTINEL_TOLERANCE}
    assert {m for _, m, flag in rows if flag} == off == set(report.flagged)
    # One model set for the group, from the rows no flag excludes (flags set here, whatever the sentinels said).
    from edgelat.predictors.train import train_device

    ws.store.execute("UPDATE measurements SET flagged = NULL")
    trained = train_device(ws, "fleet", min_samples=2, folds=2)
    kinds = {"conv2d", "dense"}  # (train adds a "fallback" model over every kind)
    assert {r.op: r.n for r in trained.ops if r.op in kinds} == {"conv2d": 8, "dense": 8} and Path(trained.model_dir).parent.name == "fleet"
    ws.store.execute("UPDATE measurements SET flagged = 'test' WHERE member = :member", {"member": fleet.members[1]})
    trained = train_device(ws, "fleet", min_samples=2, folds=2)
    kept = {r["op"]: r["n"] for r in ws.store.rows("SELECT op, COUNT(*) AS n FROM measurements WHERE flagged IS NULL GROUP BY op")}
    assert {r.op: r.n for r in trained.ops if r.op in kinds} == {op: n for op, n in kept.items() if n >= 2}
    assert f"{16 - sum(kept.values())} measured by group members" in trained.skipped["(flagged members)"]


@pytest.mark.timings_ignored
def test_a_member_killed_mid_campaign_hands_its_share_to_the_other(ws: Workspace, fleet: inventory.Device, servers: list[SSHServer]) -> None:
    doomed = fleet.members[1]

    def kill(member: str, measured: int) -> None:
        if member == doomed and measured == 2:
            servers[1].kill()  # the server and every session it serves: a board unplugged

    try:
        result, report = profile_group(ws, fleet, QUICK, fault=kill)
    finally:
        servers[1].start()
    rows = _rows(ws, result.campaign_id)
    assert result.status == "done" and len(rows) == 16 and len({cid for cid, _, _ in rows}) == 16
    assert doomed in report.dropped and report.rows[doomed] == 2 and report.rows[fleet.members[0]] == 14


@pytest.mark.timings_ignored
def test_a_member_gone_sick_restarts_its_agent_then_leaves_and_the_other_measures_its_failures(
    ws: Workspace, fleet: inventory.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A member whose every kernel fails (a sick board or agent): its agent is restarted after ``failure_streak``
    failures in a row; at twice that it leaves, its failures are forgotten and the other member measures them."""
    import dataclasses

    from edgelat.profiler import campaign
    from edgelat.profiler import fleet as fleet_module

    sick = fleet.members[1]
    measure, restart = campaign._measure_one, campaign._Session.restart_agent
    restarts: list[str] = []

    def measure_one(session, built, cfg):  # type: ignore[no-untyped-def]
        return {"status": "failed", "error": "sick"} if session.device.name == sick else measure(session, built, cfg)

    def restart_agent(session):  # type: ignore[no-untyped-def]
        restarts.append(session.device.name)
        restart(session)

    monkeypatch.setattr(fleet_module, "_measure_one", measure_one)
    monkeypatch.setattr(campaign._Session, "restart_agent", restart_agent)
    result, report = profile_group(ws, fleet, dataclasses.replace(QUICK, failure_streak=2))
    rows = _rows(ws, result.campaign_id)
    assert (result.status, result.measured, result.failed) == ("done", 16, 0)
    assert len(rows) == 16 and {member for _, member, _ in rows} == {fleet.members[0]}
    assert restarts == [sick] and report.rows == {fleet.members[0]: 16, sick: 0}
    assert report.dropped == {sick: "4 kernels in a row failed on it, the last with: sick"}


@pytest.mark.timings_ignored
def test_a_fleet_campaign_resumes_with_whichever_members_answer(ws: Workspace, fleet: inventory.Device) -> None:
    def unplug_both(member: str, measured: int) -> None:
        if measured == 2:
            raise TransportError(f"{member} unplugged")

    with pytest.raises(CampaignInterrupted, match="every member of fleet left"):
        profile_group(ws, fleet, QUICK, fault=unplug_both)
    first = ws.store.scalar("SELECT COUNT(*) FROM measurements")
    assert first == 4
    result, report = profile_group(ws, fleet, QUICK, resume=True)
    rows = _rows(ws, result.campaign_id)
    assert result.status == "done" and len(rows) == 16 and len({cid for cid, _, _ in rows}) == 16 and sum(report.rows.values()) == 12


def test_sentinel_deviations_are_against_the_group_median() -> None:
    times = {"a": {"k1": 1.0, "k2": 2.0}, "b": {"k1": 1.0, "k2": 2.0}, "c": {"k1": 1.2, "k2": 2.4, "k3": 9.0}}
    dev = sentinel_deviations(times)
    assert dev["a"] == pytest.approx(0.0) and dev["b"] == pytest.approx(0.0) and dev["c"] == pytest.approx(0.2)
    two = sentinel_deviations({"a": {"k": 1.0}, "b": {"k": 1.3}})
    assert two["a"] == pytest.approx(1.0 / 1.15 - 1) and two["b"] == pytest.approx(1.3 / 1.15 - 1)  # median of two: their mean
    assert sentinel_deviations({"a": {"k": 1.0}}) == {}


class _RecordingBuilder:
    """Stands in for the Builder in _Work's unit test: records whether anyone was timing at each build."""

    def __init__(self, work: list[_Work]) -> None:
        self.work, self.built_while_timing = work, 0

    def submit(self, request: str) -> Future[str]:
        self.built_while_timing += self.work[0]._timing > 0
        future: Future[str] = Future()
        future.set_result(request)
        return future


@pytest.mark.parametrize("overlap", [False, True])
def test_work_is_shared_once_and_builds_never_beside_timing_when_they_would_share_cores(overlap: bool) -> None:
    holder: list[_Work] = []
    builder = _RecordingBuilder(holder)
    work = _Work([f"c{i}" for i in range(40)], lambda cid: cid, builder, batch=4, overlap=overlap)  # type: ignore[arg-type]
    holder.append(work)
    taken: list[str] = []
    lock = threading.Lock()

    def member() -> None:
        while (item := work.take()) is not None:
            with lock:
                taken.append(item[0])
            work.done()

    # A third member takes a config and holds it (timing). The other two share the rest, but without overlap
    # nothing more is built while it times: they stop after the first batch. Either way they wait for it; it
    # drops, giving its config back, and one of them measures that too.
    held = work.take()
    assert held is not None
    threads = [threading.Thread(target=member, daemon=True) for _ in range(2)]
    for t in threads:
        t.start()
    threads[0].join(0.5)
    assert threads[0].is_alive() and len(taken) == (39 if overlap else 3)
    work.give_back(held)
    work.done()
    for t in threads:
        t.join(30)
    assert sorted(taken) == sorted(f"c{i}" for i in range(40))
    if not overlap:
        assert builder.built_while_timing == 0


def test_builds_are_beside_timing_on_the_device_machine_only() -> None:
    assert builds_beside(None, None)  # local workers, local device
    assert not builds_beside("10.1.2.3", None)  # local workers, a remote board
    assert builds_beside(None, {"127.0.0.1"}) and not builds_beside(None, {"10.9.9.9"})  # Dask here / elsewhere, local device
    assert builds_beside("10.9.9.9", {"10.9.9.9"}) and not builds_beside("10.9.9.8", {"10.9.9.9"})  # a worker on the board
