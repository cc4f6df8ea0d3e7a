"""NAS-Bench-201 as a search space: six cell edges, five ops each (15,625 architectures)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgelat.datasets import nb201
from edgelat.nas.spaces.base import SearchSpace, register_space

# (node, input node) of each gene, in the order architecture strings list them
_EDGES = ((1, 0), (2, 0), (2, 1), (3, 0), (3, 1), (3, 2))
_RESOLUTIONS = (32, 16, 8)  # per stage, for 32x32 input


@register_space
class NB201Space(SearchSpace):
    name = "nb201"
    description = "NAS-Bench-201 cells, CIFAR-10 macro network (3x32x32), 15,625 architectures"
    choices = (len(nb201.OPS),) * len(_EDGES)

    def decode(self, genes: Sequence[int] | np.ndarray) -> str:
        ops = [nb201.OPS[int(g)] for g in genes]
        nodes = tuple(tuple((ops[e], src) for e, (node, src) in enumerate(_EDGES) if node == j) for j in (1, 2, 3))
        return nb201.arch_to_str(nodes)

    def encode(self, arch: str) -> np.ndarray:
        parsed = nb201.parse_arch(arch)
        return np.array([nb201.OPS.index(dict((src, op) for op, src in parsed[node - 1])[src]) for node, src in _EDGES])

    def build(self, arch: str) -> Any:
        return nb201.build_nb201(arch)

    def input_shape(self, arch: str) -> tuple[int, ...]:
        return (1, 3, 32, 32)

    def output_depends_on_input(self, arch: str) -> bool:
        """False when no path of non-``none`` edges joins the cell input to its output.

        Such a network computes a constant; compilers that fold constants (TFLite, whose
        Pixel 3 latencies ship with edgelat) run almost nothing for it.
        """
        parsed = nb201.parse_arch(arch)
        reach = {0}
        for j, node in enumerate(parsed, start=1):
            if any(op != "none" and i in reach for op, i in node):
                reach.add(j)
        return len(parsed) in reach

    def blocks(self, arch: str) -> list[str]:
        parsed = nb201.parse_arch(arch)
        # Only nodes the cell output depends on run: the compiler drops the others as dead code.
        live = nb201.live_nodes(parsed)
        nodes = [",".join(f"{op}~{i}" for op, i in node) for j, node in enumerate(parsed, start=1) if j in live]
        keys = ["stem"]
        for stage in range(len(_RESOLUTIONS)):
            if stage > 0:
                keys.append(f"reduce{stage}")
            keys += [f"s{stage}:{node}" for node in nodes] * nb201.CELLS_PER_STAGE
        keys.append("head")
        return keys

    def build_block(self, key: str) -> tuple[Any, Any]:
        channels = nb201.STAGE_CHANNELS
        if key == "stem":
            return nb201.stem(), (1, 3, 32, 32)
        if key == "head":
            return nb201.head(), (1, channels[-1], _RESOLUTIONS[-1], _RESOLUTIONS[-1])
        if key.startswith("reduce"):
            stage = int(key[len("reduce") :])
            size = _RESOLUTIONS[stage - 1]
            return nb201.ResNetBasicBlock(channels[stage - 1], channels[stage]), (1, channels[stage - 1], size, size)
        stage_part, node = key.split(":")
        stage = int(stage_part[1:])
        size = _RESOLUTIONS[stage]
        edges = [(op, int(i)) for op, i in (e.split("~") for e in node.split(","))]
        # one input per earlier node (node j has j of them)
        return nb201.NodeBlock(edges, channels[stage]), [(1, channels[stage], size, size)] * len(edges)
