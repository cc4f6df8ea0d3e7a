"""Where a network's time lies between its kernels timed alone two ways, side by side in one run: each round times
every distinct kernel of the networks `llc` (weights and output in the last-level cache) and `flushed` (weights and
output in memory; the input, the first argument, left where it is), then the networks end to end, in a new order.
A network's share of the way, (network - sum llc) / (sum flushed - sum llc), says which cache state its kernels
meet in it. The kernels are those of `bench/tuned_in_place.py`'s CSV (its ``config`` column); the timing
campaigns are deleted afterwards, but the network measurements stay in the workspace: run it on a copy.

Usage: python bench/context_bounds.py --workspace COPY_OF_WS [--kernels bench/out/in_place_alone.csv] [--rounds 3]
       [--stem context_bounds]
Writes bench/out/STEM.{json,csv}.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import random
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path
from typing import Any

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from _workspace import OUT, delete_campaign, write_outputs  # noqa: E402  (bench/ is the script's folder)

from edgelat.ops.network import relax_from_torch  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig, profile  # noqa: E402
from edgelat.profiler.e2e import measure_network  # noqa: E402
from edgelat.profiler.recipes import get_recipe  # noqa: E402
from edgelat.workflows.validate import validation_networks  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402

WAYS = ("llc", "flushed")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--kernels", type=Path, default=OUT / "in_place_alone.csv", help="tuned_in_place.py's CSV")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--device", default="local")
    parser.add_argument("--stem", default="context_bounds", help="Output file name in bench/out (without suffix).")
    args = parser.parse_args()
    with open(args.kernels, newline="") as f:
        instances = [r for r in csv.DictReader(f) if r["config_id"]]
    plan = {r["config_id"]: (r["op"], json.loads(r["config"])) for r in instances}
    mods = {}
    for name, factory, resolution in validation_networks(",".join(dict.fromkeys(r["network"] for r in instances))):
        torch.manual_seed(0)  # validate's weights
        mods[name] = relax_from_torch(factory(), torch.randn(1, 3, resolution, resolution))
    kernel_ms: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    network_ms: dict[str, list[float]] = defaultdict(list)
    kind = type(get_recipe("tuned"))
    own = kind.caches
    rng = random.Random(0)
    with open_workspace(args.workspace) as ws:
        for round_ in range(args.rounds):
            for way in WAYS if round_ % 2 == 0 else WAYS[::-1]:
                kind.caches = way  # the way profile() times the recipe's kernels
                start = time.time()
                try:
                    result = profile(ws, args.device, ProfileConfig(configs=tuple(plan.values()), recipe="tuned", threads=1))
                finally:
                    kind.caches = own
                try:
                    for row in ws.store.rows(
                        "SELECT config_id, median_ms FROM measurements WHERE campaign_id = :c AND status = 'ok'", {"c": result.campaign_id}
                    ):
                        kernel_ms[row["config_id"]][way].append(row["median_ms"])
                finally:
                    delete_campaign(ws, result.campaign_id)
                print(f"round {round_ + 1}: {len(plan)} kernels {way} in {time.time() - start:.0f} s", flush=True)
            order = list(mods)
            rng.shuffle(order)
            for name in order:
                measured = measure_network(ws, args.device, mods[name], name=name, recipe="tuned", threads=1, per_kernel=False)
                network_ms[name].append(measured.median_ms)
            print(f"round {round_ + 1}: networks " + ", ".join(f"{n} {network_ms[n][-1]:.3f}" for n in mods), flush=True)
    rows: list[dict[str, Any]] = []
    for name in mods:
        ids = [r["config_id"] for r in instances if r["network"] == name]
        timed = [c for c in ids if all(kernel_ms[c][w] for w in WAYS)]
        sums = {w: sum(statistics.median(kernel_ms[c][w]) for c in timed) for w in WAYS}
        net = statistics.median(network_ms[name])
        rows.append({
            "network": name, "kernels": len(ids), "kernels_untimed": len(ids) - len(timed),
            "llc_ms": sums["llc"], "flushed_ms": sums["flushed"], "network_ms": net,
            "network_rounds_ms": json.dumps([round(x, 4) for x in network_ms[name]]),
            "network_over_llc": net / sums["llc"], "flushed_over_llc": sums["flushed"] / sums["llc"],
            "share_of_way": (net - sums["llc"]) / (sums["flushed"] - sums["llc"]),
        })  # fmt: skip
        print(f"{name}: network / llc {rows[-1]['network_over_llc']:.3f}, share of the way to flushed {rows[-1]['share_of_way']:.2f}")
    summary = {"when": time.strftime("%Y-%m-%d %H:%M"), "rounds": args.rounds, "kernels": len(plan), "networks": len(mods)}
    write_outputs(args.stem, summary, rows)


if __name__ == "__main__":
    main()
