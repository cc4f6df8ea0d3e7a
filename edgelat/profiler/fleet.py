"""A campaign shared by the members of a device group (identical boards: ``edgelat device group add``).

Every member runs the same loop in its own thread: take the next planned config, time it, hand the row to
the main thread, which stores it with the member's name (SQLite is written from one thread). Builds come
from one shared :class:`~edgelat.profiler.builds.Builder` (local processes or a Dask cluster). A member
that drops (its connection cannot be reopened) gives its config back and the others finish the plan;
``resume=True`` continues the group's unfinished campaign with whichever members answer. A member gone sick
(``failure_streak`` kernels in a row failing on it) has its agent restarted; at twice as many it leaves the
campaign, its run of failures is forgotten and those configs go back to the others.

Before and after, every member times the same sentinel kernels (the plan's first config of each of up to
three op kinds). A member whose sentinels sit more than :data:`SENTINEL_TOLERANCE` from the group's median
(throttling, another OS image) is reported and its rows flagged; training leaves flagged rows out. With two
members there is no majority: a gap over twice the tolerance flags both.
"""

from __future__ import annotations

import dataclasses
import logging
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from edgelat.errors import CampaignInterrupted, TransportError, UsageError
from edgelat.profiler.builds import Builder, BuildRequest, BuiltKernel
from edgelat.profiler.campaign import (
    CampaignResult,
    ProfileConfig,
    Progress,
    _count_failed,
    _forget,
    _measure_one,
    _Session,
    _set_status,
    _store,
    campaign_result,
    measured_ids,
    open_campaign,
    stored_configs,
)
from edgelat.profiler.inventory import Device, get_device
from edgelat.profiler.recipes import get_recipe
from edgelat.store import utc_now
from edgelat.workspace import Workspace

__all__ = ["SENTINEL_TOLERANCE", "FleetReport", "profile_group", "sentinel_deviations"]

log = logging.getLogger(__name__)

# A member whose sentinels' median ratio to the group's median is off by more than this is flagged.
SENTINEL_TOLERANCE = 0.05
SENTINEL_KINDS = 3
# Sentinels are timed this way whatever the campaign's settings (a quick campaign's would be too noisy to judge by).
SENTINEL_REPEAT, SENTINEL_MIN_REPEAT_MS = 7, 40.0


@dataclass
class FleetReport:
    """What each member did in a group campaign."""

    rows: dict[str, int] = field(default_factory=dict)  # member -> rows it measured in this run
    dropped: dict[str, str] = field(default_factory=dict)  # member -> why it left
    # phase -> member -> deviation of its sentinels from the group's median (0.03 = 3% slower)
    deviations: dict[str, dict[str, float]] = field(default_factory=dict)
    flagged: dict[str, str] = field(default_factory=dict)  # member -> why its rows are flagged


def sentinel_deviations(times: dict[str, dict[str, float]]) -> dict[str, float]:
    """member -> the median over sentinel kernels of (its time / the members' median time) - 1.

    ``times``: member -> config id -> median ms. Only kernels every member timed count."""
    members = [m for m, t in times.items() if t]
    if len(members) < 2:
        return {}
    shared = set.intersection(*(set(times[m]) for m in members))
    if not shared:
        return {}
    group = {cid: statistics.median(times[m][cid] for m in members) for cid in shared}
    return {m: statistics.median(times[m][cid] / group[cid] for cid in shared if group[cid] > 0) - 1.0 for m in members}


class _Work:
    """The plan's remaining configs handed to members one at a time, built ahead through ``builder``.

    With ``overlap`` false (the members share this host's CPU) nothing builds while a member times: a member
    that finds nothing built waits until no one is timing, builds the next batch, then all time again."""

    def __init__(self, todo: Sequence[str], request: Callable[[str], BuildRequest], builder: Builder, batch: int, overlap: bool) -> None:
        self._todo, self._request, self._builder = deque(todo), request, builder
        self._ready: deque[tuple[str, Future[BuiltKernel]]] = deque()
        self._batch, self._overlap = batch, overlap
        self._cond = threading.Condition()
        self._timing = 0
        self._building = False

    def _submit(self, n: int) -> None:
        while self._todo and n > 0:
            cid = self._todo.popleft()
            self._ready.append((cid, self._builder.submit(self._request(cid))))
            n -= 1

    def take(self) -> tuple[str, Future[BuiltKernel]] | None:
        """The next config and its build, or None when the plan is done. The caller times it, then calls done()."""
        with self._cond:
            while True:
                if self._building:
                    self._cond.wait()
                    continue
                if self._ready:
                    break
                if not self._todo:
                    if not self._timing:
                        return None
                    self._cond.wait()  # a member still timing may drop and give its config back
                    continue
                if self._overlap:
                    self._submit(self._batch * 2)
                    continue
                self._building = True
                while self._timing:
                    self._cond.wait()
                self._submit(self._batch)
                for _, future in self._ready:  # built before anyone times again
                    future.exception()
                self._building = False
                self._cond.notify_all()
            item = self._ready.popleft()
            if self._overlap and len(self._ready) < self._batch:
                self._submit(self._batch)
            self._timing += 1
            return item

    def done(self) -> None:
        with self._cond:
            self._timing -= 1
            self._cond.notify_all()

    def give_back(self, item: tuple[str, Future[BuiltKernel]]) -> None:
        """A config a dropped member took and did not measure: the next member to ask gets it."""
        with self._cond:
            self._ready.appendleft(item)
            self._cond.notify_all()


