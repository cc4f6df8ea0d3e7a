"""Kernel configurations of real networks: where profiling samples its shapes.

The zoo's networks at several input resolutions are imported into Relax, fused exactly as
a deployment build fuses them, and each kernel matched to a registry kind; the configs are
saved in ``data/kernel_shapes.json`` (regenerate with ``python -m edgelat.datasets.shapes``).
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import Any

__all__ = ["SHAPES_FILE", "extract_configs", "real_network_configs"]

SHAPES_FILE = Path(__file__).parent / "data" / "kernel_shapes.json"
RESOLUTIONS = (128, 192)


@functools.cache
def _load() -> dict[str, list[dict[str, Any]]]:
    if not SHAPES_FILE.exists():
        return {}
    return json.loads(SHAPES_FILE.read_text())["configs"]


def real_network_configs() -> dict[str, list[dict[str, Any]]]:
    """Op kind -> distinct kernel configs seen in the zoo's networks."""
    return {op: list(cfgs) for op, cfgs in _load().items()}


def extract_configs(models: list[tuple[str, int]] | None = None) -> dict[str, Any]:
    """Import every (model, resolution) and collect the configs of its matched kernels."""
    import torch

    from edgelat.datasets import nb201, zoo
    from edgelat.ops import config_id
    from edgelat.ops.network import network_kernels, relax_from_torch

    if models is None:
        models = [(name, res) for name in zoo.list_models() for res in RESOLUTIONS]
    configs: dict[str, dict[str, dict[str, Any]]] = {}
    unmatched: dict[str, int] = {}
    sources = [(name, res, lambda n=name: zoo.create_model(n)) for name, res in models]
    nb_archs = [
        "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|skip_connect~0|nor_conv_3x3~1|nor_conv_3x3~2|",
        "|nor_conv_1x1~0|+|avg_pool_3x3~0|nor_conv_1x1~1|+|skip_connect~0|nor_conv_3x3~1|avg_pool_3x3~2|",
    ]
    sources += [(f"nb201:{a}", 32, lambda a=a: nb201.build_nb201(a)) for a in nb_archs]
    for name, res, factory in sources:
        torch.manual_seed(0)
        model = factory()
        try:
            kernels = network_kernels(relax_from_torch(model, torch.randn(1, 3, res, res)))
        except Exception as exc:  # noqa: BLE001 - report and go on: one model must not stop the survey
            print(f"skipped {name}@{res}: {type(exc).__name__}: {exc}")
            continue
        for k in kernels:
            if k.op is None:
                unmatched[k.group.name] = unmatched.get(k.group.name, 0) + 1
            else:
                configs.setdefault(k.op, {})[config_id(k.op, k.config or {})] = k.config or {}
        print(f"{name}@{res}: {len(kernels)} kernels, {sum(k.op is None for k in kernels)} unmatched")
    return {
        "configs": {op: list(c.values()) for op, c in sorted(configs.items())},
        "unmatched": dict(sorted(unmatched.items(), key=lambda kv: -kv[1])),
    }


if __name__ == "__main__":
    data = extract_configs()
    SHAPES_FILE.parent.mkdir(parents=True, exist_ok=True)
    SHAPES_FILE.write_text(json.dumps(data, indent=0, sort_keys=True))
    print({op: len(c) for op, c in data["configs"].items()})
    print("unmatched:", list(data["unmatched"].items())[:20])
