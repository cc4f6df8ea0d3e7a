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

import logging
import os
import socket
import threading
import time

from edgelat.errors import StoreLostError, UsageError
from edgelat.workspace import Workspace, measured_by

__all__ = ["LEASE_S", "CampaignLease", "holder_name", "take_lease"]

LEASE_S = 60.0
log = logging.getLogger(__name__)


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
        self.campaign_id, self.holder, self.ttl = campaign_id, holder, ttl
        self._ws = ws
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._renew, name=f"lease-{campaign_id}", daemon=True)
        self._thread.start()

    def _renew(self) -> None:
        while not self._stop.wait(self.ttl / 4):
            try:
                self._ws.store.execute(
                    "UPDATE campaigns SET lease_until = :until WHERE id = :id AND holder = :holder",
                    {"until": time.time() + self.ttl, "id": self.campaign_id, "holder": self.holder},
                )
            except StoreLostError as exc:  # tried again next time; the campaign's own writes fail and say so
                log.warning("could not renew the lease of campaign %d: %s", self.campaign_id, exc)

    def release(self) -> None:
        """Stop renewing and give the campaign up (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        self._thread.join()
        try:
            self._ws.store.execute(
                "UPDATE campaigns SET holder = NULL, lease_until = NULL WHERE id = :id AND holder = :holder",
                {"id": self.campaign_id, "holder": self.holder},
            )
        except StoreLostError as exc:  # the lease runs out by itself, and this process's exit frees it at once
            log.warning("could not release the lease of campaign %d: %s", self.campaign_id, exc)


def take_lease(ws: Workspace, campaign_id: int, ttl: float = LEASE_S) -> CampaignLease:
    """Take ``campaign_id``'s lease, or raise :class:`UsageError` naming the process that holds it."""
    me, now = holder_name(), time.time()
    with ws.store.transaction():
        row = ws.store.lock_row("campaigns", {"id": campaign_id})
        assert row is not None, campaign_id
        held_by, until = row["holder"], row["lease_until"]
        if held_by and held_by != me and not _gone(held_by, until, now):
            raise UsageError(
                f"campaign {campaign_id} is being run by {held_by} (it renews its lease every {ttl / 4:.0f} s; it is taken over "
                f"{until - now:.0f} s after that process stops): wait for it to end, or stop it"
            )
        ws.store.execute("UPDATE campaigns SET holder = :holder, lease_until = :until WHERE id = :id", {"holder": me, "until": now + ttl, "id": campaign_id})
    return CampaignLease(ws, campaign_id, me, ttl)
