"""The device inventory: devices in the workspace store, how to reach them, their probes."""

from __future__ import annotations

import json
import re
import shutil
import socket
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any

from edgelat.errors import DuplicateDeviceError, UnknownDeviceError, UsageError
from edgelat.profiler.agent_client import AgentSession
from edgelat.profiler.presets import ADAPTED, DevicePreset, get_preset
from edgelat.profiler.recipes import get_recipe
from edgelat.profiler.transports import TRANSPORTS, Transport, TransportKind
from edgelat.workspace import Workspace

__all__ = [
    "default_recipe",
    "add_adapted_device",
    "Device",
    "add_device",
    "add_group",
    "agent_session",
    "connect",
    "get_device",
    "latest_probe",
    "list_devices",
    "probe_device",
    "remove_device",
    "trust_device",
]

LOCAL = "local"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


@dataclass(frozen=True)
class Device:
    """One device in the inventory."""

    name: str
    preset: str
    # How it is reached: a kind of edgelat.profiler.transports.TRANSPORTS ("local", "ssh", "none")...
    transport: str = "local"
    # ...and that kind's settings (SSH: host, port, user, key_file, jump).
    settings: dict[str, Any] = field(default_factory=dict)
    # Python interpreter on the device that runs the agent.
    python: str = "python3"
    # Threads for measurements; None means the preset's default.
    threads: int | None = None

    @property
    def transport_kind(self) -> TransportKind:
        return TRANSPORTS.get(self.transport)

    @property
    def is_local(self) -> bool:
        return self.transport == "local"

    @property
    def shares_host_cpu(self) -> bool:
        """This machine, directly or over SSH to a loopback address: host-side work (builds) competes with timing."""
        return self.transport_kind.shares_host_cpu(self.settings)

    @property
    def is_adapted(self) -> bool:
        """Known from end-to-end measurements only (``edgelat adapt``): nothing to connect to."""
        return self.preset == ADAPTED

    @property
    def is_group(self) -> bool:
        """A group of identical devices (:func:`add_group`): profiled through its members, one set of models."""
        return self.transport == "group"

    @property
    def members(self) -> list[str]:
        return list(self.settings.get("members", [])) if self.is_group else []

    @property
    def preset_info(self) -> DevicePreset:
        return get_preset(self.preset)

    @property
    def measure_threads(self) -> int:
        return self.threads or self.preset_info.default_threads

    def target(self, recipe: str) -> dict[str, Any]:
        """The TVM target kernels and networks are built for on this device with ``recipe``."""
        return get_recipe(recipe).target(self.preset_info.target())

    def address(self) -> str:
        if self.is_adapted:
            return "(adapted: predicted from another device, no connection)"
        return self.transport_kind.address(self.settings)


def _local_device() -> Device:
    return Device(name=LOCAL, preset="local", python=sys.executable)


def _local_settings(ws: Workspace) -> str:
    """The built-in device's settings: none in a workspace's own store; in a team store, the host it is (every
    host of a team sees one `local`: the first host's; the others reach their machine under a name of its own)."""
    return json.dumps({"host": socket.gethostname()} if ws.store.shared else {})


def _ensure_local(ws: Workspace) -> None:
    mine = _local_settings(ws)
    ws.store.insert_new("devices", [{"name": LOCAL, "preset": "local", "transport": "local", "settings": mine, "python": sys.executable}], ["name"])
    # A workspace moved between machines keeps pointing at the interpreter running now.
    ws.store.execute(
        "UPDATE devices SET python = :python WHERE name = :name AND transport = 'local' AND settings = :mine",
        {"python": sys.executable, "name": LOCAL, "mine": mine},
    )


def validate_name(name: str) -> str:
    if not _NAME.match(name):
        raise UsageError(f"bad device name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit")
    return name


def add_device(
    ws: Workspace,
    name: str,
    *,
    host: str,
    preset: str,
    port: int = 22,
    user: str | None = None,
    key_file: str | None = None,
    jump: str | None = None,
    python: str = "python3",
    threads: int | None = None,
) -> Device:
    """Add a device reached over SSH. Nothing connects yet (see :func:`trust_device`)."""
    validate_name(name)
    get_preset(preset)
    if preset == ADAPTED:
        raise UsageError("adapted devices have no connection and are created by `edgelat adapt NAME --from DEVICE --measurements CSV`")
    settings = TRANSPORTS.get("ssh").check({"host": host, "port": port, "user": user, "key_file": key_file, "jump": jump})
    if threads is not None and threads < 1:
        raise UsageError(f"bad thread count {threads}: must be at least 1")
    _ensure_local(ws)
    if _exists(ws, name):
        raise DuplicateDeviceError(f"device {name!r} already exists; remove it first or pick another name")
    device = Device(name=name, preset=preset, transport="ssh", settings=settings, python=python, threads=threads)
    ws.store.execute(
        "INSERT INTO devices (name, preset, transport, settings, python, threads) VALUES (:name, :preset, :transport, :settings, :python, :threads)",
        {"name": name, "preset": preset, "transport": device.transport, "settings": json.dumps(settings), "python": python, "threads": threads},
    )
    return device


