"""A fleet campaign's kernels per minute with 1 and 2 members, side by side in one run on this machine.

The members are this machine through two private sshd servers on 127.0.0.1 (tests/sshd.py), grouped with
`edgelat device group add`; each run profiles the same plan (default recipe, conv2d/dwconv2d/dense) into
a fresh workspace and build cache, so both include their builds. Loopback members share this host's CPU:
builds never run while a member times, and two members time on the machine's two cores at once (what
real boards would do on their own cores). Saves bench/out/fleet_throughput.json.

Usage: python bench/fleet_throughput.py [--samples 12]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/sshd.py

from bench._workspace import write_outputs  # noqa: E402
from edgelat.profiler import inventory  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig  # noqa: E402
from edgelat.profiler.fleet import profile_group  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402
from tests.sshd import start_sshd  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=12, help="configs per op kind")
    args = parser.parse_args()
    cfg = ProfileConfig(ops=("conv2d", "dwconv2d", "dense"), samples=args.samples, weighted=False)
    rows = []
    with tempfile.TemporaryDirectory(prefix="edgelat-fleet-") as tmp:
        servers = [start_sshd(Path(tmp) / f"sshd{i}") for i in range(2)]
        try:
            for members in (1, 2):
                with open_workspace(Path(tmp) / f"ws{members}") as ws:
                    names = []
                    for i, server in enumerate(servers[:members]):
                        inventory.add_device(ws, f"board{i}", host="127.0.0.1", port=server.port, user=server.user,
                                             key_file=str(server.client_key), preset="local", python=sys.executable)  # fmt: skip
                        inventory.trust_device(ws, f"board{i}")
                        names.append(f"board{i}")
                    group, _ = inventory.add_group(ws, "fleet", names)
                    start = time.perf_counter()
                    result, report = profile_group(ws, group, cfg)
                    elapsed = time.perf_counter() - start
                row = {"members": members, "kernels": result.measured, "failed": result.failed, "seconds": round(elapsed, 1),
                       "per_minute": round(result.measured / elapsed * 60, 1), "rows_per_member": report.rows,
                       "sentinels_before": report.deviations.get("before"), "flagged": sorted(report.flagged)}  # fmt: skip
                print(row, flush=True)
                rows.append(row)
        finally:
            for server in servers:
                server.stop()
    speedup = rows[1]["per_minute"] / rows[0]["per_minute"]
    print(f"2 members / 1 member: {speedup:.2f}x kernels per minute")
    write_outputs("fleet_throughput", {"when": time.strftime("%Y-%m-%d"), "plan": cfg.ops, "samples": args.samples,
                                       "speedup_2_over_1": speedup}, rows)  # fmt: skip


if __name__ == "__main__":
    main()
