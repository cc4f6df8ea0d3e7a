"""The ``edgelat`` command line: one thin function per subcommand, logic lives in the library."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import json
import logging
import signal
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Annotated, Any, Optional, TypeVar

import typer
from rich.console import Console
from rich.table import Table

from edgelat.errors import EdgelatError, UsageError
from edgelat.nas import IMPORTANCES, PROXIES, SPACES
from edgelat.profiler.presets import PRESETS
from edgelat.profiler.recipes import RECIPES
from edgelat.workspace import Workspace, open_workspace

# Plain help (rich_markup_mode=None): typer's rich help would print a <bool> type after every flag.
app = typer.Typer(help="edgelat: hardware-aware latency prediction and device profiling.", no_args_is_help=True, add_completion=False,
                  rich_markup_mode=None, pretty_exceptions_enable=False)  # fmt: skip
device_app = typer.Typer(help="Manage the device inventory.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(device_app, name="device")
group_app = typer.Typer(help="Groups of identical devices (fleets): one campaign shared among them, one set of models.",
                        no_args_is_help=True, rich_markup_mode=None)  # fmt: skip
device_app.add_typer(group_app, name="group")
data_app = typer.Typer(help="Export what the store holds; move it between a workspace and a team store.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(data_app, name="data")
zoo_app = typer.Typer(help="The built-in model zoo (plain torch modules, random weights).", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(zoo_app, name="zoo")

out = Console()
err = Console(stderr=True)


@app.callback()
def _main(
    verbose: Annotated[
        int,
        typer.Option(
            "--verbose",
            "-v",
            count=True,
            help="Log what happens on the way (-v: reconnects, agent restarts, fallbacks; -vv: more).",
            show_default=False,
        ),
    ] = 0,
) -> None:
    """edgelat: hardware-aware latency prediction and device profiling."""
    from rich.logging import RichHandler

    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    handler = RichHandler(console=err, show_path=False, show_time=verbose > 1, markup=False)
    logging.basicConfig(level=level, format="%(message)s", handlers=[handler], force=True)
    for noisy in ("paramiko", "urllib3", "matplotlib", "PIL", "sqlalchemy", "alembic", "psycopg"):  # their INFO lines are not ours
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


WorkspaceOpt = Annotated[
    Optional[Path],
    typer.Option("--workspace", "-w", help="Workspace directory (default: $EDGELAT_HOME, else ~/.local/share/edgelat).", envvar=None),
]
StoreOpt = Annotated[
    Optional[str],
    typer.Option(
        "--store",
        help="Team store, postgresql://USER@HOST[:PORT]/DB (default: $EDGELAT_STORE, else the workspace's own SQLite file). "
        "The password comes from the URL, PGPASSFILE (~/.pgpass) or PGPASSWORD.",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")]
TrustOpt = Annotated[bool, typer.Option("--trust-new-host", help="Record the SSH host key if this host is not yet known.")]
SchedulerOpt = Annotated[
    Optional[str],
    typer.Option(help="Build on this Dask cluster (tcp://HOST:8786; default $EDGELAT_DASK_SCHEDULER) instead of on this host."),
]

F = TypeVar("F", bound=Callable[..., Any])


def handle_errors(fn: F) -> F:
    """Turn edgelat's errors into one red line on stderr: exit 2 for bad input, 1 otherwise."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except UsageError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(2) from None
        except EdgelatError as exc:
            err.print(f"[red]error:[/red] {exc}", highlight=False, markup=True, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


@contextlib.contextmanager
def _terminate_as_interrupt() -> Iterator[None]:
    """SIGTERM (``kill``, a batch system's stop) ends the work as Ctrl-C does: what is measured stays stored and the
    campaign is marked interrupted, ready to resume."""

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _ws(path: Path | None, store: str | None = None) -> Workspace:
    return open_workspace(path, store)


def _ms(value: float) -> str:
    """Milliseconds with the precision they carry: 4 significant digits (0.009231, 1.234, 123.4; 12345 whole)."""
    # "#" keeps trailing zeros (0.007270, not 0.00727): every figure shows the digits it carries.
    return f"{value:#.4g}".rstrip(".") if abs(value) < 1e4 else f"{value:.0f}"


def _mb(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f} MB"


def _print_json(data: Any) -> None:
    if isinstance(data, list):  # one item a line: indenting thousands of items takes json's slow encoder
        sys.stdout.write("[\n" + ",\n".join(json.dumps(item, default=str) for item in data) + "\n]\n")
    else:
        sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


# -- device ----------------------------------------------------------------------------
@device_app.command("add")
@handle_errors
def device_add(
    name: str,
    host: Annotated[str, typer.Option(help="Host name or address to SSH to.")],
    preset: Annotated[str, typer.Option(help=f"Device preset: {', '.join(n for n in PRESETS.names() if n != 'adapted')}.")],
    port: Annotated[int, typer.Option(help="SSH port.")] = 22,
    user: Annotated[Optional[str], typer.Option(help="SSH user (default: yours).")] = None,
    key: Annotated[Optional[Path], typer.Option(help="Private key file (default: ssh-agent and ~/.ssh keys).")] = None,
    jump: Annotated[Optional[str], typer.Option(help="Jump host, [user@]host[:port].")] = None,
    python: Annotated[str, typer.Option(help="Python interpreter on the device.")] = "python3",
    threads: Annotated[Optional[int], typer.Option(help="Threads for measurements (default: the preset's).")] = None,
    trust_new_host: TrustOpt = False,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Add a device reached over SSH."""
    from edgelat.profiler import inventory

    if key is not None and not key.expanduser().is_file():
        raise UsageError(f"--key {key}: no such private key file")
    with _ws(workspace, store) as ws:
        device = inventory.add_device(
            ws,
            name,
            host=host,
            preset=preset,
            port=port,
            user=user,
            key_file=str(key.expanduser().resolve()) if key else None,
            jump=jump,
            python=python,
            threads=threads,
        )
        if trust_new_host:
            inventory.trust_device(ws, name)
        out.print(f"added device [bold]{device.name}[/bold] ({device.preset}) at {device.address()}")


@device_app.command("trust")
@handle_errors
def device_trust(name: str, workspace: WorkspaceOpt = None,
    store: StoreOpt = None) -> None:
    """Connect once and record the device's SSH host key (refused if it changed)."""
    from edgelat.profiler import inventory

    with _ws(workspace, store) as ws:
        inventory.trust_device(ws, name)
        out.print(f"host key of {name} recorded in {ws.known_hosts}")


@device_app.command("list")
@handle_errors
def device_list(json_out: JsonOpt = False, workspace: WorkspaceOpt = None,
    store: StoreOpt = None) -> None:
    """List the devices in the inventory."""
    from edgelat.profiler import inventory

    with _ws(workspace, store) as ws:
        devices = inventory.list_devices(ws)
        if json_out:
            _print_json([inventory.device_dict(d) for d in devices])
            return
        table = Table("name", "preset", "address", "threads", "last probe")
        for d in devices:
            probe = inventory.latest_probe(ws, d.name)
            table.add_row(d.name, d.preset, d.address(), str(d.measure_threads), probe["taken_at"] if probe else "never")
        out.print(table)


@device_app.command("show")
@handle_errors
def device_show(name: str, json_out: JsonOpt = False, workspace: WorkspaceOpt = None,
    store: StoreOpt = None) -> None:
    """Show one device, the TVM target each recipe builds for on it, and its latest probe."""
    from edgelat.profiler import inventory

    with _ws(workspace, store) as ws:
        device = inventory.get_device(ws, name)
        targets = {} if device.is_adapted else {"targets": {r: device.target(r) for r in RECIPES.names()}}
        data = {**inventory.device_dict(device), **targets, "latest_probe": inventory.latest_probe(ws, name)}
        if json_out:
            _print_json(data)
            return
        table = Table("field", "value", show_header=False)
        # SSH fields mean nothing for this machine or an adapted device (no connection)
        hidden = {"latest_probe"} | ({"settings"} if not device.settings else set())
        hidden |= {"python", "threads"} if device.is_adapted else set()
        for key, value in data.items():
            if key not in hidden:
                table.add_row(key, json.dumps(value) if isinstance(value, (dict, list)) else str(value))
        out.print(table)
        if data["latest_probe"]:
            _print_probe(data["latest_probe"])
        elif device.is_adapted:
            out.print(f"{name} is adapted from another device's models: it has no connection to probe or profile")
        else:
            out.print(f"never probed: run `edgelat device probe {name}`")


@device_app.command("remove")
@handle_errors
def device_remove(name: str, workspace: WorkspaceOpt = None,
    store: StoreOpt = None) -> None:
    """Remove a device (and its probes) from the inventory."""
    from edgelat.profiler import inventory

    with _ws(workspace, store) as ws:
        inventory.remove_device(ws, name)
        out.print(f"removed device {name}")


@device_app.command("probe")
@handle_errors
def device_probe(name: str, json_out: JsonOpt = False, trust_new_host: TrustOpt = False, workspace: WorkspaceOpt = None,
    store: StoreOpt = None) -> None:
    """Probe a device through the agent: CPU, memory, frequencies, TVM, GPU, temperatures."""
    from edgelat.profiler import inventory

    with _ws(workspace, store) as ws:
        data = inventory.probe_device(ws, name, trust_new_host=trust_new_host)
    if json_out:
        _print_json(data)
    else:
        _print_probe(data)


@group_app.command("add")
@handle_errors
def device_group_add(
    name: str,
    members: Annotated[list[str], typer.Argument(help="Devices of the group: one preset, identical by probe.")],
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Add a group of identical devices: `profile NAME` shares a campaign among them, `train NAME` trains one model set."""
    from edgelat.profiler import inventory

    with _ws(workspace, store) as ws:
        group, probes = inventory.add_group(ws, name, members)
    first = probes[group.members[0]]
    out.print(
        f"added group [bold]{group.name}[/bold] ({group.preset}) of {', '.join(group.members)}: "
        f"probes agree ({first.get('cpu_model')}, {first.get('cpu_count')} cores, {first.get('mem_total_mb')} MB)"
    )


@device_app.command("setup")
@handle_errors
def device_setup(
    name: str,
    offline: Annotated[bool, typer.Option(help="Download the wheels on this host and copy them to the device over SFTP.")] = False,
    force: Annotated[bool, typer.Option(help="Install into edgelat's venv even if TVM already imports.")] = False,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Make sure the device can load TVM kernels; install the pinned runtime in a private venv if not."""
    from edgelat.profiler.setup import setup_device

    with _ws(workspace, store) as ws:
        report = setup_device(ws, name, offline=offline, force=force)
    verb = {"present": "already has", "installed": "now has", "installed-offline": "now has (wheels shipped from this host)"}[report.action]
    out.print(f"{report.device} {verb} TVM {report.tvm_version} ({report.python})")


def _print_probe(data: dict[str, Any]) -> None:
    freqs = data.get("cpu_freq") or []
    cur = [f["cur_khz"] for f in freqs if f.get("cur_khz")]
    mx = [f["max_khz"] for f in freqs if f.get("max_khz")]
    governors = sorted({f["governor"] for f in freqs if f.get("governor")})
    temps = ", ".join(f"{z['type']}={z['temp_c']:.0f}°C" for z in data.get("thermal") or []) or "n/a"
    gpu = data.get("gpu") or {}
    table = Table(title=f"probe of {data.get('device')} at {data.get('taken_at')}", show_header=False)
    rows = [
        ("arch", data.get("arch")),
        ("OS / kernel", f"{data.get('os_release') or data.get('os')} / {data.get('kernel')}"),
        ("CPU", data.get("cpu_model")),
        ("cores (online)", f"{data.get('cpu_count')} ({','.join(map(str, data.get('online_cpus') or [])) or 'n/a: no /sys'})"),
        ("frequency now", f"{min(cur) / 1000:.0f}-{max(cur) / 1000:.0f} MHz" if cur else "n/a"),
        ("frequency max", f"{max(mx) / 1000:.0f} MHz" if mx else "n/a"),
        ("governor", ", ".join(governors) or "n/a"),
        ("memory", f"{data.get('mem_total_mb')} MB ({data.get('mem_available_mb')} MB available)"),
        ("python", f"{data.get('python')} ({data.get('python_executable')})"),
        ("tvm", data.get("tvm_version") or f"not importable: {data.get('tvm_error')}"),
        ("GPU", json.dumps(gpu) if gpu else "none found"),
        ("temperatures", temps),
        ("agent", data.get("agent_version")),
    ]
    for key, value in rows:
        table.add_row(key, str(value))
    out.print(table)


# -- profile -----------------------------------------------------------------------------
@app.command("profile")
@handle_errors
def profile_cmd(
    device: str,
    ops: Annotated[Optional[str], typer.Option(help="Comma-separated op kinds (default: all). See `edgelat ops`.")] = None,
    samples: Annotated[
        Optional[int],
        typer.Option(
            help="Configurations of each op kind, exactly. Without it: 100 per kind times the kind's weight (conv2d 4x, "
            "dwconv2d 3x, dense 2x: they carry most of a network's latency), plus epilogue twins (the same shapes with each "
            "activation the drawn kernels hold less often than a uniform draw would). 20 proved too few for useful models.",
            show_default=False,
        ),
    ] = None,
    weighted: Annotated[
        Optional[bool],
        typer.Option(
            "--weighted/--unweighted", help="Apply the kinds' weights and epilogue twins to --samples too, or not to the default plan.", show_default=False
        ),
    ] = None,
    minutes: Annotated[Optional[float], typer.Option(help="Stop after this many minutes (resumable).")] = None,
    threads: Annotated[Optional[int], typer.Option(help="Threads per kernel (default: the device's).")] = None,
    recipe: Annotated[str, typer.Option(help=f"Compile recipe: {RECIPES.choices()}.")] = "default",
    trials: Annotated[int, typer.Option(help="MetaSchedule trials per kernel (tuned recipe).")] = 16,
    rep_trials: Annotated[
        int,
        typer.Option(
            help="Tuned recipe: trials of a representative, a kernel with none of its anchor (conv, matmul...) within "
            "--rep-radius; the others start from the nearest tuned schedules. 0: none, every kernel gets --trials."
        ),
    ] = 256,
    rep_radius: Annotated[
        float, typer.Option(help="How near a representative must be: summed |log2| ratios of the anchors' loop extents.")
    ] = 8.0,
    seed: Annotated[int, typer.Option(help="Sampling seed.")] = 0,
    repeat: Annotated[int, typer.Option(help="Timed repeats per kernel.")] = 7,
    min_repeat_ms: Annotated[float, typer.Option(help="Minimum duration of one repeat.")] = 40.0,
    resume: Annotated[bool, typer.Option(help="Continue the device's last unfinished campaign.")] = False,
    retime: Annotated[
        bool,
        typer.Option(
            help="Time again, the recipe's way, the kernels the device measured another way (cache states changed); a tuned "
            "kernel is built from its tuning records, nothing is tuned again. --ops narrows it."
        ),
    ] = False,
    far: Annotated[
        bool,
        typer.Option(
            "--far/--no-far",
            help="For a recipe with a far way (tuned: flushed caches, what a network too large for the last level meets), "
            "time each kernel that way too, after the recipe's; predictions put a network between the two.",
        ),
    ] = True,
    scheduler: SchedulerOpt = None,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Profile operator kernels on a device: build with TVM, time through the agent, store."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    from edgelat.profiler.campaign import ProfileConfig, untimed_configs
    from edgelat.profiler.executors import scheduler_address
    from edgelat.profiler.inventory import get_device
    from edgelat.profiler.recipes import get_recipe

    cfg = ProfileConfig(
        ops=tuple(o.strip() for o in ops.split(",") if o.strip()) if ops else (),
        samples=samples,
        weighted=weighted,
        minutes=minutes,
        threads=threads,
        recipe=recipe,
        trials=trials,
        rep_trials=rep_trials,
        rep_radius=rep_radius,
        seed=seed,
        repeat=repeat,
        min_repeat_ms=min_repeat_ms,
        scheduler=scheduler_address(scheduler),
    )
    with (
        _ws(workspace, store) as ws,
        Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]:.1f} kernels/min"),
            TextColumn("failed {task.fields[failed]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=err,
            transient=False,
        ) as bar,
    ):
        far_way = get_recipe(recipe).far_caches if far else None
        if retime and not resume:
            if samples is not None or get_device(ws, device).is_group:
                raise UsageError("--retime takes the kernels already measured: not with --samples, nor on a device group")
            ways = (None, far_way) if far_way else (None,)
            passes = [(dataclasses.replace(cfg, configs=c, caches=w), False) for w in ways if (c := untimed_configs(ws, device, recipe, cfg.ops, w))]
            if not passes:
                bar.stop()
                out.print(f"nothing to re-time: every {recipe} kernel of {device} is timed the ways {recipe} times kernels now")
                return
        else:
            passes = [(cfg, resume)]
        while passes:
            run_cfg, run_resume = passes.pop(0)
            result = _profile_pass(ws, device, run_cfg, run_resume, bar)
            if far_way and not retime and result.status == "done" and not get_device(ws, device).is_group:
                # The far way follows the recipe's (a resumed far pass finds nothing left), from the same builds.
                left = untimed_configs(ws, device, recipe, cfg.ops, far_way)
                passes = [(dataclasses.replace(cfg, configs=left, caches=far_way), False)] if left and run_cfg.caches is None else []


def _profile_pass(ws: Any, device: str, cfg: Any, resume: bool, bar: Any) -> Any:
    """One campaign, with its bar and its summary."""
    from edgelat.profiler.campaign import profile
    from edgelat.profiler.fleet import profile_group
    from edgelat.profiler.inventory import get_device

    way = f", {cfg.caches}" if cfg.caches else ""
    bar.start()  # (again, after a pass before this one stopped it to print its summary)
    task = bar.add_task(f"profiling {device}{way}", total=None, rate=0.0, failed=0)
    session_start = [0.0, 0]

    def update(p: Any) -> None:
        import time

        if not session_start[0]:
            session_start[0], session_start[1] = time.time(), p.done - 1
        elapsed = max(time.time() - session_start[0], 1e-3)
        rate = (p.done - session_start[1]) / elapsed * 60
        bar.update(task, total=p.total, completed=p.done, rate=rate, failed=p.failed, description=f"profiling {device}{way} ({p.last_op})")

    fleet = None
    try:
        with _terminate_as_interrupt():
            if get_device(ws, device).is_group:
                result, fleet = profile_group(ws, get_device(ws, device), cfg, resume=resume, on_update=update)
            else:
                result = profile(ws, device, cfg, resume=resume, on_update=update)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted[/yellow]: everything measured so far is stored; continue with --resume")
        raise typer.Exit(130) from None
    bar.stop()
    _print_summary(ws, result.campaign_id)
    if fleet is not None:
        _print_fleet(fleet)
    out.print(
        f"campaign {result.campaign_id}{way}: {result.status}, {result.measured}/{result.planned} kernels stored ({result.failed} failed) in {result.elapsed_s:.0f} s"
    )
    return result


def _print_fleet(fleet: Any) -> None:
    table = Table("member", "rows this run", "sentinels before", "sentinels after", "status", title="members")
    for member, rows in fleet.rows.items():
        devs = [fleet.deviations.get(phase, {}).get(member) for phase in ("before", "after")]
        status = "ok"
        if member in fleet.dropped:
            status = f"left: {fleet.dropped[member]}"
        elif member in fleet.flagged:
            status = "rows flagged"
        table.add_row(member, str(rows), *("-" if d is None else f"{d:+.1%}" for d in devs), status)
    out.print(table)


def _print_summary(ws: Workspace, campaign_id: int) -> None:
    rows = ws.store.rows(
        """SELECT op, COUNT(*) n, SUM(CASE WHEN status = 'ok' THEN 1 ELSE 0 END) ok, SUM(CASE WHEN status != 'ok' THEN 1 ELSE 0 END) failed,
                  SUM(unstable) unstable, MIN(median_ms) lo, MAX(median_ms) hi, AVG(cv) cv
           FROM measurements WHERE campaign_id = :id GROUP BY op ORDER BY op""",
        {"id": campaign_id},
    )
    table = Table("op", "measured", "ok", "failed", "unstable", "median ms (min-max)", "mean CV", title=f"campaign {campaign_id}")
    for r in rows:
        span = f"{r['lo']:.4f}-{r['hi']:.4f}" if r["lo"] is not None else "-"
        table.add_row(r["op"], str(r["n"]), str(r["ok"]), str(r["failed"]), str(r["unstable"] or 0), span, f"{(r['cv'] or 0) * 100:.1f}%")
    out.print(table)


@app.command("ops")
@handle_errors
def ops_cmd() -> None:
    """List the registered operator kinds."""
    from edgelat.ops import get_op, list_ops

    table = Table("op", "parameters", "description")
    for name in list_ops():
        spec = get_op(name)
        table.add_row(name, ", ".join(spec.params), spec.description)
    out.print(table)


# -- train / predict / measure ---------------------------------------------------------------
RecipeOpt = Annotated[
    Optional[str], typer.Option(help=f"Compile recipe, {RECIPES.choices()} (default: the one the device was profiled with most).")
]
ShapeOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        metavar="SHAPE",
        help="Input shape, e.g. 1,3,224,224 (ONNX models with fixed shapes need none); for several inputs repeat it, "
        "in order or as NAME=1,3,224,224.",
    ),
]