def _exists(ws: Workspace, name: str) -> bool:
    return ws.store.first("SELECT 1 FROM devices WHERE name = :name", {"name": name}) is not None


def _row_to_device(row: Any) -> Device:
    return Device(row["name"], row["preset"], row["transport"], json.loads(row["settings"]), row["python"], row["threads"])


def list_devices(ws: Workspace) -> list[Device]:
    _ensure_local(ws)
    return [_row_to_device(r) for r in ws.store.rows("SELECT * FROM devices ORDER BY name != 'local', name")]


def get_device(ws: Workspace, name: str) -> Device:
    _ensure_local(ws)
    row = ws.store.first("SELECT * FROM devices WHERE name = :name", {"name": name})
    if row is None:
        known = ", ".join(d.name for d in list_devices(ws))
        raise UnknownDeviceError(f"no device named {name!r}; known devices: {known}")
    device = _row_to_device(row)
    if name == LOCAL and row["settings"] != _local_settings(ws):
        raise UsageError(
            f"in the team store {ws.store.display}, `local` is {device.settings.get('host')}, not this host "
            f"({socket.gethostname()}): add this machine under a name of its own (`edgelat device add NAME --host 127.0.0.1 "
            f"--preset local`), or profile it into this workspace's own store and `edgelat data push local --as NAME`"
        )
    return device


def add_adapted_device(ws: Workspace, name: str) -> Device:
    """Add a device with no connection, predicted through an adapter (see :mod:`edgelat.predictors.adapt`)."""
    validate_name(name)
    _ensure_local(ws)
    row = ws.store.first("SELECT preset FROM devices WHERE name = :name", {"name": name})
    if row is not None:
        if row["preset"] != ADAPTED:
            raise DuplicateDeviceError(f"device {name!r} already exists and is a {row['preset']} device; pick another name to adapt")
        return get_device(ws, name)
    ws.store.execute("INSERT INTO devices (name, preset, transport, python) VALUES (:name, :preset, 'none', 'python3')", {"name": name, "preset": ADAPTED})
    return Device(name=name, preset=ADAPTED, transport="none")


# Probe fields identical boards share (frequencies, temperatures and free memory move; these do not).
SAME_BOARD = ("arch", "cpu_model", "cpu_count", "mem_total_mb", "os_release", "python", "tvm_version")


def add_group(ws: Workspace, name: str, members: list[str]) -> tuple[Device, dict[str, dict[str, Any]]]:
    """Add a group of identical devices: every member an existing connected device of one preset, and their
    probes (taken now, and stored) agreeing on :data:`SAME_BOARD`. Returns the group and the members' probes."""
    validate_name(name)
    _ensure_local(ws)
    if _exists(ws, name):
        raise DuplicateDeviceError(f"device {name!r} already exists; remove it first or pick another name")
    if not members:
        raise UsageError("a group needs at least one member")
    if len(set(members)) != len(members):
        raise UsageError(f"a member is named twice: {' '.join(members)}")
    devices = [get_device(ws, m) for m in members]
    for d in devices:
        if d.is_group or d.is_adapted:
            raise UsageError(f"{d.name} is {'a group' if d.is_group else 'adapted (no connection)'}: members must be real devices")
    presets = sorted({d.preset for d in devices})
    if len(presets) > 1:
        raise UsageError(f"a group's members share one preset; these have {', '.join(presets)}")
    probes = {d.name: probe_device(ws, d.name) for d in devices}
    first = devices[0].name
    differ = [
        f"{key}: {first} {probes[first].get(key)!r}, {d.name} {probes[d.name].get(key)!r}"
        for d in devices[1:]
        for key in SAME_BOARD
        if probes[d.name].get(key) != probes[first].get(key)
    ]
    if differ:
        raise UsageError("the members are not identical boards (" + "; ".join(differ) + ")")
    group = Device(name=name, preset=presets[0], transport="group", settings={"members": list(members)})
    ws.store.execute(
        "INSERT INTO devices (name, preset, transport, settings, python) VALUES (:name, :preset, 'group', :settings, 'python3')",
        {"name": name, "preset": group.preset, "settings": json.dumps(group.settings)},
    )
    return group, probes


