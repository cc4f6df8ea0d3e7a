"""The FBNet space (HW-NAS-Bench's CIFAR version): 22 layers, nine choices each."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from edgelat.datasets import fbnet
from edgelat.nas.spaces.base import SearchSpace, register_space


@register_space
class FBNetSpace(SearchSpace):
    name = "fbnet"
    description = "FBNet's 22 searchable layers, CIFAR-100 adaptation (3x32x32)"
    choices = (len(fbnet.LAYER_CHOICES),) * fbnet.NUM_LAYERS

    def decode(self, genes: Sequence[int] | np.ndarray) -> str:
        return " ".join(fbnet.LAYER_CHOICES[int(g)] for g in genes)

    def encode(self, arch: str) -> np.ndarray:
        return np.array([fbnet.LAYER_CHOICES.index(c) for c in fbnet.parse_arch(arch)])

    def build(self, arch: str) -> Any:
        return fbnet.build_fbnet(arch)

    def input_shape(self, arch: str) -> tuple[int, ...]:
        return (1, 3, 32, 32)

    def blocks(self, arch: str) -> list[str]:
        layers = [f"{i}-{o}-s{s}-{h}:{c}" for c, (i, o, s, h) in zip(fbnet.parse_arch(arch), fbnet.layer_shapes(), strict=True)]
        return ["stem", *layers, "head"]

    def build_block(self, key: str) -> tuple[Any, tuple[int, ...]]:
        shapes = fbnet.layer_shapes()
        if key == "stem":
            return fbnet.stem(), (1, 3, 32, 32)
        if key == "head":
            out_ch, size = shapes[-1][1], shapes[-1][3] // shapes[-1][2]
            return fbnet.head(out_ch), (1, out_ch, size, size)
        shape, choice = key.split(":")
        in_ch, out_ch, stride, size = (int(v.lstrip("s")) for v in shape.split("-"))
        return fbnet.FBNetBlock(choice, in_ch, out_ch, stride), (1, in_ch, size, size)
