"""A corpus of small networks "written by other people", for testing the ONNX/torch import front door.

Plain ``torch.nn`` / ``torch.nn.functional`` code in deliberately varied styles: the same blocks (global
pooling, classifiers, hard-swish, channel shuffle, padding, attention, upsampling, ...) written the ways
different authors write them. Every network is tiny (at most ~150 MFLOPs, batch 1, float32), has seeded
random weights (BatchNorm statistics calibrated on random inputs) and is returned in eval mode.

    from tests.corpus import corpus, get, example_inputs, export_onnx
    for net in corpus():
        model = net.build()
        out = model(*example_inputs(net))
        export_onnx(net, f"/tmp/{net.name}.onnx", exporter="dynamo", dynamic=True)

``python -m tests.corpus.check`` builds, runs and exports every network with both exporters and compares
ONNX Runtime against torch.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import logging
import os
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import torch
from torch.utils import _pytree

from ._registry import DYNAMIC_MODES, FAMILIES, CorpusNet

__all__ = ["DYNAMIC_MODES", "EXPORTERS", "FAMILIES", "CorpusNet", "corpus", "dynamic_dims", "example_inputs", "export_onnx", "get", "input_names"]

EXPORTERS = ("torchscript", "dynamo")
TORCHSCRIPT_OPSETS = tuple(range(11, 18))
DYNAMO_OPSETS = tuple(range(18, 22))


@functools.cache
def _corpus() -> tuple[CorpusNet, ...]:
    from . import cnn, detection, misc, mobile, multi_input, segmentation, shuffle, transformer

    nets: list[CorpusNet] = []
    for module in (cnn, mobile, shuffle, segmentation, detection, transformer, multi_input, misc):
        nets += module.NETS
    seen: set[str] = set()
    out = []
    for i, net in enumerate(nets):
        if net.name in seen:
            raise ValueError(f"duplicate corpus network {net.name!r}")
        seen.add(net.name)
        ts = max(net.min_opset, TORCHSCRIPT_OPSETS[i % len(TORCHSCRIPT_OPSETS)])
        dyn = DYNAMO_OPSETS[i % len(DYNAMO_OPSETS)]
        out.append(dataclasses.replace(net, opset=ts, dynamo_opset=dyn))
    return tuple(out)


def corpus() -> list[CorpusNet]:
    """All networks, in a stable order (by family module, then as written)."""
    return list(_corpus())


def get(name: str) -> CorpusNet:
    for net in _corpus():
        if net.name == name:
            return net
    raise KeyError(f"no corpus network named {name!r}")


def example_inputs(net: CorpusNet, seed: int = 0) -> tuple[torch.Tensor, ...]:
    """Standard-normal inputs of ``net.input_shapes`` (batch 1), from a generator seeded with ``seed``."""
    gen = torch.Generator().manual_seed(seed)
    return tuple(torch.randn(shape, generator=gen) for shape in net.input_shapes)


def input_names(net: CorpusNet) -> list[str]:
    n = len(net.input_shapes)
    return ["input"] if n == 1 else [f"input_{i}" for i in range(n)]


def dynamic_dims(net: CorpusNet) -> list[dict[int, str]]:
    """Per input, the dims ``export_onnx(..., dynamic=True)`` makes symbolic, and their names.

    The batch dim is "batch" for every input; spatial dims are "height"/"width" (rank 4) or "length" (rank 3),
    shared by inputs of the same shape and suffixed with the input index for inputs of other shapes.
    Rank-2 inputs (vectors) only get the batch dim.
    """
    if net.dynamic == "static":
        return [{} for _ in net.input_shapes]
    first_of_shape: dict[tuple[int, ...], int] = {}
    out = []
    for i, shape in enumerate(net.input_shapes):
        dims = {0: "batch"}
        if net.dynamic == "spatial":
            owner = first_of_shape.setdefault(shape, i)
            suffix = "" if owner == 0 else f"_{owner}"
            if len(shape) == 4:
                dims.update({2: "height" + suffix, 3: "width" + suffix})
            elif len(shape) == 3:
                dims[2] = "length" + suffix
        out.append(dims)
    return out


@contextlib.contextmanager
def _redirect_fds() -> Iterator[None]:
    """Send file descriptors 1 and 2 to /dev/null: the torchscript exporter prints from C++ when it fails."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = [os.dup(1), os.dup(2)]
    except OSError:  # no usable descriptors to redirect
        yield
        return
    try:
        with open(os.devnull, "wb") as sink:
            os.dup2(sink.fileno(), 1)
            os.dup2(sink.fileno(), 2)
            yield
    finally:
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for fd in saved:
            os.close(fd)


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """Silence the exporters: warnings, the dynamo exporter's progress prints and its logging, C++ prints."""
    previous = logging.root.manager.disable
    logging.disable(logging.CRITICAL)  # the dynamo exporter also logs errors for failures it then raises
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), _redirect_fds():
            warnings.simplefilter("ignore")
            yield
    finally:
        logging.disable(previous)