def profile_group(
    ws: Workspace,
    group: Device,
    cfg: ProfileConfig,
    *,
    resume: bool = False,
    on_update: Callable[[Progress], None] | None = None,
    fault: Callable[[str, int], None] | None = None,
) -> tuple[CampaignResult, FleetReport]:
    """Run (or resume) one campaign on ``group``, shared among its members.

    ``fault`` is a test hook called in a member's thread with its name and the rows it measured so far,
    before each kernel."""
    recipe = get_recipe(cfg.recipe)
    if recipe.tunes:
        raise UsageError(
            f"the {cfg.recipe} recipe tunes each kernel through one device's timings: profile it on one member of {group.name}"
        )
    members = [get_device(ws, m) for m in group.members]
    if not members:
        raise UsageError(f"group {group.name} has no members left: add one with `edgelat device group add`")
    campaign_id, plan_ids, target, threads, lease = open_campaign(ws, group, cfg, resume)
    try:
        done_ids = measured_ids(ws, campaign_id)
        configs = stored_configs(ws, plan_ids)
        todo = [i for i in plan_ids if i not in done_ids]
        sentinels = _sentinels(plan_ids, configs)
        progress = Progress(total=len(plan_ids), done=len(done_ids), failed=_count_failed(ws, campaign_id))
        report = FleetReport(rows={m.name: 0 for m in members})
        preset = group.preset_info

        def request(cid: str) -> BuildRequest:
            op, params = configs[cid]
            return BuildRequest(op, params, target, preset.cross_compiler, preset.arch, cfg.recipe)

        results: queue.Queue[tuple[str, str, Any]] = queue.Queue()
        stop = threading.Event()
        deadline = time.time() + cfg.minutes * 60 if cfg.minutes is not None else None
        status = "done"
        with Builder(ws.cache_dir, cfg.build_workers, cfg.scheduler, preset.cross_compiler) as builder:
            overlap = not any(builder.builds_beside(m) for m in members) if cfg.overlap_builds is None else cfg.overlap_builds
            work = _Work(todo, request, builder, cfg.batch, overlap)
            sentinel_builds = {cid: builder.submit(request(cid)) for cid in sentinels}
            threads_ = [
                threading.Thread(
                    target=_member_loop,
                    args=(ws, m, threads, cfg, work, sentinel_builds, results, stop, fault),
                    name=f"member-{m.name}",
                    daemon=True,
                )
                for m in members
            ]
            for t in threads_:
                t.start()
            running = len(threads_)
            try:
                while running:
                    if deadline is not None and time.time() > deadline and not stop.is_set():
                        status = "stopped"
                        stop.set()
                    try:
                        kind, member, payload = results.get(timeout=0.5)
                    except queue.Empty:
                        continue
                    if kind == "row":
                        cid, built, values, agent_version = payload
                        _store(
                            ws, campaign_id, group.name, cid, configs[cid][0], recipe, threads, target, agent_version, built, values, member
                        )
                        report.rows[member] += 1
                        progress.done += 1
                        progress.failed += values["status"] != "ok"
                        progress.last_op = f"{configs[cid][0]} on {member}"
                        if on_update is not None:
                            on_update(progress)
                    elif kind == "sentinels":
                        phase, times = payload
                        _store_sentinels(ws, campaign_id, member, phase, times)
                    elif kind == "forget":  # a sick member's run of failures: measured again by the others
                        _forget(ws, campaign_id, payload)
                        report.rows[member] -= len(payload)
                        progress.done -= len(payload)
                        progress.failed -= len(payload)
                    elif kind == "dropped":
                        report.dropped[member] = payload
                        log.warning("%s left the campaign: %s", member, payload)
                    elif kind == "exit":
                        running -= 1
            except KeyboardInterrupt:
                stop.set()
                _set_status(ws, campaign_id, "interrupted")
                raise
        measured = len(measured_ids(ws, campaign_id))
        if status == "done" and measured < len(plan_ids):
            _set_status(ws, campaign_id, "interrupted")
            lost = ", ".join(f"{m} ({why})" for m, why in report.dropped.items())
            who = "every member" if len(report.dropped) == len(members) else "members"
            raise CampaignInterrupted(campaign_id, f"{who} of {group.name} left before the plan was done: {lost}")
        _judge_sentinels(ws, campaign_id, report)
        _set_status(ws, campaign_id, status)
        return campaign_result(ws, campaign_id, group.name, cfg.recipe, status, len(plan_ids), progress.started), report
    finally:
        lease.release()


