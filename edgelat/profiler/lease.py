"""Who runs a campaign: a lease in the store, so that two processes (two terminals, two hosts sharing a
workspace) never run one campaign at once.

The process that opens a campaign takes its lease (``campaigns.holder``: ``user@host:pid``, and
``campaigns.lease_until``) and a thread renews it every quarter of :data:`LEASE_S` while the campaign
runs; it is released when the run ends, however it ends. Another process asking for the campaign
(``profile --resume``) is refused while the lease is held, and takes it over only when the holder is gone:
its lease ran out (it stopped renewing: killed, or its host is down), or it was a process of this host
that no longer exists.
"""

from __future__ import annotations

import os
import socket
import sqlite3
import threading
import time

from edgelat.errors import UsageError
from edgelat.workspace import Workspace, measured_by, transaction

__all__ = ["LEASE_S", "CampaignLease", "holder_name", "take_lease"]

LEASE_S = 60.0


def holder_name() -> str:
    """This process, as a lease names it: ``user@host:pid``."""
    return f"{measured_by()}:{os.getpid()}"


def _gone(holder: str, until: float | None, now: float) -> bool:
    """The holder stopped renewing, or is a process of this host that has exited."""
    if until is None or now > until:
        return True
    who, _, pid = holder.rpartition(":")
    if who.rpartition("@")[2] == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # another user's live process
            return False
    return False


class CampaignLease:
    """A held lease on one campaign; renewed by a thread until :meth:`release`."""

    def __init__(self, ws: Workspace, campaign_id: int, holder: str, ttl: float) -> None:
        self.db_path, self.campaign_id, self.holder, self.ttl = ws.root / "edgelat.db", campaign_id, holder, ttl
        self._ws = ws
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{campaign_id}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        # The store's connection belongs to the thread that opened it: renewals go through one of their own.
        db = sqlite3.connect(self.db_path, timeout=30)
        try:
            while not self._stop.wait(self.ttl / 4):
                db.execute(
                    "UPDATE campaigns SET lease_until = ? WHERE id = ? AND holder = ?",
                    (time.time() + self.ttl, self.campaign_id, self.holder),
                )
                db.commit()
        finally:
            db.close()

    def release(self) -> None:
        """Stop renewing and give the campaign up (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        self._ws.db.execute(
            "UPDATE campaigns SET holder = NULL, lease_until = NULL WHERE id = ? AND holder = ?", (self.campaign_id, self.holder)
        )
        self._ws.db.commit()


def take_lease(ws: Workspace, campaign_id: int, ttl: float = LEASE_S) -> CampaignLease:
    """Take ``campaign_id``'s lease, or raise :class:`UsageError` naming the process that holds it."""
    me, now = holder_name(), time.time()
    with transaction(ws.db):
        row = ws.db.execute("SELECT holder, lease_until FROM campaigns WHERE id = ?", (campaign_id,)).fetchone()
        held_by, until = row["holder"], row["lease_until"]
        if held_by and held_by != me and not _gone(held_by, until, now):
            raise UsageError(
                f"campaign {campaign_id} is being run by {held_by} (it renews its lease every {ttl / 4:.0f} s; it is taken over "
                f"{until - now:.0f} s after that process stops): wait for it to end, or stop it"
            )
        ws.db.execute("UPDATE campaigns SET holder = ?, lease_until = ? WHERE id = ?", (me, now + ttl, campaign_id))
    return CampaignLease(ws, campaign_id, me, ttl)