def _dim(name: str, size: int) -> torch.export.Dim:
    """A named export Dim. Spatial dims range from half the example size up: torch.export refuses a range
    that includes sizes the network cannot take (a 3x3 valid conv after four stride-2 convs needs >= 15)."""
    if name == "batch":
        return torch.export.Dim(name, max=1024)
    return torch.export.Dim(name, min=max(2, size // 2), max=max(4096, 16 * size))


def export_onnx(
    net: CorpusNet,
    path: str | Path,
    *,
    exporter: str = "torchscript",
    opset: int | None = None,
    dynamic: bool = False,
) -> Path:
    """Export ``net`` (built fresh, example inputs of batch 1) to ``path`` and return the path.

    exporter: "torchscript" (``torch.onnx.export(dynamo=False)``, default opset ``net.opset``) or "dynamo"
    (``torch.onnx.export(dynamo=True)``, default opset ``net.dynamo_opset``).
    dynamic: make the dims ``dynamic_dims(net)`` names symbolic (``dynamic_axes`` / ``torch.export.Dim``);
    what that covers depends on ``net.dynamic`` (batch and spatial dims, batch only, or nothing).
    Inputs are named "input" (or "input_0", "input_1", ...), outputs "output" (or "output_0", ...).
    """
    if exporter not in EXPORTERS:
        raise ValueError(f"exporter must be one of {EXPORTERS}, not {exporter!r}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    model = net.build()
    args = example_inputs(net)
    if dynamic and net.dynamic != "static":
        # trace with batch 2: with a batch-1 example torch.export specializes the batch dim to 1 (0/1
        # specialization) in some networks, and the torchscript tracer has no reason to keep it symbolic either
        args = tuple(a.expand(2, *a.shape[1:]).clone() for a in args)
    with torch.no_grad():
        n_out = len(_pytree.tree_leaves(model(*args)))
    in_names = input_names(net)
    out_names = ["output"] if n_out == 1 else [f"output_{i}" for i in range(n_out)]
    dims = dynamic_dims(net) if dynamic else [{} for _ in net.input_shapes]
    with _quiet():
        if exporter == "torchscript":
            axes: dict[str, dict[int, str]] = {name: d for name, d in zip(in_names, dims, strict=True) if d}
            if any(axes.values()):
                axes.update({name: {0: "batch"} for name in out_names})
            torch.onnx.export(
                model,
                args,
                str(path),
                dynamo=False,
                opset_version=opset or net.opset,
                input_names=in_names,
                output_names=out_names,
                dynamic_axes=axes or None,
                do_constant_folding=True,
            )
        else:
            syms: dict[str, torch.export.Dim] = {}
            shapes = tuple(
                {axis: syms.setdefault(name, _dim(name, size)) for axis, name in d.items() for size in [shape[axis]]} or None
                for d, shape in zip(dims, net.input_shapes, strict=True)
            )
            program = torch.onnx.export(
                model,
                args,
                dynamo=True,
                opset_version=opset or net.dynamo_opset,
                input_names=in_names,
                output_names=out_names,
                dynamic_shapes=shapes if any(s is not None for s in shapes) else None,
                verbose=False,
            )
            if program is None:
                raise RuntimeError(f"{net.name}: the dynamo exporter returned no program")
            program.save(str(path))
    return path