def _sentinels(plan_ids: Sequence[str], configs: dict[str, tuple[str, dict[str, Any]]]) -> list[str]:
    """The plan's first config of each of its first SENTINEL_KINDS op kinds (the same on resume)."""
    chosen: dict[str, str] = {}
    for cid in plan_ids:
        op = configs[cid][0]
        if op not in chosen and len(chosen) < SENTINEL_KINDS:
            chosen[op] = cid
    return list(chosen.values())


def _member_loop(
    ws: Workspace,
    member: Device,
    threads: int,
    cfg: ProfileConfig,
    work: _Work,
    sentinel_builds: dict[str, Future[BuiltKernel]],
    results: queue.Queue[tuple[str, str, Any]],
    stop: threading.Event,
    fault: Callable[[str, int], None] | None,
) -> None:
    """One member's share of the campaign, in its own thread; everything it learns goes to ``results``."""
    session = _Session(ws, member, threads)
    measured = 0
    streak: list[tuple[str, Future[BuiltKernel]]] = []  # what failed on this member since its last success
    try:
        session.open()
        agent_version = session.agent.hello.get("agent_version") if session.agent else None
        results.put(("sentinels", member.name, ("before", _time_sentinels(session, sentinel_builds, cfg))))
        while not stop.is_set():
            item = work.take()
            if item is None:
                break
            cid, future = item
            try:
                if fault is not None:
                    fault(member.name, measured)
                built = future.result()
                values = _measure_one(session, built, cfg)
                results.put(("row", member.name, (cid, built, values, agent_version)))
                measured += 1
                streak = [] if values["status"] in ("ok", "build_failed") else [*streak, item]  # (a build's failure is not the member's)
                if len(streak) >= 2 * cfg.failure_streak:  # sick: its run of failures goes back to the others
                    results.put(("forget", member.name, [c for c, _ in streak]))  # (before another member stores them again)
                    for taken in streak:
                        work.give_back(taken)
            except TransportError:
                work.give_back(item)
                raise
            finally:
                work.done()  # (after a give-back: the others wait for it, not finding the plan done)
            if len(streak) == cfg.failure_streak:
                session.restart_agent()
            elif len(streak) >= 2 * cfg.failure_streak:
                last = str(values.get("error") or values["status"])[:300]
                results.put(("dropped", member.name, f"{len(streak)} kernels in a row failed on it, the last with: {last}"))
                return
        if not stop.is_set():
            results.put(("sentinels", member.name, ("after", _time_sentinels(session, sentinel_builds, cfg))))
    except TransportError as exc:
        results.put(("dropped", member.name, str(exc)))
    except Exception as exc:  # noqa: BLE001 - this member's failure, told to the main thread; the others go on
        log.exception("%s failed", member.name)
        results.put(("dropped", member.name, f"{type(exc).__name__}: {exc}"))
    finally:
        session.close()
        results.put(("exit", member.name, None))


def _time_sentinels(session: _Session, builds: dict[str, Future[BuiltKernel]], cfg: ProfileConfig) -> dict[str, float]:
    cfg = dataclasses.replace(cfg, repeat=max(cfg.repeat, SENTINEL_REPEAT), min_repeat_ms=max(cfg.min_repeat_ms, SENTINEL_MIN_REPEAT_MS))
    times = {}
    for cid, future in builds.items():
        built = future.result()
        if built.error is None:
            values = _measure_one(session, built, cfg)
            if values["status"] == "ok":
                times[cid] = float(values["median_ms"])
    return times


def _store_sentinels(ws: Workspace, campaign_id: int, member: str, phase: str, times: dict[str, float]) -> None:
    with ws.store.transaction():
        for cid, ms in times.items():
            row = {"campaign_id": campaign_id, "member": member, "phase": phase, "config_id": cid, "median_ms": ms, "measured_at": utc_now()}
            ws.store.upsert("sentinels", row, ["campaign_id", "member", "phase", "config_id"])


def _judge_sentinels(ws: Workspace, campaign_id: int, report: FleetReport) -> None:
    """Compare every member's sentinels with the group's, per phase; flag the rows of members off by more than
    the tolerance (all their rows in this campaign: when the drift began is not known)."""
    rows = ws.store.rows("SELECT member, phase, config_id, median_ms FROM sentinels WHERE campaign_id = :id", {"id": campaign_id})
    for phase in ("before", "after"):
        times: dict[str, dict[str, float]] = {}
        for r in rows:
            if r["phase"] == phase and r["median_ms"]:
                times.setdefault(r["member"], {})[r["config_id"]] = float(r["median_ms"])
        report.deviations[phase] = deviations = sentinel_deviations(times)
        for member, dev in deviations.items():
            if abs(dev) > SENTINEL_TOLERANCE and member not in report.flagged:
                report.flagged[member] = f"sentinels {dev:+.1%} from the group's median ({phase})"
    with ws.store.transaction():
        ws.store.execute("UPDATE measurements SET flagged = NULL WHERE campaign_id = :id", {"id": campaign_id})
        for member, why in report.flagged.items():
            ws.store.execute(
                "UPDATE measurements SET flagged = :why WHERE campaign_id = :id AND member = :member", {"why": why, "id": campaign_id, "member": member}
            )
