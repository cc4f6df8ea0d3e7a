"""The workspace: one directory that holds all of edgelat's state.

Resolution order: an explicit path (``--workspace DIR``), else ``$EDGELAT_HOME``, else
``$XDG_DATA_HOME/edgelat`` (``~/.local/share/edgelat``). Inside it:

- ``edgelat.db``: the store (:mod:`edgelat.store`), SQLite in WAL mode (devices, probes, campaigns, kernel
  configurations, measurements). Every write is committed as it happens. With a team store
  (``--store postgresql://...`` or ``$EDGELAT_STORE``) the store is that database instead.
- ``known_hosts``: SSH host keys this workspace trusts.
- ``cache/``: content-addressed build cache; ``models/``, ``tuning/``...: what is derived from the store's
  measurements, per device. With a team store these live under ``stores/<server>/<database>/<host>/``: files
  made from another store's data never mix with the embedded store's, and two hosts sharing a workspace
  directory (a network home) never overwrite each other's.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass
from pathlib import Path

from edgelat.errors import UsageError
from edgelat.store import Store, open_store, store_url

__all__ = ["Workspace", "default_workspace_dir", "measured_by", "open_workspace"]

def measured_by() -> str:
    """``user@host`` of this process, as measurement rows record it (the uid where the user has no name)."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid without a passwd entry
        user = str(os.getuid())
    return f"{user}@{socket.gethostname()}"


def default_workspace_dir() -> Path:
    env = os.environ.get("EDGELAT_HOME")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(base) / "edgelat"


@dataclass
class Workspace:
    """A workspace directory and its store."""

    root: Path
    store: Store

    @property
    def files(self) -> Path:
        """Where files derived from the store live: the workspace itself with its own store; with a team store,
        a folder of that store (server and database) and this host."""
        if not self.store.shared:
            return self.root
        url = self.store.engine.url
        if self.store.dialect == "sqlite":  # a SQLite file as a team store (on a shared disk)
            server, database = "sqlite", re.sub(r"[^A-Za-z0-9._-]", "_", str(url.database).strip("/"))
        else:
            server, database = re.sub(r"[^A-Za-z0-9._-]", "_", f"{url.host or 'socket'}_{url.port or 5432}"), str(url.database)
        return self.root / "stores" / server / database / socket.gethostname()

    @property
    def known_hosts(self) -> Path:
        return self.root / "known_hosts"

    @property
    def cache_dir(self) -> Path:
        return self.files / "cache"

    @property
    def models_dir(self) -> Path:
        return self.files / "models"

    def block_kernels_file(self, space: str, version: str) -> Path:
        """The kernels of a search space's blocks (no device's, no model's: what any device's model prices)."""
        return self.files / "blocks" / f"{space}-{version}.json"

    # Everything a workspace keeps of one device lives in a folder named after it under each of these,
    # so `device remove` can remove all of it (a new device of the same name starts clean).
    DEVICE_FOLDERS = ("models", "oracle", "tuning", "searches", "pruned", "validation", "exports")

    def device_dir(self, folder: str, device: str) -> Path:
        """``device``'s folder under ``folder`` (one of :attr:`DEVICE_FOLDERS`)."""
        assert folder in self.DEVICE_FOLDERS, folder
        return self.files / folder / device

    def model_dir(self, device: str, recipe: str) -> Path:
        """The kernel models of ``device`` trained on its ``recipe`` measurements."""
        return self.device_dir("models", device) / recipe

    def adapter_file(self, device: str) -> Path:
        """The adapter of a device known only from end-to-end measurements (``edgelat adapt``)."""
        return self.device_dir("models", device) / "adapted.json"

    def tuning_dir(self, device: str) -> Path:
        """MetaSchedule's tuning databases for ``device``."""
        return self.device_dir("tuning", device)

    def oracle_dir(self, device: str, recipe: str) -> Path:
        """Block prices of search spaces, cached per trained model."""
        return self.device_dir("oracle", device) / recipe

    def run_dir(self, folder: str, device: str, name: str) -> Path:
        """Where a search, pruning or validation run of ``device`` writes its outputs by default."""
        return self.device_dir(folder, device) / f"{name}-{time.strftime('%Y%m%d-%H%M%S')}"

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_workspace(path: str | os.PathLike[str] | None = None, store: str | None = None, *, own_store: bool = False) -> Workspace:
    """Open (creating if needed) the workspace at ``path`` or the default location, with the team store at
    the URL ``store`` (else ``$EDGELAT_STORE``, else the workspace's own SQLite file; with ``own_store``, that file
    whatever the environment says).

    Example:
        >>> ws = open_workspace("/tmp/edgelat-ws")  # doctest: +SKIP
        >>> ws.store.rows("SELECT name FROM devices")  # doctest: +SKIP
    """
    root = Path(path).expanduser() if path is not None else default_workspace_dir()
    source = "--workspace" if path is not None else "$EDGELAT_HOME" if os.environ.get("EDGELAT_HOME") else "the default workspace"
    blocker = next((p for p in (root, *root.parents) if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise UsageError(f"{source} {root} cannot be a workspace: {blocker} is a file, not a directory")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"cannot create the workspace {root} ({source}): {exc.strerror}") from None
    return Workspace(root=root.resolve(), store=open_store(None if own_store else store_url(store), sqlite_path=root / "edgelat.db"))
