"""Does a profile taken in stretches carry each stretch's machine speed? Kernels of each earlier campaign of a
workspace are timed again now, all in one shuffled campaign, in R rounds; per source campaign, the median of
(time now / time then). Stretches timed at different machine speeds would show as campaigns whose ratios
differ by more than the rounds move them.

Tuned kernels are built from their tuning records (nothing is tuned again). The re-timing campaigns are
deleted afterwards unless --keep, so the workspace's training data is unchanged.

Usage: python bench/profile_drift.py --workspace WS [--campaigns 1,3,4] [--per-campaign 16] [--rounds 2]
       [--recipe tuned]
Writes bench/out/profile_drift.{json,csv}.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from _workspace import delete_campaign, write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.profiler.campaign import ProfileConfig, profile  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--campaigns", default="", help="comma-separated ids (default: every campaign with such kernels)")
    parser.add_argument("--per-campaign", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--recipe", default="tuned")
    parser.add_argument("--ops", default="conv2d,dwconv2d,dense")
    parser.add_argument("--keep", action="store_true", help="keep the re-timing campaigns' measurements")
    args = parser.parse_args()
    rng = random.Random(0)
    ops = args.ops.split(",")
    with open_workspace(args.workspace) as ws:
        rows = [
            dict(r)
            for r in ws.store.rows(
                """SELECT m.campaign_id, m.config_id, m.op, m.median_ms, m.measured_at, k.params FROM measurements m
                   JOIN kernel_configs k USING (config_id) WHERE m.device = 'local' AND m.recipe = :recipe
                   AND m.status = 'ok' AND m.caches = :caches AND m.median_ms BETWEEN 0.02 AND 3""",
                {"recipe": args.recipe, "caches": get_recipe(args.recipe).caches},
            )
            if r["op"] in ops
        ]
        wanted = {int(c) for c in args.campaigns.split(",") if c}
        by_campaign: dict[int, list[dict[str, Any]]] = {}
        for r in rows:
            if not wanted or r["campaign_id"] in wanted:
                by_campaign.setdefault(r["campaign_id"], []).append(r)
        picked: list[dict[str, Any]] = []
        for campaign in sorted(by_campaign):
            candidates = by_campaign[campaign]
            rng.shuffle(candidates)
            picked += candidates[: args.per_campaign]
        out: list[dict[str, Any]] = []
        made: list[int] = []
        try:
            for rd in range(args.rounds):
                plan = [(r["op"], json.loads(r["params"])) for r in picked]
                rng.shuffle(plan)
                result = profile(ws, "local", ProfileConfig(configs=tuple(plan), recipe=args.recipe))
                made.append(result.campaign_id)
                now = {
                    r["config_id"]: r["median_ms"]
                    for r in ws.store.rows("SELECT config_id, median_ms FROM measurements WHERE campaign_id = :c AND status = 'ok'", {"c": result.campaign_id})
                }
                for r in picked:
                    if r["config_id"] in now:
                        out.append({"round": rd + 1, "campaign": r["campaign_id"], "then_at": r["measured_at"], "op": r["op"],
                                    "config_id": r["config_id"], "then_ms": r["median_ms"], "now_ms": now[r["config_id"]],
                                    "ratio": now[r["config_id"]] / r["median_ms"]})  # fmt: skip
                print(f"round {rd + 1}: {result.measured} kernels", flush=True)
        finally:
            if not args.keep:
                for c in made:
                    delete_campaign(ws, c)
    summary: dict[str, Any] = {"when": time.strftime("%Y-%m-%d %H:%M"), "recipe": args.recipe, "rounds": args.rounds, "campaigns": {}}
    for campaign in sorted(by_campaign):
        mine = [o for o in out if o["campaign"] == campaign]
        if not mine:
            continue
        per_round = [statistics.median(o["ratio"] for o in mine if o["round"] == rd + 1) for rd in range(args.rounds)]
        ratios = sorted(o["ratio"] for o in mine)
        summary["campaigns"][campaign] = {
            "kernels": len({o["config_id"] for o in mine}),
            "timed_then": f"{min(o['then_at'] for o in mine)[:16]} to {max(o['then_at'] for o in mine)[:16]}",
            "median_ratio_per_round": per_round,
            "median_ratio": statistics.median(ratios),
            "ratio_p25_p75": [ratios[len(ratios) // 4], ratios[3 * len(ratios) // 4]],
        }
        print(campaign, summary["campaigns"][campaign], flush=True)
    write_outputs("profile_drift", summary, out)


if __name__ == "__main__":
    main()