def _shapes(values: list[str] | None) -> Any:
    """``--input-shape`` values as one shape, shapes in input order, or shapes by input name."""
    if not values:
        return None
    named = [v.partition("=") for v in values]
    if any(sep for _, sep, _ in named):
        if not all(sep and name for name, sep, _ in named):
            raise UsageError("give every --input-shape as NAME=1,3,224,224, or none of them")
        return {name: _shape(text) for name, _, text in named}
    shapes = [_shape(v) for v in values]
    return shapes[0] if len(shapes) == 1 else shapes


def _shape(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    if not text.strip():
        raise UsageError("empty --input-shape: give comma-separated integers such as 1,3,224,224")
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        raise UsageError(f"bad --input-shape {text!r}: use comma-separated integers such as 1,3,224,224") from None
    if not shape or any(v < 1 for v in shape):
        raise UsageError(f"bad --input-shape {text!r}: every dimension must be at least 1")
    return shape


@app.command("train")
@handle_errors
def train_cmd(device: str, recipe: RecipeOpt = None, json_out: JsonOpt = False, workspace: WorkspaceOpt = None,
    store: StoreOpt = None) -> None:
    """Fit one XGBoost latency model per op kind on the device's kernel measurements."""
    from edgelat.predictors.train import report_dict, train_device

    with _ws(workspace, store) as ws:
        report = train_device(ws, device, recipe)
    if json_out:
        _print_json(report_dict(report))
        return
    from rich import box
    from rich.table import Column

    # One table per way the kernels were timed (a far way's kinds are reported as "conv2d (flushed)"), short headers
    # that wrap and numbers that do not: it fits an 80-column terminal whole.
    ways: dict[str, list[Any]] = {}
    for r in report.ops:
        kind, _, way = r.op.partition(" (")
        ways.setdefault(way.rstrip(")"), []).append((kind, r))
    for way, rows in ways.items():
        heads = ("op", "configs", "folds", "xgboost\nRMSPE", "±5%", "±10%", "FLOPs\nlinear\n±10%", "random\nforest\n±10%", "1-NN\n±10%")
        cells = []
        for kind, r in rows:
            m = r.metrics
            cells.append((kind, str(r.n), str(r.folds), f"{m['xgboost']['rmspe']:.1f}%", f"{m['xgboost']['within_5']:.0f}%", f"{m['xgboost']['within_10']:.0f}%",
                          f"{m['flops_linear']['within_10']:.0f}%", f"{m['random_forest']['within_10']:.0f}%", f"{m['lookup_1nn']['within_10']:.0f}%"))  # fmt: skip
        columns = [
            Column(h, justify="left" if i == 0 else "right", no_wrap=True, min_width=max(len(line) for text in (h, *(c[i] for c in cells)) for line in text.split("\n")))
            for i, h in enumerate(heads)
        ]
        timed = f", timed {way}" if way else ""
        title = f"{report.device} ({report.recipe}{timed}): cross-validated accuracy\n(each config predicted by models that never saw it)"
        table = Table(*columns, box=box.SIMPLE_HEAD, padding=(0, 1, 0, 0), title=title)
        for row in cells:
            table.add_row(*row)
        out.print(table)
    for op, why in report.skipped.items():
        out.print(f"[yellow]skipped {op}[/yellow]: {why}")
    out.print(f"models saved in {report.model_dir} ({report.seconds:.1f} s)")


@app.command("predict")
@handle_errors
def predict_cmd(
    device: str,
    model: Annotated[Optional[Path], typer.Argument(help="ONNX file (or use --space with --arch / --archs-file).")] = None,
    input_shape: ShapeOpt = None,
    space: Annotated[Optional[str], typer.Option(help=f"Search space of --arch / --archs-file: {SPACES.choices()}.")] = None,
    arch: Annotated[Optional[str], typer.Option(help="One architecture string of --space.")] = None,
    archs_file: Annotated[Optional[Path], typer.Option(help="A file of architecture strings, one per line.")] = None,
    recipe: RecipeOpt = None,
    strict: Annotated[
        bool,
        typer.Option("--strict", help="Refuse a network with a kernel no kind's model covers (default: the fallback model prices it)."),
    ] = False,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Predict a network's latency on a device, with a per-kernel breakdown."""
    if (model is None) == (space is None):
        raise UsageError("give either an ONNX file or --space with --arch / --archs-file")
    with _ws(workspace, store) as ws:
        if model is not None:
            from edgelat.predictors.predict import predict_network

            preds = [predict_network(ws, device, model, input_shape=_shapes(input_shape), recipe=recipe, strict=strict)]
        else:
            from edgelat.nas.spaces import get_space

            found = get_space(space or "")
            if (arch is None) == (archs_file is None):
                raise UsageError("with --space, give exactly one of --arch and --archs-file")
            if archs_file is not None:
                _predict_archs(ws, device, found, _read_lines(archs_file), recipe, strict, json_out)
                return
            assert arch is not None
            from edgelat.predictors.predict import predict_network

            pred = predict_network(ws, device, found.build(arch), input_shape=found.input_shape(arch), recipe=recipe, strict=strict)
            pred.arch = arch  # type: ignore[attr-defined]
            preds = [pred]
    if json_out:
        _print_json({**preds[0].as_dict(), **({"arch": preds[0].arch} if hasattr(preds[0], "arch") else {})})
        return
    for p in preds:
        _print_kernels(p)


def _predict_archs(ws: Workspace, device: str, space: Any, lines: list[str], recipe: str | None, strict: bool, json_out: bool) -> None:
    """Many architectures: priced block by block, each distinct block once (cached in the workspace)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from edgelat.workflows import predict_archs

    archs = [line.strip() for line in lines if line.strip()]
    if not archs:
        raise UsageError("the --archs-file holds no architecture")
    with Progress(
        TextColumn("pricing new blocks"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(), console=err, transient=True
    ) as bar:
        task = bar.add_task("blocks", total=None)
        preds = predict_archs(
            ws, device, space, archs, recipe=recipe, strict=strict, on_block=lambda i, n: bar.update(task, completed=i, total=n)
        )
    if json_out:
        _print_json([p.as_dict() for p in preds])
        return
    table = Table(
        "#",
        "architecture",
        "predicted ms",
        title=f"{device} ({preds[0].recipe}): {len(preds)} architectures of {space.name}, summed block by block",
    )
    for i, p in enumerate(preds):
        table.add_row(str(i), p.arch, _ms(p.total_ms) + (" [yellow](fallback)[/yellow]" if p.fallback_ms > 0 else ""))
    out.print(table)


def _read_lines(path: Path | None) -> list[str]:
    assert path is not None
    if not path.exists():
        raise UsageError(f"no such file: {path}")
    return path.read_text().splitlines()


def _print_kernels(pred: Any) -> None:
    from edgelat.ops import get_op

    table = Table("#", "kind", "config", "predicted ms", "share", title=f"{pred.device} ({pred.recipe}): one row per fused kernel")
    for i, k in enumerate(pred.kernels):
        desc = get_op(k.op).describe(k.config) if k.op and k.config else k.name
        kind = k.op or "-"
        table.add_row(
            str(i), f"{kind} [yellow](fallback)[/yellow]" if k.fallback else kind, desc, _ms(k.predicted_ms), f"{k.share * 100:.1f}%"
        )
    out.print(table)
    fallbacks = sum(k.fallback for k in pred.kernels)
    out.print(
        f"predicted total: [bold]{_ms(pred.total_ms)} ms[/bold]"
        + (
            f"; {fallbacks} kernel(s) priced by the fallback model, {pred.coverage * 100:.1f}% of the time by dedicated models"
            if fallbacks
            else ""
        )
    )
    if (c := pred.context) is not None:
        out.print(f"its kernels {_ms(c.near_ms)} ms the {pred.recipe} way, {_ms(c.far_ms)} ms with their weights in memory; one run touches "
                  f"{c.footprint_mb:.1f} MB, which puts it {c.share:.2f} of the way (the device's curve, fitted by `edgelat validate`)")  # fmt: skip
    if (m := pred.memory) is not None:
        how = "fitted on the device's measured networks" if m.fitted else "not fitted: measure a few networks on the device"
        out.print(f"predicted peak memory [bold]{_mb(m.memory_mb)}[/bold], library {_mb(m.size_mb)} ({_mb(m.params_mb)} weights, "
                  f"{_mb(m.activation_mb)} activations planned; {how})")  # fmt: skip


@app.command("measure")
@handle_errors
def measure_cmd(
    device: str,
    model: Annotated[Path, typer.Argument(help="ONNX file.")],
    input_shape: ShapeOpt = None,
    recipe: Annotated[str, typer.Option(help=f"Compile recipe: {RECIPES.choices()}.")] = "default",
    threads: Annotated[Optional[int], typer.Option(help="Threads (default: the device's).")] = None,
    kernels: Annotated[bool, typer.Option("--kernels", help="Also list every kernel the VM called, timed in place.")] = False,
    check: Annotated[
        bool,
        typer.Option(
            "--check", help="Also run it once on the device and compare its outputs with this host's build (exit 1 if they differ)."
        ),
    ] = False,
    scheduler: SchedulerOpt = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Compile a whole network for the device and time it there end to end (ground truth)."""

    from edgelat.errors import OutputMismatchError
    from edgelat.predictors.predict import load_network
    from edgelat.profiler.e2e import measure_network
    from edgelat.profiler.executors import scheduler_address
    from edgelat.profiler.inventory import get_device

    address = scheduler_address(scheduler)
    with _ws(workspace, store) as ws:
        get_device(ws, device)  # before the slow import
        mod = load_network(model, _shapes(input_shape))
        result = measure_network(ws, device, mod, name=model.name, recipe=recipe, threads=threads, check=check, scheduler=address)
    checked = result.check
    if json_out:
        _print_json({"device": result.device, "recipe": result.recipe, "median_ms": result.median_ms, "std_ms": result.std_ms, "min_ms": result.min_ms,
                     "max_ms": result.max_ms, "repeats": result.repeats, "threads": result.threads, "kernels": result.kernels,
                     "target": result.target, "check": checked, "peak_memory_mb": result.peak_memory_mb,
                     "runtime_memory_mb": result.runtime_memory_mb, "size_mb": result.size_mb, "params_mb": result.params_mb,
                     "planned_activation_mb": result.planned_activation_mb, "energy_mj": result.energy_mj,
                     "power_mw": result.power_mw, "power_rail": result.power_rail})  # fmt: skip
    else:
        out.print(f"{result.name} on {result.device} ({result.recipe}, {result.threads} thread(s)): median [bold]{_ms(result.median_ms)} ms[/bold] "
                  f"(std {_ms(result.std_ms)}, min {_ms(result.min_ms)}, max {_ms(result.max_ms)}, {result.repeats} repeats); "
                  f"{len(result.kernels)} kernels called, summing to {_ms(sum(k[1] for k in result.kernels))} ms in place")  # fmt: skip
        out.print(f"peak memory [bold]{_mb(result.peak_memory_mb)}[/bold] ({_mb(result.runtime_memory_mb)} of it Python and TVM's runtime); "
                  f"library {_mb(result.size_mb)} ({_mb(result.params_mb)} weights); activations planned {_mb(result.planned_activation_mb)}")  # fmt: skip
        if result.energy_mj is not None:
            out.print(f"energy [bold]{result.energy_mj:.3g} mJ[/bold] per inference ({result.power_mw:.0f} mW on {result.power_rail} while timed)")
        else:
            out.print("energy: not available (the device has no power monitor the agent can read)")
        if kernels:
            table = Table("#", "kernel", "measured ms (in place, one run)", title="kernels the VM called")
            for i, (name, ms) in enumerate(result.kernels):
                table.add_row(str(i), name, _ms(ms))
            out.print(table)
    if checked is not None:
        if not json_out:
            out.print(f"outputs on {result.device} vs this host's build: max abs error {checked['max_abs_error']:.3g} "
                      f"(outputs up to {checked['max_abs_output']:.3g}; tolerance {checked['tolerance']:.3g})")  # fmt: skip
        if not checked["ok"]:
            raise OutputMismatchError(f"{result.device} computes something else than this host's build of {model.name} "
                                      f"(max abs error {checked['max_abs_error']:.3g} > {checked['tolerance']:.3g})")  # fmt: skip


@app.command("validate")
@handle_errors
def validate_cmd(
    device: str,
    zoo: Annotated[
        str,
        typer.Option(
            help="all (46 zoo networks + NB201 and FBNet samples), quick (10 small ones), model names (at 160 and 224) or name@resolution, comma-separated (e.g. quick,resnet18@160)."
        ),
    ] = "all",
    recipe: RecipeOpt = None,
    rounds: Annotated[
        int,
        typer.Option(
            min=1,
            help="Each network's time is the median of this many measurements, taken in rounds over the zoo "
            "(a busy spell of the device then falls on one of each network's, not on all; a network is built once, "
            "its library loaded afresh each round); stored ones count.",
        ),
    ] = 3,
    fresh: Annotated[
        bool,
        typer.Option(
            "--fresh",
            help="Measure every network --rounds times now: stored measurements do not count (a device that was busy "
            "when they were taken); the new ones are stored and count next time.",
        ),
    ] = False,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Where the table, plot and report go.")] = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Measure and predict a zoo of real networks; report accuracy against the FLOPs baseline."""
    from dataclasses import asdict

    from edgelat.workflows.validate import validate_device

    def show(label: str, row: Any) -> None:
        if not json_out:
            err.print(
                f"{label}: "
                + (
                    f"predicted {_ms(row.predicted_ms)} ms, measured {_ms(row.measured_ms)} ms ({row.error_pct:+.1f}%; "
                    f"median of {row.measurements}, spread {row.measured_spread_pct:.0f}%)"
                    if row
                    else "failed"
                )
            )

    def measured(label: str, r: int, ms: float) -> None:
        if not json_out:
            err.print(f"round {r + 1}/{rounds}: {label} measured {_ms(ms)} ms")

    with _ws(workspace, store) as ws:
        report = validate_device(ws, device, zoo=zoo, recipe=recipe, out_dir=out_dir, rounds=rounds, fresh=fresh, on_network=show,
                                on_measured=measured)  # fmt: skip
    if json_out:
        _print_json(asdict(report))
        return
    placed = report.context is not None
    table = Table("network", "kernels", "predicted ms", "measured ms", "spread", "error", "FLOPs baseline error",
                  *(("MB touched", "near / far ms", "share") if placed else ()), title=f"{report.device} ({report.recipe})")  # fmt: skip
    for r in report.rows:
        table.add_row(
            r.network, str(r.kernels), f"{r.predicted_ms:.2f}", f"{r.measured_ms:.2f}", f"{r.measured_spread_pct:.0f}% ({r.measurements})",
            f"{r.error_pct:+.1f}%", f"{r.flops_error_pct:+.1f}%",
            *((f"{r.touched_mb:.1f}", f"{r.near_ms:.2f} / {r.far_ms:.2f}", f"{r.context_share:.2f}") if placed else ()),
        )  # fmt: skip
    out.print(table)
    m, f = report.metrics, report.flops_metrics
    out.print(
        f"edgelat: {m['within_10']:.1f}% within ±10%, RMSPE {m['rmspe']:.1f}%   |   FLOPs baseline: {f['within_10']:.1f}% within ±10%, RMSPE {f['rmspe']:.1f}%"
    )
    if report.unsteady:
        from edgelat.workflows.validate import STEADY_SPREAD_PCT

        s = report.steady_metrics
        out.print(
            f"[yellow]{len(report.unsteady)} of {len(report.rows)} networks' measurements spread over {STEADY_SPREAD_PCT:.0f}% between "
            f"rounds[/yellow] ({', '.join(report.unsteady)}): the device was not steady, and their errors measure it as much as the "
            "predictor" + (f"; the {len(report.rows) - len(report.unsteady)} steady ones: {s['within_10']:.1f}% within ±10%, RMSPE {s['rmspe']:.1f}%" if s else "")
            + "; measure again on a quieter device (--fresh), or with more --rounds"
        )
    if report.near_metrics:
        n, c = report.near_metrics, report.context
        out.print(f"the kernels' {report.recipe} way alone: {n['within_10']:.1f}% within ±10%, RMSPE {n['rmspe']:.1f}%")
        if c is not None:
            out.print(
                f"networks placed between their kernels' two ways by their footprint (each by a curve fitted to the others); the curve "
                f"fitted to all {len(c['networks'])}, saved for predictions: half way at {c['center_mb']:.1f} MB, rising to {c['height']:.2f}"
            )
        else:
            out.print("too few networks to place them between their kernels' two ways: validate at least 5")
    light = Table("network", "weights MB", "library MB (predicted)", "peak memory MB (predicted)", "network's own MB (predicted)",
                  title="memory and storage (predicted: fitted on the device's other networks)")  # fmt: skip
    for r in report.rows:

        def pair(measured: float | None, predicted: float | None) -> str:
            return "-" if measured is None else f"{measured:.1f}" + ("" if predicted is None else f" ({predicted:.1f})")

        light.add_row(r.network, "-" if r.params_mb is None else f"{r.params_mb:.2f}", pair(r.size_mb, r.predicted_size_mb),
                      pair(r.memory_mb, r.predicted_memory_mb), pair(r.network_memory_mb, r.predicted_network_memory_mb))  # fmt: skip
    out.print(light)
    for name, metrics in (("peak memory", report.memory_metrics), ("the network's own memory", report.network_memory_metrics),
                          ("library size", report.size_metrics)):  # fmt: skip
        if metrics:
            out.print(f"{name}: {metrics['within_10']:.1f}% within ±10%, RMSPE {metrics['rmspe']:.1f}%")
    for label, why in report.failures.items():
        out.print(f"[yellow]not predicted[/yellow] {label}: {why}")
    out.print(f"table: {report.table}\nplot: {report.plot}" + (f"\nshare against footprint: {report.context_plot}" if report.context_plot else ""))


# -- adapt -----------------------------------------------------------------------------
@app.command("adapt")
@handle_errors
def adapt_cmd(
    device: str,
    source: Annotated[str, typer.Option("--from", help="A profiled, trained device whose kernel models are reused.")],
    measurements: Annotated[Path, typer.Option(help="CSV with latency_ms and either onnx (paths) or arch (strings of --space).")],
    space: Annotated[Optional[str], typer.Option(help=f"Search space of the arch column: {SPACES.choices()}.")] = None,
    force: Annotated[bool, typer.Option("--force", help="Replace an adapted device of this name.")] = False,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Create a device from a few end-to-end latencies and another device's kernel models."""
    from edgelat.workflows import adapt_device

    with _ws(workspace, store) as ws:
        if ws.adapter_file(device).exists() and not force:
            raise UsageError(f"{device} is already adapted; pass --force to replace its adapter")
        report = adapt_device(ws, device, source, measurements, space)
    if json_out:
        _print_json(report.as_dict())
        return
    a = report.adapter
    table = Table("kernel group", "ms per source ms", title=f"{device} adapted from {source} ({report.networks} networks)")
    for group, w in sorted(a.weights.items()):
        table.add_row(group, f"{w:.3f}")
    table.add_row("per kernel launched", f"{a.launch_ms * 1000:.1f} us")
    out.print(table)
    cv = a.cv
    out.print(
        f"leave-one-out on the {a.n} measurements: RMSPE {cv['rmspe']:.1f}%, {cv['within_10']:.0f}% within ±10%"
        + (f", Spearman {cv['spearman']:.3f}" if "spearman" in cv else "")
    )
    out.print(f"`edgelat predict {device} ...` now works like for any device (model: {report.path})")


# -- prune -----------------------------------------------------------------------------
@app.command("prune")
@handle_errors
def prune_cmd(
    device: str,
    model: Annotated[str, typer.Argument(help="path/to/module.py:function returning an nn.Module, or a zoo model name.")],
    target_ms: Annotated[Optional[float], typer.Option("--target-ms", help="Latency the pruned model must meet on the device.")] = None,
    speedup: Annotated[Optional[float], typer.Option(help="Or: this many times faster than the measured original.")] = None,
    memory_mb: Annotated[
        Optional[float], typer.Option("--memory-mb", help="Peak resident memory the pruned model must stay within on the device (MB).")
    ] = None,
    input_shape: Annotated[str, typer.Option(help="Input shape, N,C,H,W.")] = "1,3,224,224",
    importance: Annotated[str, typer.Option(help=f"Channel importance: {IMPORTANCES.choices()}.")] = "magnitude",
    steps: Annotated[int, typer.Option(help="Pruning steps the latency reduction is spread over.")] = 8,
    pretrain_steps: Annotated[int, typer.Option(help="Training steps on the digits task before pruning (0 for a trained model).")] = 200,
    finetune_steps: Annotated[int, typer.Option(help="Fine-tuning steps after each pruning step.")] = 30,
    recipe: RecipeOpt = None,
    out_dir: Annotated[
        Optional[Path],
        typer.Option("--out", help="Where the pruned model (ONNX; state dict and structure, see load_pruned) and report go."),
    ] = None,
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Prune a network's channels until it meets a latency target (and a memory limit) on the device (NetAdapt-style, predictor-priced)."""
    from edgelat.workflows import PruneOptions, prune_device

    def show(step: Any) -> None:
        acc = f", accuracy {step.accuracy:.1f}%" if step.accuracy is not None else ""
        meas = f", measured {_ms(step.measured_ms)} ms" if step.measured_ms is not None else ""
        mem = f", {_mb(step.predicted_memory_mb)} predicted" if step.predicted_memory_mb is not None else ""
        mem += f", {_mb(step.measured_memory_mb)} measured" if step.measured_memory_mb is not None else ""
        err.print(f"step {step.step}: {step.layer} -{step.removed} channels -> predicted {_ms(step.predicted_ms)} ms{meas}{mem}{acc}")

    with _ws(workspace, store) as ws:
        pruned = prune_device(
            ws, device, model, input_shape=_shape(input_shape) or (1, 3, 224, 224), target_ms=target_ms, speedup=speedup, memory_mb=memory_mb,
            options=PruneOptions(recipe, importance, steps, pretrain_steps, finetune_steps), out_dir=out_dir, on_step=show,
        )  # fmt: skip
    result = pruned.as_dict()
    if json_out:
        _print_json(result)
    else:
        target = f", target {result['target_ms']:.3g} ms" if result["target_ms"] is not None else ""
        out.print(
            f"baseline {result['baseline_ms']:.2f} ms measured -> pruned {result['measured_ms']:.2f} ms measured "
            f"({result['predicted_ms']:.2f} predicted){target}; accuracy "
            f"{result['baseline_accuracy']:.1f}% -> {result['accuracy']:.1f}%"
        )
        if memory_mb is not None:
            out.print(
                f"peak memory {_mb(result['baseline_memory_mb'])} measured -> {_mb(result['measured_memory_mb'])} measured "
                f"({_mb(result['predicted_memory_mb'])} predicted), limit {memory_mb:g} MB"
            )
        out.print(f"outputs in {result['out_dir']}")
    missed = []
    if result["target_ms"] is not None and result["measured_ms"] is not None and result["measured_ms"] > result["target_ms"]:
        missed.append(f"measures {result['measured_ms']:.2f} ms, above the {result['target_ms']:.3g} ms target")
    if memory_mb is not None and result["measured_memory_mb"] is not None and result["measured_memory_mb"] > memory_mb:
        missed.append(f"peaks at {result['measured_memory_mb']:.1f} MB, above the {memory_mb:g} MB limit")
    if missed:
        err.print(f"[red]error:[/red] the pruned model {' and '.join(missed)}")
        raise typer.Exit(1)


# -- search ----------------------------------------------------------------------------
@app.command("search")
@handle_errors
def search_cmd(
    device: str,
    space: Annotated[str, typer.Option(help=f"Search space: {SPACES.choices()}.")],
    latency_ms: Annotated[float, typer.Option("--latency-ms", help="Latency budget the measured network must meet.")],
    proxy: Annotated[str, typer.Option(help=f"Accuracy proxy: {', '.join(PROXIES.names())} or ensemble (their mean rank).")] = "ensemble",
    generations: Annotated[int, typer.Option(help="NSGA-II generations per round.")] = 20,
    population: Annotated[int, typer.Option(help="NSGA-II population.")] = 32,
    minutes: Annotated[Optional[float], typer.Option(help="Wall-clock limit of each round's search.")] = None,
    rounds: Annotated[int, typer.Option(help="Search-measure-refit rounds at most.")] = 3,
    top_k: Annotated[int, typer.Option("--top-k", help="Picks measured on the device per round.")] = 3,
    seed: int = 0,
    recipe: RecipeOpt = None,
    out_dir: Annotated[Optional[Path], typer.Option("--out", help="Where the best arch, ONNX, Pareto front and report go.")] = None,
    then_prune: Annotated[
        bool, typer.Option("--then-prune", help="Also search at a looser budget and prune that winner to this one; compare.")
    ] = False,
    looser: Annotated[float, typer.Option(help="With --then-prune: the looser budget, as a multiple of --latency-ms.")] = 1.3,
    memory_mb: Annotated[
        Optional[float], typer.Option("--memory-mb", help="Peak memory the measured network must stay within (MB), a hard constraint.")
    ] = None,
    size_mb: Annotated[Optional[float], typer.Option("--size-mb", help="Library size (weights included) it must stay within (MB).")] = None,
    plot: Annotated[
        str, typer.Option("--plot", help="The Pareto plot's axes X,Y: two of accuracy, latency, memory, size.")
    ] = "latency,accuracy",
    json_out: JsonOpt = False,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Find the best network of a space under a latency budget (and memory and size limits); verify it on the device."""
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from edgelat.nas.report import plot_axes
    from edgelat.nas.search import Limits
    from edgelat.workflows import SearchOptions, search_device, search_then_prune

    limits = Limits(memory_mb, size_mb)
    options = SearchOptions(proxy, recipe, population, generations, minutes * 60 if minutes else None, rounds, top_k, seed, limits, plot_axes(plot))
    if then_prune and size_mb is not None:
        raise UsageError("--then-prune does not take --size-mb: pruning keeps to latency and memory (search with it alone)")
    if then_prune:
        with _ws(workspace, store) as ws:
            routes = search_then_prune(ws, device, space, latency_ms, looser=looser, search=options, out_dir=out_dir)
        if json_out:
            _print_json(routes)
            return
        table = Table("route", "arch", "measured ms", "params", "digits accuracy %", title=f"{device}: {space} under {latency_ms:g} ms")
        for name in ("search_alone", "search_then_prune"):
            if name in routes and "error" in routes[name]:
                table.add_row(name.replace("_", " "), routes[name]["error"], "", "", "")
            elif name in routes:
                r = routes[name]
                table.add_row(name.replace("_", " "), r["arch"], f"{r['measured_ms']:.2f}", f"{r['params']:,}", f"{r['accuracy']:.1f}")
        out.print(table)
        out.print(f"outputs in {routes['out_dir']}")
        return

    with _ws(workspace, store) as ws, Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                                        TimeElapsedColumn(), console=err, transient=True) as bar:  # fmt: skip
        blocks = bar.add_task("pricing blocks", total=None, visible=False)
        gens = bar.add_task("searching", total=generations)

        def on_block(done: int, total: int) -> None:
            bar.update(blocks, completed=done, total=total, visible=done < total)

        def on_generation(gen: int, evaluated: int) -> None:
            bar.update(gens, completed=min(gen, generations), description=f"searching ({evaluated} archs)")

        def on_verified(v: Any) -> None:
            bar.reset(gens)
            light = f"; memory {_mb(v.measured_memory_mb)}, library {_mb(v.measured_size_mb)}" if limits.any else ""
            err.print(
                f"round {v.round}: {v.arch}: predicted {_ms(v.predicted_ms)} ms, measured {_ms(v.measured_ms)} ms ({100 * v.error:+.1f}%){light}"
            )

        found = search_device(
            ws, device, space, latency_ms, options, out_dir=out_dir, on_block=on_block, on_generation=on_generation, on_verified=on_verified
        )
    result = found.as_dict()
    if json_out:
        _print_json(result)
    else:
        table = Table("round", "arch", "score", "predicted ms", "measured ms", "error", title=f"{device}: {space} under {latency_ms:g} ms")
        for v in result["verified"]:
            table.add_row(
                str(v["round"]),
                v["arch"],
                f"{v['score']:.4g}",
                f"{v['predicted_ms']:.2f}",
                f"{v['measured_ms']:.2f}",
                f"{100 * v['error']:+.1f}%",
            )
        out.print(table)
        if result["oracle_scaled_by"] is not None:
            out.print(
                f"the predictor put every architecture over {latency_ms:g} ms, but its fastest one measured within it: "
                f"predictions were scaled by {result['oracle_scaled_by']:.2f} (retrain on more kernels: edgelat profile {device})"
            )
        if result["arch"]:
            out.print(f"best: {result['arch']}\n  measured {result['measured_ms']:.2f} ms (predicted {result['predicted_ms']:.2f} ms)")
            if limits.any:
                out.print(f"  peak memory {_mb(result['measured_memory_mb'])}, library {_mb(result['measured_size_mb'])} (measured)")
        out.print(f"outputs in {result['out_dir']} ({found.seconds:.0f} s)")
    if not result["met_budget"]:
        wanted = f"{latency_ms:g} ms" + (f", {memory_mb:g} MB of memory" if memory_mb else "") + (f", a {size_mb:g} MB library" if size_mb else "")
        err.print(f"[red]error:[/red] no verified pick met {wanted} when measured after {result['rounds']} round(s)")
        raise typer.Exit(1)


# -- zoo -------------------------------------------------------------------------------
@zoo_app.command("list")
@handle_errors
def zoo_list(pattern: Annotated[str, typer.Argument(help="Shell-style name pattern.")] = "*") -> None:
    """List the zoo's models."""
    from edgelat.datasets.zoo import list_models

    for name in list_models(pattern):
        out.print(name)


@zoo_app.command("export")
@handle_errors
def zoo_export(
    name: str,
    output: Annotated[Path, typer.Option(help="ONNX file to write.")],
    resolution: Annotated[int, typer.Option(help="Input height and width (16 or more).")] = 224,
) -> None:
    """Export a zoo model to ONNX (static shapes)."""
    from edgelat.datasets.zoo import export_onnx

    out.print(f"wrote {export_onnx(name, resolution, output)}")


# -- data ------------------------------------------------------------------------------
@data_app.command("export")
@handle_errors
def data_export(
    device: str,
    fmt: Annotated[str, typer.Option("--format", help="parquet or csv.")] = "parquet",
    output: Annotated[Optional[Path], typer.Option(help="Output file (default: exports/DEVICE/kernels.FORMAT in the workspace).")] = None,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Export a device's kernel measurements, one row per measurement."""
    from edgelat.datasets.store import export_measurements

    with _ws(workspace, store) as ws:
        path = export_measurements(ws, device, fmt, output)
    out.print(f"wrote {path}")


AsOpt = Annotated[Optional[str], typer.Option("--as", help="The device's name in the other store (default: the same).")]


def _copy(device: str, as_name: str | None, workspace: Path | None, store: str | None, push: bool) -> None:
    from edgelat.profiler.inventory import validate_name
    from edgelat.store import open_store, store_url
    from edgelat.store.sync import copy_device

    url = store_url(store)
    if url is None:
        raise UsageError(f"name the team store to {'push to' if push else 'pull from'}: --store postgresql://USER@HOST[:PORT]/DB (or $EDGELAT_STORE)")
    if as_name is not None:
        validate_name(as_name)
    with open_workspace(workspace, own_store=True) as ws, contextlib.closing(open_store(url)) as team:
        src, dst = (ws.store, team) if push else (team, ws.store)
        report = copy_device(src, dst, device, as_name)
        table = Table("rows", "added", "already there", title=f"{device} -> {report.device} in {dst.display}")
        for name, added in report.added.items():
            already = report.already.get(name)
            table.add_row(name, str(added), "-" if already is None else str(already))
        out.print(table)
        out.print(f"{report.total} rows added" if report.total else f"{dst.display} already had everything of {device}")


@data_app.command("push")
@handle_errors
def data_push(device: str, as_name: AsOpt = None, workspace: WorkspaceOpt = None, store: StoreOpt = None) -> None:
    """Copy a device's measurements from this workspace's own store to the team store (only what it lacks)."""
    _copy(device, as_name, workspace, store, push=True)


@data_app.command("pull")
@handle_errors
def data_pull(device: str, as_name: AsOpt = None, workspace: WorkspaceOpt = None, store: StoreOpt = None) -> None:
    """Copy a device's measurements from the team store into this workspace's own store (only what it lacks)."""
    _copy(device, as_name, workspace, store, push=False)


# -- serve -----------------------------------------------------------------------------
@app.command("serve")
@handle_errors
def serve_cmd(
    host: Annotated[str, typer.Option(help="Address to listen on (loopback by default; another exposes the workspace to that network).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8731,
    token_file: Annotated[
        Optional[Path], typer.Option("--token-file", help="File holding the bearer token (default: a new token, printed at start).")
    ] = None,
    max_upload_mb: Annotated[float, typer.Option("--max-upload-mb", help="Largest request body (ONNX upload), MB.")] = 200.0,
    max_archs: Annotated[int, typer.Option("--max-archs", help="Most architectures one batch may price.")] = 10_000,
    workspace: WorkspaceOpt = None,
    store: StoreOpt = None,
) -> None:
    """Serve the workspace's predictions over HTTP (JSON under /v1, docs at /docs) and a page at /."""
    import secrets
    import socket

    import uvicorn

    from edgelat.service import ServeSettings, create_app

    if token_file is not None:
        if not token_file.is_file():
            raise UsageError(f"--token-file {token_file}: no such file")
        token = token_file.read_text().strip()
        if len(token) < 16:
            raise UsageError(f"--token-file {token_file}: the token must be at least 16 characters, it has {len(token)}")
    else:
        token = secrets.token_urlsafe(24)
    if not 0 < port < 65536 or max_upload_mb <= 0 or max_archs < 1:
        raise UsageError("--port must be 1-65535, --max-upload-mb positive and --max-archs at least 1")
    with _ws(workspace, store) as ws:  # a workspace that cannot be opened is one line now, not a failed request later
        root, store = ws.root, ws.store.url if ws.store.shared else None
    try:  # a taken port or an address not of this host: one line, before uvicorn logs a traceback
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        raise UsageError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    settings = ServeSettings(root, token, max_upload_mb, max_archs, store=store)
    shown = f"[{host}]" if ":" in host else host
    err.print(f"serving workspace {root} on http://{shown}:{port}")
    if token_file is None:
        err.print(f"token: {token}")
    err.print(f"page: http://{shown}:{port}/?token={token}" if token_file is None else f"page: http://{shown}:{port}/ (token from {token_file})")
    uvicorn.run(create_app(settings), host=host, port=port, log_level="info", timeout_graceful_shutdown=5)


def main() -> None:
    """The ``edgelat`` entry point: a bad flag or value is one line on stderr and exit code 2."""
    try:  # typer vendors click (0.2x and later)
        from typer._click import exceptions as click_errors
    except ImportError:  # pragma: no cover - an older typer on plain click
        import importlib

        click_errors = importlib.import_module("click.exceptions")  # dynamic: type checkers use the vendored module above

    try:
        code = app(standalone_mode=False, prog_name="edgelat")
    except click_errors.NoArgsIsHelpError as exc:  # `edgelat device`: show what it takes
        exc.show()
        sys.exit(2)
    except click_errors.UsageError as exc:  # typer would draw a six-line box
        where = exc.ctx.command_path if exc.ctx is not None else "edgelat"
        err.print(f"[red]error:[/red] {exc.format_message()} (see `{where} --help`)", highlight=False, markup=True, soft_wrap=True)
        sys.exit(2)
    except typer.Abort:  # typer's own (vendored click has none), or click's with an older typer
        err.print("aborted", highlight=False)
        sys.exit(130)
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
