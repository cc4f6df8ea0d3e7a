"""NAS-Bench-201 networks (Dong & Yang, ICLR 2020) built from their architecture strings.

An architecture string lists the cell's three computed nodes, separated by ``+``; node ``j``
(1..3) lists one ``op~i`` edge for every earlier node ``i`` (0 is the cell input)::

    |nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|+|skip_connect~0|nor_conv_3x3~1|skip_connect~2|

The macro architecture is NAS-Bench-201's: a 3x3 conv stem (16 channels) + BatchNorm, three
stages of five cells (16, 32, 64 channels) joined by two residual reduction blocks (stride 2,
the reference ``ResNetBasicblock``), then BatchNorm + ReLU, global average pooling and a linear
classifier. Node ``j`` is the sum of ``op_ij(node_i)`` over its non-``none`` edges; a node whose
edges are all ``none`` is ``input * 0``, NB201's zero op.

Example:
    >>> net = build_nb201("|nor_conv_3x3~0|+|none~0|skip_connect~1|+|skip_connect~0|avg_pool_3x3~1|nor_conv_1x1~2|")
    >>> net(torch.zeros(1, 3, 32, 32)).shape
    torch.Size([1, 10])
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import cast

import torch
from torch import nn

from edgelat.datasets.zoo import init_weights
from edgelat.errors import UsageError

__all__ = [
    "CELLS_PER_STAGE",
    "OPS",
    "STAGE_CHANNELS",
    "NB201Arch",
    "NodeBlock",
    "ResNetBasicBlock",
    "arch_to_str",
    "build_nb201",
    "head",
    "live_nodes",
    "parse_arch",
    "stem",
]


class _ReLUConvBN(nn.Sequential):
    def __init__(self, in_ch: int, out_ch: int, kernel_size: int, stride: int = 1) -> None:
        super().__init__(
            nn.ReLU(),
            nn.Conv2d(in_ch, out_ch, kernel_size, stride, (kernel_size - 1) // 2, bias=False),
            nn.BatchNorm2d(out_ch),
        )


# module factory (channels -> module) of every op but "none", which contributes nothing
_OP_MODULES: dict[str, Callable[[int], nn.Module]] = {
    "skip_connect": lambda c: nn.Identity(),
    "nor_conv_1x1": lambda c: _ReLUConvBN(c, c, 1),
    "nor_conv_3x3": lambda c: _ReLUConvBN(c, c, 3),
    "avg_pool_3x3": lambda c: nn.AvgPool2d(3, stride=1, padding=1, count_include_pad=False),
}


OPS: tuple[str, ...] = ("none", *_OP_MODULES)

# ((op, input node), ...) for nodes 1, 2, 3; edges sorted by input node
NB201Arch = tuple[tuple[tuple[str, int], ...], ...]

_NUM_NODES = 3  # computed nodes per cell
STAGE_CHANNELS = (16, 32, 64)
CELLS_PER_STAGE = 5


def parse_arch(arch: str) -> NB201Arch:
    """Parse and validate a NAS-Bench-201 architecture string.

    Raises:
        UsageError: the string is malformed; the message names the problem.
    """
    if not isinstance(arch, str):
        raise UsageError(f"a NAS-Bench-201 arch must be a string, got {type(arch).__name__}")
    nodes = arch.strip().split("+")
    if len(nodes) != _NUM_NODES:
        raise UsageError(f"NAS-Bench-201 arch {arch!r} has {len(nodes)} node(s) separated by '+', expected {_NUM_NODES}")
    parsed = []
    for j, node in enumerate(nodes, start=1):
        if len(node) < 2 or node[0] != "|" or node[-1] != "|":
            raise UsageError(f"node {j} of NAS-Bench-201 arch {arch!r} is {node!r}; a node must start and end with '|'")
        edges = []
        for edge in node[1:-1].split("|"):
            op, sep, source = edge.partition("~")
            if not sep or not source.isdigit():
                raise UsageError(f"edge {edge!r} in node {j} of NAS-Bench-201 arch {arch!r} is not of the form op~input")
            if op not in OPS:
                raise UsageError(f"unknown op {op!r} in node {j} of NAS-Bench-201 arch {arch!r}; ops are {', '.join(OPS)}")
            edges.append((op, int(source)))
        sources = sorted(i for _, i in edges)
        if sources != list(range(j)):
            raise UsageError(
                f"node {j} of NAS-Bench-201 arch {arch!r} takes inputs {sources}; it needs exactly one edge from each of nodes {list(range(j))}"
            )
        parsed.append(tuple(sorted(edges, key=lambda e: e[1])))
    return tuple(parsed)


def arch_to_str(arch: NB201Arch) -> str:
    """The architecture string of a parsed architecture (inverse of :func:`parse_arch`)."""
    return "+".join("|" + "|".join(f"{op}~{i}" for op, i in node) + "|" for node in arch)


class _Edge(nn.Module):
    def __init__(self, op: str, source: int, channels: int) -> None:
        super().__init__()
        self.source = source
        self.op = _OP_MODULES[op](channels)

    def forward(self, nodes: list[torch.Tensor]) -> torch.Tensor:
        return self.op(nodes[self.source])


def live_nodes(arch: NB201Arch) -> set[int]:
    """The computed nodes (1..3) the cell output depends on through non-``none`` edges."""
    live = {len(arch)}
    for j in range(len(arch), 0, -1):
        if j in live:
            live |= {i for op, i in arch[j - 1] if op != "none" and i > 0}
    return live


class _Cell(nn.Module):
    """A NAS-Bench-201 cell; ``none`` edges get no module and add nothing.

    Nodes the output does not depend on get no modules either: compilers drop them, and
    parameters that cannot reach the output should not count for anything (proxies count them).
    """

    def __init__(self, arch: NB201Arch, channels: int) -> None:
        super().__init__()
        live = live_nodes(arch)
        self.nodes = nn.ModuleList(
            nn.ModuleList(_Edge(op, source, channels) for op, source in node if op != "none" and j in live)
            for j, node in enumerate(arch, start=1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        nodes = [x]
        for edges in cast("Iterable[nn.ModuleList]", self.nodes):  # a ModuleList of ModuleLists
            if len(edges) == 0:
                # NB201's own Zero op, x * 0: unlike a zeros constant it keeps every kernel fed by an input
                nodes.append(x.mul(0.0))
                continue
            out = edges[0](nodes)
            for edge in edges[1:]:
                out = out + edge(nodes)
            nodes.append(out)
        return nodes[-1]


class ResNetBasicBlock(nn.Module):
    """NAS-Bench-201's reduction block: two ReLU-Conv-BN 3x3 (first with stride 2) + avgpool/1x1 shortcut."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__()
        self.conv_a = _ReLUConvBN(in_ch, out_ch, 3, stride=2)
        self.conv_b = _ReLUConvBN(out_ch, out_ch, 3)
        self.downsample = nn.Sequential(nn.AvgPool2d(2, 2), nn.Conv2d(in_ch, out_ch, 1, bias=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_b(self.conv_a(x)) + self.downsample(x)


class NodeBlock(nn.Module):
    """One cell node on its own, taking every earlier node as an input: the unit latency oracles cache."""

    def __init__(self, edges: Sequence[tuple[str, int]], channels: int) -> None:
        super().__init__()
        self.edges = nn.ModuleList(_Edge(op, source, channels) for op, source in edges if op != "none")

    def forward(self, *nodes: torch.Tensor) -> torch.Tensor:
        if len(self.edges) == 0:
            return nodes[0].mul(0.0)
        out = self.edges[0](list(nodes))
        for edge in self.edges[1:]:
            out = out + edge(list(nodes))
        return out


def stem() -> nn.Sequential:
    """3x3 conv to the first stage's channels + BatchNorm."""
    return nn.Sequential(nn.Conv2d(3, STAGE_CHANNELS[0], 3, padding=1, bias=False), nn.BatchNorm2d(STAGE_CHANNELS[0]))


def head(num_classes: int = 10) -> nn.Sequential:
    """BatchNorm + ReLU, global average pooling and the linear classifier."""
    c = STAGE_CHANNELS[-1]
    return nn.Sequential(nn.BatchNorm2d(c), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(1), nn.Linear(c, num_classes))


def build_nb201(arch: str, num_classes: int = 10) -> nn.Module:
    """Build the NAS-Bench-201 network of an architecture string.

    Weights are freshly initialised with :func:`edgelat.datasets.zoo.init_weights`.

    Raises:
        UsageError: ``arch`` is malformed (see :func:`parse_arch`).
    """
    cell_arch = parse_arch(arch)
    layers: list[nn.Module] = [stem()]
    for stage, channels in enumerate(STAGE_CHANNELS):
        if stage > 0:
            layers.append(ResNetBasicBlock(STAGE_CHANNELS[stage - 1], channels))
        layers += [_Cell(cell_arch, channels) for _ in range(CELLS_PER_STAGE)]
    return init_weights(nn.Sequential(nn.Sequential(*layers), head(num_classes)))
