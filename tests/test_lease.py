"""A campaign's lease: one process runs a campaign at a time; it is taken over only when its holder is gone."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest

from edgelat.errors import UsageError
from edgelat.profiler import lease
from edgelat.profiler.campaign import ProfileConfig, open_campaign, profile
from edgelat.profiler.inventory import get_device
from edgelat.workspace import Workspace, measured_by


def _holder(ws: Workspace, campaign_id: int) -> tuple[str | None, float | None]:
    row = ws.store.first("SELECT holder, lease_until FROM campaigns WHERE id = :id", {"id": campaign_id})
    assert row is not None
    return row["holder"], row["lease_until"]


def _set_holder(ws: Workspace, campaign_id: int, holder: str | None, until: float | None) -> None:
    ws.store.execute("UPDATE campaigns SET holder = :holder, lease_until = :until WHERE id = :id", {"holder": holder, "until": until, "id": campaign_id})


def test_a_held_campaign_is_refused_and_taken_over_only_when_its_holder_is_gone(any_ws: Workspace) -> None:
    ws = any_ws
    cfg = ProfileConfig(ops=("dense",), samples=2)
    campaign_id, _, _, _, held = open_campaign(ws, get_device(ws, "local"), cfg, resume=False)
    assert _holder(ws, campaign_id)[0] == lease.holder_name()
    held.release()
    held.release()  # idempotent
    assert _holder(ws, campaign_id) == (None, None)
    ws.store.execute("UPDATE campaigns SET status = 'interrupted' WHERE id = :id", {"id": campaign_id})
    # Another host's live process holds it: `profile --resume` is refused before anything runs, in one line.
    _set_holder(ws, campaign_id, "alice@elsewhere:4242", time.time() + 60)
    with pytest.raises(UsageError, match=r"campaign \d+ is being run by alice@elsewhere:4242"):
        profile(ws, "local", cfg, resume=True)
    assert _holder(ws, campaign_id)[0] == "alice@elsewhere:4242"
    # Its lease ran out (it stopped renewing): taken over.
    _set_holder(ws, campaign_id, "alice@elsewhere:4242", time.time() - 1)
    taken = lease.take_lease(ws, campaign_id)
    assert _holder(ws, campaign_id)[0] == lease.holder_name()
    taken.release()
    # A process of this host that has exited, its lease still running: taken over at once.
    done = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    _set_holder(ws, campaign_id, f"{measured_by()}:{int(done.stdout)}", time.time() + 60)
    lease.take_lease(ws, campaign_id).release()
    # A live process of this host (here: this test's parent) keeps it.
    import os

    _set_holder(ws, campaign_id, f"{measured_by()}:{os.getppid()}", time.time() + 60)
    with pytest.raises(UsageError, match="is being run by"):
        lease.take_lease(ws, campaign_id)


def test_the_lease_is_renewed_while_the_campaign_runs(any_ws: Workspace) -> None:
    ws = any_ws
    campaign_id, _, _, _, held = open_campaign(ws, get_device(ws, "local"), ProfileConfig(ops=("dense",), samples=2), resume=False)
    held.release()
    renewing = lease.take_lease(ws, campaign_id, ttl=0.4)
    first = _holder(ws, campaign_id)[1]
    assert first is not None
    time.sleep(0.9)  # about three renewals
    later = _holder(ws, campaign_id)[1]
    assert later is not None and later > first + 0.3
    renewing.release()
    assert _holder(ws, campaign_id) == (None, None)


@pytest.mark.timings_ignored
@pytest.mark.slow
def test_two_processes_never_run_one_campaign_and_a_killed_one_is_taken_over(tmp_path: object, store_url: str | None) -> None:
    """Real processes, on each engine: while `edgelat profile` runs, `profile --resume` from another terminal is
    refused in one line; once the first is killed (SIGKILL: no clean-up), the resume takes the campaign over and
    finishes it, every planned kernel stored once."""
    import os
    import signal
    from pathlib import Path

    from edgelat.workspace import open_workspace

    root = Path(str(tmp_path)) / "ws"
    base = [sys.executable, "-m", "edgelat.cli", "profile", "local", "--workspace", str(root), *(["--store", store_url] if store_url else [])]
    first = subprocess.Popen([*base, "--ops", "dense,activation", "--samples", "16", "--repeat", "3", "--min-repeat-ms", "20"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    try:
        deadline = time.time() + 120
        while time.time() < deadline:  # until it has stored a few rows
            if root.joinpath("edgelat.db").exists() or store_url:
                with open_workspace(root, store_url) as ws:
                    if ws.store.scalar("SELECT COUNT(*) FROM measurements") >= 3:
                        break
            time.sleep(0.5)
        # Held still (its lease runs on, at least 45 s from its last renewal), so it cannot finish its plan while the
        # second process starts: on a fast machine it did, and there was nothing left to take over.
        os.kill(first.pid, signal.SIGSTOP)
        second = subprocess.run([*base, "--resume"], capture_output=True, text=True, timeout=120)
        assert second.returncode == 2 and "is being run by" in second.stderr and f":{first.pid}" in second.stderr, second.stderr
        assert len(second.stderr.strip().splitlines()) <= 2  # one line (rich may fold it)
        os.kill(first.pid, signal.SIGKILL)
        first.wait(timeout=30)
        resumed = subprocess.run([*base, "--resume"], capture_output=True, text=True, timeout=600)
        assert resumed.returncode == 0, resumed.stderr
    finally:
        if first.poll() is None:
            first.kill()
    with open_workspace(root, store_url) as ws:
        (campaign,) = ws.store.rows("SELECT id, plan, status, holder FROM campaigns")
        rows = ws.store.rows("SELECT config_id FROM measurements WHERE campaign_id = :id", {"id": campaign["id"]})
    import json

    assert campaign["status"] == "done" and campaign["holder"] is None
    assert sorted(r["config_id"] for r in rows) == sorted(json.loads(campaign["plan"]))  # each planned kernel once
