"""Profile squeeze-excite gate kernels: what a campaign draws for them, more of them.

A gate is a 1x1 conv on one pixel whose kernel also scales the whole map (``multiply.x49``). A default
campaign draws gates only as perturbed seeds of the zoo's (about 8% of conv2d seeds). This profiles
``--samples`` such draws (the conv2d sampler seeded with the zoo's gate configs only, so maps, channels and
activations are perturbed as a campaign perturbs them; never the validation networks' exact kernels unless a
draw lands on one) into a workspace, so its models learn what a gate costs.

Usage:
    python bench/se_gates.py --workspace ~/.cache/edgelat-tuned [--samples 60] [--seed 0] [--recipe tuned]
Then ``edgelat train`` and ``edgelat validate`` on the workspace.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

os.environ.setdefault("TVM_NUM_THREADS", "1")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from edgelat.datasets.shapes import real_network_configs  # noqa: E402
from edgelat.ops import get_op  # noqa: E402
from edgelat.profiler.campaign import ProfileConfig, profile  # noqa: E402
from edgelat.workspace import open_workspace  # noqa: E402


def gate_draws(samples: int, seed: int) -> list[dict]:
    """``samples`` distinct conv2d draws seeded with the zoo's gate configs (those that scale a map)."""
    spec = get_op("conv2d")
    gates = [c for c in real_network_configs()["conv2d"] if "multiply.x" in c["epilogue"]]
    rng = np.random.default_rng(seed)
    drawn: dict[str, dict] = {}
    while len(drawn) < samples:
        cfg = spec.sample(rng, gates)
        if "multiply.x" in cfg["epilogue"]:  # the sampler draws from scratch a fifth of the time
            drawn[repr(sorted(cfg.items()))] = cfg
    return list(drawn.values())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workspace", type=Path, required=True)
    parser.add_argument("--samples", type=int, default=60)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--recipe", default="tuned")
    parser.add_argument("--minutes", type=float, default=None)
    args = parser.parse_args()
    configs = gate_draws(args.samples, args.seed)
    print(f"profiling {len(configs)} gate kernels ({args.recipe})", flush=True)
    with open_workspace(args.workspace) as ws:
        result = profile(ws, "local", ProfileConfig(configs=tuple(("conv2d", c) for c in configs), recipe=args.recipe, minutes=args.minutes))
    print(f"campaign {result.campaign_id}: {result.status}, {result.measured} measured, {result.failed} failed", flush=True)


if __name__ == "__main__":
    main()
