"""Profiling campaigns: plan kernel configs, build them, time them on the device, store every result.

A campaign is a plan (an ordered list of kernel configs, stored before anything runs) and
one measurement row per planned config, committed as it arrives. ``resume=True`` continues
the device's last unfinished campaign from the first config without a row, so a stop at any
point (Ctrl-C, SSH dropped, agent killed, device rebooted) loses nothing and measures
nothing twice. A build that fails, a kernel that errors, crashes or hangs the agent is a row
with its error; the agent is restarted and the campaign goes on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import statistics
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import sqlalchemy as sa

import edgelat
from edgelat.errors import (
    AgentCrashedError,
    AgentReplyError,
    AgentTimeoutError,
    CampaignInterrupted,
    StoreLostError,
    TransportError,
    UsageError,
)
from edgelat.ops import config_id, get_op, list_ops
from edgelat.profiler.agent_client import AgentSession
from edgelat.profiler.builds import Builder, BuildRequest, BuiltKernel, build_kernel
from edgelat.profiler.inventory import Device, agent_env, connect, get_device
from edgelat.profiler.lease import CampaignLease, take_lease
from edgelat.profiler.recipes import Recipe, get_recipe
from edgelat.profiler.tuning import KernelTuner, Representatives
from edgelat.store import utc_now
from edgelat.workspace import Workspace, measured_by

__all__ = ["CampaignInterrupted", "CampaignResult", "ProfileConfig", "Progress", "plan_configs", "profile", "untimed_configs"]


log = logging.getLogger(__name__)

DEFAULT_SAMPLES = 100


@dataclass(frozen=True)
class ProfileConfig:
    """What to profile and how to time it."""

    # Op kinds to profile; empty means every registered kind.
    ops: tuple[str, ...] = ()
    # Configurations per op kind; None is the default plan, DEFAULT_SAMPLES per kind times the kind's
    # ``sample_weight`` (conv2d 4x, dwconv2d 3x, dense 2x). With ``minutes`` set, at least 500.
    samples: int | None = None
    # Whether the weights apply, and epilogue twins are added (plan_configs); None: only to the default plan (an
    # explicit ``samples`` is that many of each kind).
    weighted: bool | None = None
    # Exact (op, config) pairs to profile instead of sampled ones, e.g. the kernels of a network.
    configs: tuple[tuple[str, dict[str, Any]], ...] = ()
    # Wall-clock budget; None means until the plan is done.
    minutes: float | None = None
    # Threads the kernels run with; None means the device's default.
    threads: int | None = None
    # Compile recipe, a name in edgelat.profiler.recipes.RECIPES: "default" (stock TVM, untuned) or "tuned" (MetaSchedule).
    recipe: str = "default"
    # MetaSchedule trials per kernel for the tuned recipe.
    trials: int = 16
    # Tuned recipe: trials of a representative (a kernel with no representative of its anchor within
    # ``rep_radius``, see edgelat.profiler.tuning.Representatives); the others take the nearest schedules and
    # search ``trials`` only where those fall short. 0: no representatives, every kernel searched alike.
    rep_trials: int = Representatives.trials
    rep_radius: float = Representatives.radius
    seed: int = 0
    # Timed repeats per kernel; each lasts at least ``min_repeat_ms`` (TVM's number is chosen so).
    repeat: int = 7
    min_repeat_ms: float = 40.0
    # Pause before each kernel, so one kernel's heat does not slow the next.
    cooldown_ms: float = 0.0
    # A result more spread than this is measured again, up to ``attempts`` times, and flagged unstable if it stays so:
    # its coefficient of variation, or for flushed timings the shift between its halves' medians (see _spread).
    cv_threshold: float = 0.1
    attempts: int = 3
    # Seconds a kernel may run before the agent is presumed hung, killed and restarted.
    kernel_timeout_s: float = 120.0
    # Libraries shipped to the device per batch.
    batch: int = 8
    build_workers: int | None = None
    # A Dask scheduler's address: builds run on its workers instead of local processes.
    scheduler: str | None = None
    # Build the next batches while the device times this one. None: yes, unless builds run on the device's
    # machine (local workers beside `local` or a loopback device, or a Dask worker on the device), where they
    # take the cores the timed kernel runs on (bench/measurement_repeatability.py: kernels timed beside builds
    # ran a median 1.20x, up to 2.05x, their time alone).
    overlap_builds: bool | None = None
    # Kernels failing in a row on the device (any failure of a tuned build, whose candidates run there) before
    # the agent is restarted; at twice as many the campaign stops and forgets that run of failures, so a resume
    # measures those kernels again instead of keeping what a sick device or agent said of them.
    failure_streak: int = 25
    # How the kernels are timed (an agent cache state): None, the recipe's way (:attr:`Recipe.caches`), or its far way
    # (:attr:`Recipe.far_caches`: the pass `edgelat profile` runs after the recipe's). Kept with the campaign: a
    # resume times alike.
    caches: str | None = None


@dataclass
class Progress:
    """What a progress display needs; the campaign calls ``on_update`` after every kernel."""

    total: int = 0
    done: int = 0
    failed: int = 0
    started: float = field(default_factory=time.time)
    last_op: str = ""


@dataclass
class CampaignResult:
    campaign_id: int
    device: str
    recipe: str
    status: str
    planned: int
    measured: int
    failed: int
    elapsed_s: float


def plan_configs(
    ops: Sequence[str],
    samples: int,
    seed: int,
    seeds: dict[str, list[dict[str, Any]]] | None = None,
    *,
    weighted: bool = True,
    twins: bool = False,
) -> list[tuple[str, dict[str, Any]]]:
    """A reproducible plan: ``samples`` distinct configs per op (times its ``sample_weight`` when
    ``weighted``), interleaved across ops; with ``twins``, plus the epilogue twins of :func:`epilogue_twins`."""
    per_op: list[list[tuple[str, dict[str, Any]]]] = []
    for index, op in enumerate(ops):
        spec = get_op(op)
        wanted = max(1, round(samples * spec.sample_weight)) if weighted else samples
        rng = np.random.default_rng([seed, index, 7919])
        chosen: dict[str, dict[str, Any]] = {}
        for _ in range(wanted * 20):  # bounded: a tiny config space may not hold `wanted` distinct configs
            cfg = spec.sample(rng, (seeds or {}).get(op, []))
            chosen.setdefault(config_id(op, cfg), cfg)
            if len(chosen) >= wanted:
                break
        drawn = list(chosen.values())
        if twins:
            drawn = epilogue_twins(op, drawn, np.random.default_rng([seed, index, 104729]))
        per_op.append([(op, cfg) for cfg in drawn])
    # Interleaved in proportion, so a campaign stopped early holds every kind in its share.
    order = sorted((i / len(p), k, i) for k, p in enumerate(per_op) for i in range(len(p)))
    return [per_op[k][i] for _, k, i in order]


def epilogue_twins(op: str, drawn: Sequence[dict[str, Any]], rng: np.random.Generator) -> list[dict[str, Any]]:
    """``drawn`` with twins: for each of the kind's ``epilogues`` that ``drawn`` holds fewer times than a
    uniform draw over them would (``len(drawn) / len(epilogues)``, rounded up), copies of drawn configs with
    that epilogue, picked at random, each placed right after its original.

    A twin differs from its original only in what the kernel does after the anchor, so the pair teaches the
    model that epilogue's cost at that shape; and a tuned twin is built from its original's records (kept by anchor
    block), so it costs a fraction of a drawn kernel."""
    families = get_op(op).epilogues
    if not families or not drawn:
        return list(drawn)
    floor = -(-len(drawn) // len(families))
    seen = {config_id(op, c) for c in drawn}
    after: dict[int, list[dict[str, Any]]] = {}
    for family in families:
        others = [i for i, c in enumerate(drawn) if c["epilogue"] != family]
        missing = floor - (len(drawn) - len(others))
        for i in sorted(rng.choice(others, size=min(max(missing, 0), len(others)), replace=False).tolist()):
            twin = {**drawn[i], "epilogue": family}
            if (key := config_id(op, twin)) not in seen:
                seen.add(key)
                after.setdefault(i, []).append(twin)
    return [c for i, cfg in enumerate(drawn) for c in (cfg, *after.get(i, []))]


def _stats(seconds: list[float]) -> dict[str, float]:
    ms = [s * 1000.0 for s in seconds]
    mean = statistics.fmean(ms)
    std = statistics.pstdev(ms) if len(ms) > 1 else 0.0
    return {
        "median_ms": statistics.median(ms),
        "mean_ms": mean,
        "std_ms": std,
        "min_ms": min(ms),
        "max_ms": max(ms),
        "cv": std / mean if mean > 0 else 0.0,
    }


def _seed_configs() -> dict[str, list[dict[str, Any]]]:
    from edgelat.datasets.shapes import real_network_configs

    return real_network_configs()


class _Session:
    """The agent on the device, reconnected when the connection drops."""

    def __init__(self, ws: Workspace, device: Device, threads: int, reconnects: int = 3) -> None:
        self.ws, self.device, self.threads, self.reconnects = ws, device, threads, reconnects
        self.transport: Any = None
        self.agent: AgentSession | None = None
        self.shipped: dict[str, str] = {}

    def open(self) -> AgentSession:
        last: Exception | None = None
        for attempt in range(self.reconnects):
            try:
                self.close()
                self.transport = connect(self.ws, self.device)
                self.agent = AgentSession(self.transport, python=self.device.python, env=agent_env(self.threads)).start()
                self.shipped = {}
                return self.agent
            except (TransportError, AgentCrashedError, AgentTimeoutError) as exc:
                last = exc
                log.info("%s: connection attempt %d of %d failed: %s", self.device.name, attempt + 1, self.reconnects, exc)
                time.sleep(min(2.0 * (attempt + 1), 5.0))
        raise TransportError(f"cannot reach {self.device.name}: {last}")

    def restart_agent(self) -> None:
        assert self.agent is not None
        log.info("%s: restarting the agent", self.device.name)
        try:
            self.agent.restart()
        except (TransportError, AgentCrashedError, AgentTimeoutError) as exc:
            log.info("%s: the agent did not restart (%s); reconnecting", self.device.name, exc)
            self.open()

    def ship(self, built: Sequence[BuiltKernel]) -> None:
        assert self.agent is not None and self.transport is not None
        for b in built:
            if b.lib and b.key not in self.shipped:
                remote = self.agent.remote_path(f"{b.key[:24]}.so")
                self.transport.put(Path(b.lib), remote)
                self.shipped[b.key] = remote

    def measure_artifact(self, path: str, args: list[list[Any]], caches: str = "warm") -> list[float]:
        """Time a MetaSchedule candidate on the device (``caches``: as the agent's bench takes it); a crash or
        hang restarts the agent."""
        assert self.agent is not None
        try:
            return self.agent.time_library(Path(path), args, caches=caches)
        except (AgentCrashedError, AgentTimeoutError):
            self.restart_agent()
            raise

    def close(self) -> None:
        if self.agent is not None:
            self.agent.close()
            self.agent = None
        if self.transport is not None:
            self.transport.close()
            self.transport = None


def _find_resumable(ws: Workspace, device: str, recipe: str) -> Any:
    return ws.store.first(
        "SELECT * FROM campaigns WHERE device = :device AND recipe = :recipe AND status != 'done' ORDER BY id DESC LIMIT 1",
        {"device": device, "recipe": recipe},
    )


def untimed_configs(
    ws: Workspace, device: str, recipe: str, ops: Sequence[str] = (), caches: str | None = None
) -> tuple[tuple[str, dict[str, Any]], ...]:
    """The kernels ``device`` measured with ``recipe`` but never ``caches`` (default: the way the recipe times
    them now, :attr:`Recipe.caches`): what ``profile --retime`` times again (tuned ones from their tuning
    records: nothing is tuned again)."""
    rows = ws.store.rows(
        """SELECT DISTINCT k.op, k.params FROM measurements m JOIN kernel_configs k USING (config_id)
           WHERE m.device = :device AND m.recipe = :recipe AND m.status = 'ok' AND m.caches != :caches
           AND m.config_id NOT IN (SELECT config_id FROM measurements WHERE device = :device AND recipe = :recipe AND caches = :caches AND status = 'ok')
           ORDER BY k.op, k.params""",  # (PostgreSQL orders a DISTINCT only by what it selects)
        {"device": device, "recipe": recipe, "caches": caches or get_recipe(recipe).caches},
    )
    return tuple((r["op"], json.loads(r["params"])) for r in rows if not ops or r["op"] in ops)


def campaign_plan(cfg: ProfileConfig) -> tuple[list[str], list[tuple[str, dict[str, Any]]]]:
    """The op kinds and (op, config) pairs a campaign with ``cfg`` measures."""
    if cfg.configs:
        plan = list({config_id(op, c): (op, c) for op, c in cfg.configs}.values())
        ops = sorted({op for op, _ in plan})
    else:
        ops = list(cfg.ops) or [op for op in list_ops() if not getattr(get_op(op), "composite", False)]
        samples = DEFAULT_SAMPLES if cfg.samples is None else cfg.samples
        samples = samples if cfg.minutes is None else max(samples, 500)
        weighted = cfg.samples is None if cfg.weighted is None else cfg.weighted
        plan = plan_configs(ops, samples, cfg.seed, _seed_configs(), weighted=weighted, twins=weighted)
    for op in ops:
        get_op(op)  # an unknown kind is refused with the known ones
    return ops, plan


def _create_campaign(ws: Workspace, device: Device, cfg: ProfileConfig, target: dict[str, Any], threads: int) -> tuple[int, list[str]]:
    import tvm

    ops, plan = campaign_plan(cfg)
    ids = [config_id(op, c) for op, c in plan]
    with ws.store.transaction():
        ws.store.insert_new(
            "kernel_configs", [{"config_id": i, "op": op, "params": json.dumps(c)} for i, (op, c) in zip(ids, plan, strict=True)], ["config_id"]
        )
        row = ws.store.insert(
            "campaigns",
            {
                "uid": uuid.uuid4().hex,
                "device": device.name,
                "recipe": cfg.recipe,
                "ops": json.dumps(ops),
                "plan": json.dumps(ids),
                "target": json.dumps(target),
                "threads": threads,
                "tvm_version": tvm.__version__,
                "seed": cfg.seed,
                "caches": cfg.caches if cfg.caches != get_recipe(cfg.recipe).caches else None,
            },
        )
    return int(row["id"]), ids


def open_campaign(
    ws: Workspace, device: Device, cfg: ProfileConfig, resume: bool
) -> tuple[int, list[str], dict[str, Any], int, CampaignLease]:
    """The campaign to run on ``device`` (a device or a group), marked running: its id, plan, target and
    threads, and its lease (:mod:`edgelat.profiler.lease`; the caller releases it when the run ends). With
    ``resume``, the last unfinished one with ``cfg.recipe`` (a UsageError if there is none, or if another
    process runs it), as it was planned; otherwise a new one planned from ``cfg``."""
    target = device.target(cfg.recipe)
    threads = cfg.threads or device.measure_threads
    row = _find_resumable(ws, device.name, cfg.recipe) if resume else None
    if resume and row is None:
        raise UsageError(f"nothing to resume: {device.name} has no unfinished {cfg.recipe} campaign")
    if row is not None:
        campaign_id, plan_ids, threads = int(row["id"]), json.loads(row["plan"]), int(row["threads"])
        target = json.loads(row["target"])
    else:
        campaign_id, plan_ids = _create_campaign(ws, device, cfg, target, threads)
    lease = take_lease(ws, campaign_id)
    _set_status(ws, campaign_id, "running")
    return campaign_id, plan_ids, target, threads, lease


def stored_configs(ws: Workspace, ids: Sequence[str]) -> dict[str, tuple[str, dict[str, Any]]]:
    """The kernel configs with these ids: id -> (op, params)."""
    ids = list(ids)
    found: dict[str, tuple[str, dict[str, Any]]] = {}
    for start in range(0, len(ids), 500):  # SQLite caps a statement's parameters
        stmt = sa.text("SELECT * FROM kernel_configs WHERE config_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
        for r in ws.store.rows(stmt, {"ids": ids[start : start + 500]}):
            found[r["config_id"]] = (r["op"], json.loads(r["params"]))
    return found


def profile(
    ws: Workspace,
    device_name: str,
    cfg: ProfileConfig = ProfileConfig(),
    *,
    resume: bool = False,
    on_update: Callable[[Progress], None] | None = None,
    fault: Callable[[int], None] | None = None,
) -> CampaignResult:
    """Run (or resume) a profiling campaign on ``device_name``; returns its tally.

    ``fault`` is a test hook called with the number of kernels measured so far, before each
    kernel; it may raise to simulate a crash of the host process.

    Example:
        >>> profile(open_workspace(), "local", ProfileConfig(ops=("conv2d",), samples=20))  # doctest: +SKIP
    """
    recipe = get_recipe(cfg.recipe)
    recipe.check(cfg.trials)
    if cfg.caches is not None and cfg.caches not in (recipe.caches, recipe.far_caches):
        raise UsageError(f"the {recipe.name} recipe times kernels {recipe.caches}" + (f" or {recipe.far_caches}" if recipe.far_caches else "") + f", not {cfg.caches}")
    if cfg.samples is not None and cfg.samples < 1:
        raise UsageError("--samples must be at least 1")
    if cfg.rep_trials < 0 or cfg.rep_radius < 0:
        raise UsageError("--rep-trials and --rep-radius cannot be negative")
    device = get_device(ws, device_name)
    if device.is_group:  # (fleet builds on this module: it cannot be called from here)
        raise UsageError(f"{device.name} is a device group: its campaigns run through edgelat.profiler.fleet.profile_group")
    preset = device.preset_info
    campaign_id, plan_ids, target, threads, lease = open_campaign(ws, device, cfg, resume)
    # A resumed campaign times its kernels as it began to.
    row = ws.store.first("SELECT caches FROM campaigns WHERE id = :id", {"id": campaign_id})
    cfg = dataclasses.replace(cfg, caches=row["caches"] if row is not None else cfg.caches)
    done_ids = measured_ids(ws, campaign_id)
    todo = [i for i in plan_ids if i not in done_ids]
    configs = stored_configs(ws, todo)
    progress = Progress(total=len(plan_ids), done=len(done_ids), failed=_count_failed(ws, campaign_id))
    deadline = time.time() + cfg.minutes * 60 if cfg.minutes is not None else None
    agent_version = None
    session = _Session(ws, device, threads)
    status = "done"
    streak: list[str] = []  # the configs of the failures since the last success
    try:
        session.open()
        agent_version = session.agent.hello.get("agent_version") if session.agent else None
        with Builder(ws.cache_dir, cfg.build_workers, cfg.scheduler, preset.cross_compiler) as builder:
            if recipe.tunes:
                reps = Representatives(cfg.rep_trials, cfg.rep_radius) if cfg.rep_trials else None
                tuner = KernelTuner(
                    ws.tuning_dir(device.name),
                    target,
                    threads,
                    preset.cross_compiler,
                    lambda p, a: session.measure_artifact(p, a, recipe.candidate_caches),
                    builder=builder,
                    representatives=reps,
                )
                chunks = _tuned_builds(todo, tuner, ws.cache_dir, configs, target, preset.cross_compiler, preset.arch, cfg)
            else:
                overlap = not builder.builds_beside(device) if cfg.overlap_builds is None else cfg.overlap_builds
                chunks = _batches(todo, builder, configs, target, preset.cross_compiler, preset.arch, cfg, overlap=overlap)
            for chunk in chunks:
                session.ship([b for _, b in chunk if b.error is None])
                for cid, built in chunk:
                    if fault is not None:
                        fault(progress.done)
                    if deadline is not None and time.time() > deadline:
                        status = "stopped"
                        break
                    op = configs[cid][0]
                    row_values = _measure_one(session, built, cfg)
                    _store(ws, campaign_id, device.name, cid, op, recipe, threads, target, agent_version, built, row_values, caches=cfg.caches)
                    on_device = row_values["status"] != "build_failed" or recipe.tunes
                    streak = [] if row_values["status"] == "ok" or not on_device else [*streak, cid]
                    if len(streak) == cfg.failure_streak:
                        session.restart_agent()
                    elif len(streak) >= 2 * cfg.failure_streak:
                        _forget(ws, campaign_id, streak)
                        _set_status(ws, campaign_id, "interrupted")
                        last = row_values.get("error") or row_values["status"]
                        raise CampaignInterrupted(
                            campaign_id, f"{len(streak)} kernels in a row failed on {device.name}, the last with: {last[:300]}"
                        )
                    progress.done += 1
                    progress.failed += row_values["status"] != "ok"
                    progress.last_op = op
                    if on_update is not None:
                        on_update(progress)
                if status == "stopped":
                    break
    except KeyboardInterrupt:
        _set_status(ws, campaign_id, "interrupted")
        raise
    except TransportError as exc:
        _set_status(ws, campaign_id, "interrupted")
        raise CampaignInterrupted(campaign_id, f"lost the connection to {device.name} ({exc})") from exc
    except StoreLostError as exc:  # (its status cannot be written: a resume finds it unfinished all the same)
        raise CampaignInterrupted(campaign_id, str(exc)) from None
    finally:
        session.close()
        lease.release()
    _set_status(ws, campaign_id, status)
    return campaign_result(ws, campaign_id, device.name, cfg.recipe, status, len(plan_ids), progress.started)


def campaign_result(ws: Workspace, campaign_id: int, device: str, recipe: str, status: str, planned: int, started: float) -> CampaignResult:
    """The tally of a campaign run that started at ``started`` (seconds since the epoch), as stored."""
    measured = len(measured_ids(ws, campaign_id))
    return CampaignResult(campaign_id, device, recipe, status, planned, measured, _count_failed(ws, campaign_id), time.time() - started)


def measured_ids(ws: Workspace, campaign_id: int) -> set[str]:
    """The configs campaign ``campaign_id`` has a row for."""
    return {r["config_id"] for r in ws.store.rows("SELECT config_id FROM measurements WHERE campaign_id = :id", {"id": campaign_id})}


def _forget(ws: Workspace, campaign_id: int, config_ids: Sequence[str]) -> None:
    stmt = sa.text("DELETE FROM measurements WHERE campaign_id = :id AND config_id IN :ids").bindparams(sa.bindparam("ids", expanding=True))
    for start in range(0, len(config_ids), 500):
        ws.store.execute(stmt, {"id": campaign_id, "ids": list(config_ids[start : start + 500])})


def _count_failed(ws: Workspace, campaign_id: int) -> int:
    return int(ws.store.scalar("SELECT COUNT(*) FROM measurements WHERE campaign_id = :id AND status != 'ok'", {"id": campaign_id}))


def _set_status(ws: Workspace, campaign_id: int, status: str) -> None:
    ws.store.execute("UPDATE campaigns SET status = :status, updated_at = :now WHERE id = :id", {"status": status, "now": utc_now(), "id": campaign_id})


def _batches(
    todo: list[str],
    builder: Builder,
    configs: dict[str, tuple[str, dict[str, Any]]],
    target: dict[str, Any],
    cc: str | None,
    arch: str,
    cfg: ProfileConfig,
    *,
    overlap: bool = True,
) -> Iterator[list[tuple[str, BuiltKernel]]]:
    """Builds in plan order, a batch at a time; with ``overlap``, the next batch builds while this one is timed."""
    pending: list[tuple[str, Future[BuiltKernel]]] = []
    queue = list(todo)
    ahead = cfg.batch * 2 if overlap else cfg.batch
    while queue or pending:
        while queue and len(pending) < ahead:
            cid = queue.pop(0)
            op, params = configs[cid]
            pending.append((cid, builder.submit(BuildRequest(op, params, target, cc, arch, cfg.recipe))))
        batch, pending = pending[: cfg.batch], pending[cfg.batch :]
        yield [(cid, fut.result()) for cid, fut in batch]


def _tuned_builds(
    todo: list[str],
    tuner: KernelTuner,
    cache_dir: Path,
    configs: dict[str, tuple[str, dict[str, Any]]],
    target: dict[str, Any],
    cc: str | None,
    arch: str,
    cfg: ProfileConfig,
) -> Iterator[list[tuple[str, BuiltKernel]]]:
    """Tuned builds, one at a time: their candidates need the device between builds."""
    try:
        for cid in todo:
            op, params = configs[cid]
            yield [(cid, build_kernel(BuildRequest(op, params, target, cc, arch, cfg.recipe, cfg.trials), str(cache_dir), tuner))]
    finally:
        tuner.close()


def _measure_one(session: _Session, built: BuiltKernel, cfg: ProfileConfig) -> dict[str, Any]:
    if built.error is not None:
        return {"status": "build_failed", "error": built.error}
    best: dict[str, Any] | None = None
    caches = cfg.caches or get_recipe(cfg.recipe).caches
    flushed = caches != "warm"  # one call per repeat
    for attempt in range(1, cfg.attempts + 1):
        assert session.agent is not None
        session.ship([built])  # no-op unless a reconnect started a fresh directory
        args = {
            "lib": session.shipped[built.key],
            "kernels": built.kernels,
            "repeat": cfg.repeat,
            "min_repeat_ms": cfg.min_repeat_ms,
            "caches": caches,
            "cooldown_ms": cfg.cooldown_ms,
        }
        try:
            reply = session.agent.request("bench", args, timeout=cfg.kernel_timeout_s)
        except AgentReplyError as exc:
            return {"status": "failed", "error": f"{exc.kind}: {exc.remote_message}", "attempts": attempt}
        except AgentTimeoutError:
            session.restart_agent()
            return {"status": "timeout", "error": f"no result in {cfg.kernel_timeout_s} s; agent restarted", "attempts": attempt}
        except AgentCrashedError as exc:
            session.restart_agent()  # raises TransportError if the device is gone, which stops the campaign
            return {"status": "crashed", "error": str(exc)[-2000:], "attempts": attempt}
        # A multi-kernel op (squeeze-excite) takes the per-repeat sum of its kernels.
        seconds = [sum(vals) for vals in zip(*(k["seconds"] for k in reply["kernels"]), strict=True)]
        result = {
            **_stats(seconds),
            "status": "ok",
            "repeats": len(seconds),
            "number": min(k["number"] for k in reply["kernels"]),
            "attempts": attempt,
            "state_before": json.dumps(reply.get("state_before")),
            "state_after": json.dumps(reply.get("state_after")),
        }
        result["spread"] = _spread(seconds, result["cv"], flushed=flushed)
        if best is None or result["spread"] < best["spread"]:
            best = result
        if result["spread"] <= cfg.cv_threshold:
            break
    assert best is not None
    best["unstable"] = int(best.pop("spread") > cfg.cv_threshold)
    best["attempts"] = attempt
    return best


def _spread(seconds: Sequence[float], cv: float, *, flushed: bool) -> float:
    """How disturbed a measurement looks: its coefficient of variation, for warm repeats (each the mean of many
    calls, so what spreads them is other load). Flushed (or llc) repeats are single calls, spread by nature (where in the
    memory system each line comes from); there, load shows as the first half's median moving from the second's."""
    if not flushed or len(seconds) < 4:
        return cv
    half = len(seconds) // 2
    first, second = statistics.median(seconds[:half]), statistics.median(seconds[half:])
    return abs(first - second) / max(statistics.median(seconds), 1e-12)


_COLUMNS = (
    "median_ms",
    "mean_ms",
    "std_ms",
    "min_ms",
    "max_ms",
    "repeats",
    "number",
    "cv",
    "unstable",
    "attempts",
    "state_before",
    "state_after",
    "error",
)


def _store(
    ws: Workspace,
    campaign_id: int,
    device: str,
    cid: str,
    op: str,
    recipe: Recipe,
    threads: int,
    target: dict[str, Any],
    agent_version: str | None,
    built: BuiltKernel,
    values: dict[str, Any],
    member: str | None = None,
    caches: str | None = None,
) -> None:
    """One measurement row; ``member``: the group member that measured it (a single device is its own); ``caches``:
    how it was timed, if not the recipe's way."""
    import tvm

    cols = [
        "campaign_id",
        "device",
        "config_id",
        "op",
        "recipe",
        "status",
        "threads",
        "target",
        "caches",
        "tvm_version",
        "agent_version",
        "build_s",
        "tune_s",
        "member",
        "measured_by",
        "edgelat_version",
        *_COLUMNS,
    ]
    row = [
        campaign_id,
        device,
        cid,
        op,
        recipe.name,
        values["status"],
        threads,
        json.dumps(target),
        caches or recipe.caches,
        tvm.__version__,
        agent_version,
        built.build_s,
        built.tune_s or None,
        member or device,
        measured_by(),
        edgelat.__version__,
    ]
    row += [values.get(c) for c in _COLUMNS]
    stored = {**dict(zip(cols, row, strict=True)), "measured_at": utc_now()}
    # A kernel that failed has no timing and so no stability verdict: the columns' defaults (one attempt, not unstable).
    stored["unstable"] = stored["unstable"] or 0
    stored["attempts"] = stored["attempts"] or 1
    ws.store.upsert("measurements", stored, ["campaign_id", "config_id"])