def remove_device(ws: Workspace, name: str) -> None:
    """Remove ``name`` and everything the workspace keeps of it: probes, campaigns, measurements and network
    measurements (the store cascades), and its models, adapter, block-price caches, tuning databases, searches,
    pruning and validation runs and exports. A new device of the same name starts clean. A removed member
    leaves its groups (what it measured for them stays theirs)."""
    if name == LOCAL:
        raise UsageError("the local device is built in and cannot be removed")
    get_device(ws, name)
    for group in [d for d in list_devices(ws) if name in d.members]:
        settings = {"members": [m for m in group.members if m != name]}
        ws.store.execute("UPDATE devices SET settings = :settings WHERE name = :name", {"settings": json.dumps(settings), "name": group.name})
    ws.store.execute("DELETE FROM devices WHERE name = :name", {"name": name})
    for folder in ws.DEVICE_FOLDERS:
        shutil.rmtree(ws.device_dir(folder, name), ignore_errors=True)


def connect(ws: Workspace, device: Device, *, trust_new_host: bool = False) -> Transport:
    """Open a transport to ``device``: local, or SSH with host keys checked."""
    if device.is_adapted:
        raise UsageError(
            f"{device.name} was adapted from end-to-end measurements (edgelat adapt) and has no connection: it can be "
            f"predicted, not profiled or measured; add the real device with `edgelat device add` to do that"
        )
    hint = f"`edgelat device trust {device.name}` (or --trust-new-host)"
    return device.transport_kind.open(device.settings, ws.known_hosts, trust_new_host=trust_new_host, name=device.name, trust_hint=hint)


def trust_device(ws: Workspace, name: str) -> None:
    """Connect once and record the device's (and jump host's) key if it is new."""
    device = get_device(ws, name)
    connect(ws, device, trust_new_host=True).close()


def agent_env(threads: int) -> dict[str, str]:
    """The environment an agent measures in: a fixed thread count for TVM (and OpenMP)."""
    return {"TVM_NUM_THREADS": str(threads), "OMP_NUM_THREADS": str(threads)}


@contextmanager
def agent_session(ws: Workspace, device: Device, *, trust_new_host: bool = False, threads: int | None = None) -> Iterator[AgentSession]:
    """A started agent on ``device``; stopped and cleaned up on exit."""
    env = agent_env(threads or device.measure_threads)
    with connect(ws, device, trust_new_host=trust_new_host) as transport, AgentSession(transport, python=device.python, env=env) as agent:
        yield agent


def probe_device(ws: Workspace, name: str, *, trust_new_host: bool = False) -> dict[str, Any]:
    """Probe ``name`` through the agent, store the result with a timestamp, and return it."""
    device = get_device(ws, name)
    with agent_session(ws, device, trust_new_host=trust_new_host) as agent:
        data = agent.request("probe", timeout=300)
        data["agent_version"] = agent.hello.get("agent_version")
    data["device"] = device.name
    data["preset"] = device.preset
    stored = ws.store.insert("probes", {"device": device.name, "agent_version": data["agent_version"], "data": json.dumps(data)})
    data["taken_at"] = stored["taken_at"]
    return data


def latest_probe(ws: Workspace, name: str) -> dict[str, Any] | None:
    row = ws.store.first("SELECT data, taken_at FROM probes WHERE device = :name ORDER BY id DESC LIMIT 1", {"name": name})
    if row is None:
        return None
    data: dict[str, Any] = json.loads(row["data"])
    data["taken_at"] = row["taken_at"]
    return data


def device_dict(device: Device) -> dict[str, Any]:
    return {**asdict(device), "address": device.address(), "threads": device.measure_threads}


def default_recipe(ws: Workspace, device: str) -> str:
    """The recipe most of ``device``'s kernel measurements were made with: the one its models are trained on
    unless a recipe is named."""
    if get_device(ws, device).is_adapted:
        raise UsageError(f"{device} is adapted from another device's models: it has no kernel measurements of its own to train on")
    row = ws.store.first(
        "SELECT recipe, COUNT(*) n FROM measurements WHERE device = :device AND status = 'ok' GROUP BY recipe ORDER BY n DESC LIMIT 1",
        {"device": device},
    )
    if row is None:
        raise UsageError(f"{device} has no kernel measurements: run `edgelat profile {device}` first")
    return str(row["recipe"])
