"""Check the corpus: build, run, export both ways, compare ONNX Runtime with torch.

    python -m tests.corpus.check                      # every network; dynamic exports on every 3rd one
    python -m tests.corpus.check --dynamic all        # dynamic exports for every network
    python -m tests.corpus.check resnet_bottleneck swin_lite --ops   # a few networks, with their ONNX op types

For every network: build it twice (the two builds must agree bit for bit), count FLOPs
(torch.utils.flop_counter: 2 FLOPs per multiply-accumulate of conv / linear / matmul / attention) and
parameters, export with the torchscript and the dynamo exporter at their default opsets (static shapes), run
each file with ONNX Runtime (CPUExecutionProvider, one thread) and compare with torch. With --dynamic, also
export with dynamic=True and run at batch 2 and, for networks whose ``dynamic`` is "spatial", at H+32 x W+32,
checking that the dims named by ``dynamic_dims`` are symbolic in the file.
"""

from __future__ import annotations

import argparse
import collections
import math
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from torch.utils import _pytree
from torch.utils.flop_counter import FlopCounterMode

from . import EXPORTERS, CorpusNet, corpus, dynamic_dims, example_inputs, export_onnx, get

TOLERANCE = 1e-4  # on max |onnx - torch| / max(1, max |torch|), per output
MAX_FLOPS = 150e6
MAX_PARAMS = 5e6


@dataclass
class ExportResult:
    seconds: float = math.nan
    error: float = math.nan  # scaled max abs difference to torch, worst output
    failure: str = ""  # export or run failure, or why the check failed
    ops: collections.Counter = field(default_factory=collections.Counter)
    opset: int = 0

    @property
    def ok(self) -> bool:
        return not self.failure


@dataclass
class NetResult:
    net: CorpusNet
    flops: float = math.nan
    params: int = 0
    failure: str = ""  # build / torch run failures
    static: dict[str, ExportResult] = field(default_factory=dict)
    dynamic: dict[str, ExportResult] = field(default_factory=dict)


def _outputs(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> list[np.ndarray]:
    with torch.no_grad():
        return [t.detach().numpy() for t in _pytree.tree_leaves(model(*inputs))]


def _count_flops(model: torch.nn.Module, inputs: tuple[torch.Tensor, ...]) -> float:
    # with grad enabled: nn.TransformerEncoderLayer / MultiheadAttention take their fused fast path under
    # no_grad, which the counter does not know
    counter = FlopCounterMode(display=False)
    with counter:
        model(*inputs)
    return float(counter.get_total_flops())


def _session(path: Path) -> ort.InferenceSession:
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 4  # failures are reported from the exception
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _scaled_error(ref: list[np.ndarray], got: list[np.ndarray]) -> tuple[float, str]:
    if len(ref) != len(got):
        return math.inf, f"{len(got)} outputs, torch has {len(ref)}"
    worst = 0.0
    for i, (r, g) in enumerate(zip(ref, got, strict=True)):
        if r.shape != g.shape:
            return math.inf, f"output {i}: shape {g.shape}, torch {r.shape}"
        if r.size == 0:
            continue
        if not np.all(np.isfinite(g)):
            return math.inf, f"output {i}: non-finite values"
        worst = max(worst, float(np.abs(r.astype(np.float64) - g).max() / max(1.0, float(np.abs(r).max()))))
    return worst, ""


def _symbolic_problems(net: CorpusNet, model_proto: onnx.ModelProto) -> str:
    wanted = dynamic_dims(net)
    graph_inputs = [i for i in model_proto.graph.input if i.name not in {t.name for t in model_proto.graph.initializer}]
    problems = []
    for spec, gi in zip(wanted, graph_inputs, strict=False):
        dims = gi.type.tensor_type.shape.dim
        for axis in spec:
            if not dims[axis].dim_param:
                problems.append(f"{gi.name}[{axis}]={dims[axis].dim_value}")
    return ("static dims " + ", ".join(problems)) if problems else ""


def _dynamic_inputs(net: CorpusNet) -> tuple[torch.Tensor, ...]:
    gen = torch.Generator().manual_seed(1)
    out = []
    for shape, dims in zip(net.input_shapes, dynamic_dims(net), strict=True):
        new = list(shape)
        for axis in dims:
            new[axis] = 2 if axis == 0 else shape[axis] + 32
        out.append(torch.randn(new, generator=gen))
    return tuple(out)


def _check_export(net, model, exporter, path, dynamic) -> ExportResult:
    res = ExportResult()
    t0 = time.perf_counter()
    try:
        export_onnx(net, path, exporter=exporter, dynamic=dynamic)
    except Exception as exc:  # noqa: BLE001 - reported in the table
        res.failure = f"export: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
        return res
    res.seconds = time.perf_counter() - t0
    try:
        proto = onnx.load(str(path))
        res.ops = collections.Counter(n.op_type for n in proto.graph.node)
        res.opset = next((o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")), 0)
        inputs = _dynamic_inputs(net) if dynamic else example_inputs(net)
        if dynamic:
            res.failure = _symbolic_problems(net, proto)
            if res.failure:
                return res
        sess = _session(path)
        feeds = {i.name: t.numpy() for i, t in zip(sess.get_inputs(), inputs, strict=True)}
        got = sess.run(None, feeds)
        ref = _outputs(model, inputs)
        res.error, why = _scaled_error(ref, got)
        if why or res.error > TOLERANCE:
            res.failure = res.failure or why or f"max error {res.error:.2e}"
    except Exception as exc:  # noqa: BLE001
        res.failure = f"run: {type(exc).__name__}: {str(exc).strip().splitlines()[0][:200] if str(exc).strip() else ''}"
    return res


def check_net(net: CorpusNet, workdir: Path, *, dynamic: bool, exporters=EXPORTERS) -> NetResult:
    result = NetResult(net)
    try:
        model = net.build()
        inputs = example_inputs(net)
        ref = _outputs(model, inputs)
        again = _outputs(net.build(), inputs)
        if any(not np.array_equal(a, b) for a, b in zip(ref, again, strict=True)):
            result.failure = "two builds differ"
        if model.training:
            result.failure = "build() returned a module in training mode"
        result.flops = _count_flops(model, inputs)
        result.params = sum(p.numel() for p in model.parameters())
    except Exception as exc:  # noqa: BLE001
        result.failure = f"build/run: {type(exc).__name__}: {exc}"
        traceback.print_exc()
        return result
    for exporter in exporters:
        result.static[exporter] = _check_export(net, model, exporter, workdir / f"{net.name}.{exporter}.onnx", False)
        if dynamic:
            result.dynamic[exporter] = _check_export(net, model, exporter, workdir / f"{net.name}.{exporter}.dyn.onnx", True)
    return result


def _fmt(r: ExportResult | None) -> str:
    if r is None:
        return "-"
    if not r.ok:
        return "FAIL"
    return f"ok {r.error:.0e}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.corpus.check", description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*", help="networks to check (default: all)")
    parser.add_argument("--dynamic", choices=("none", "some", "all"), default="some", help="dynamic exports: none, every 3rd network (default), all")
    parser.add_argument("--exporter", choices=EXPORTERS, action="append", help="only this exporter (repeatable)")
    parser.add_argument("--ops", action="store_true", help="print each file's ONNX op types")
    parser.add_argument("--keep", type=Path, help="keep the ONNX files in this directory")
    args = parser.parse_args(argv)

    torch.set_num_threads(1)
    nets = [get(n) for n in args.names] if args.names else corpus()
    exporters = tuple(args.exporter or EXPORTERS)
    index = {n.name: i for i, n in enumerate(corpus())}
    t_start = time.perf_counter()
    results: list[NetResult] = []
    with tempfile.TemporaryDirectory(prefix="corpus-") as tmp:
        workdir = args.keep or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        header = f"{'name':30s} {'family':12s} {'MFLOPs':>7s} {'params':>8s} {'dyn':7s} {'ts op':>5s} {'ts s':>5s} {'ts':8s} {'dy op':>5s} {'dy s':>5s} {'dynamo':8s} {'ts dyn':8s} {'dy dyn':8s}"
        print(header)
        print("-" * len(header))
        for net in nets:
            dyn = args.dynamic == "all" or (args.dynamic == "some" and index[net.name] % 3 == 0)
            r = check_net(net, workdir, dynamic=dyn, exporters=exporters)
            results.append(r)
            ts, dy = r.static.get("torchscript"), r.static.get("dynamo")
            flag = "!" if r.flops > MAX_FLOPS or r.params > MAX_PARAMS else " "
            print(
                f"{net.name:30s} {net.family:12s} {r.flops / 1e6:7.1f}{flag}{r.params / 1e3:7.0f}K {net.dynamic:7s} "
                f"{ts.opset if ts else 0:5d} {ts.seconds if ts else math.nan:5.1f} {_fmt(ts):8s} "
                f"{dy.opset if dy else 0:5d} {dy.seconds if dy else math.nan:5.1f} {_fmt(dy):8s} "
                f"{_fmt(r.dynamic.get('torchscript')):8s} {_fmt(r.dynamic.get('dynamo')):8s}",
                flush=True,
            )
            if r.failure:
                print(f"    {r.failure}")
            for kind, group in (("static", r.static), ("dynamic", r.dynamic)):
                for exporter, er in group.items():
                    if not er.ok:
                        print(f"    {exporter} {kind}: {er.failure}")
                    if args.ops:
                        print(f"    {exporter} {kind} ops: " + " ".join(f"{k}x{v}" if v > 1 else k for k, v in sorted(er.ops.items())))
    elapsed = time.perf_counter() - t_start

    print()
    ok_both = [r for r in results if not r.failure and all(r.static.get(e) and r.static[e].ok for e in exporters)]
    print(f"networks: {len(results)}; families: " + ", ".join(f"{f} {c}" for f, c in collections.Counter(r.net.family for r in results).items()))
    print(f"build + torch run + determinism ok: {sum(not r.failure for r in results)}/{len(results)}")
    print(f"static export matches torch with {' and '.join(exporters)}: {len(ok_both)}/{len(results)}")
    for e in exporters:
        rs = [r.static[e] for r in results if e in r.static]
        secs = [x.seconds for x in rs if not math.isnan(x.seconds)]
        print(
            f"  {e:11s}: {sum(x.ok for x in rs)}/{len(rs)} ok, export time total {sum(secs):.1f} s"
            f" (median {statistics.median(secs) if secs else math.nan:.2f} s, max {max(secs) if secs else math.nan:.1f} s),"
            f" worst error {max((x.error for x in rs if x.ok), default=math.nan):.1e},"
            f" opsets {sorted(collections.Counter(x.opset for x in rs).items())}"
        )
    for e in exporters:
        rs = [r.dynamic[e] for r in results if e in r.dynamic]
        if rs:
            secs = [x.seconds for x in rs if not math.isnan(x.seconds)]
            print(f"  {e:11s} dynamic=True: {sum(x.ok for x in rs)}/{len(rs)} ok at batch 2 (+32 px where spatial), export time total {sum(secs):.1f} s")
    flops = [r.flops / 1e6 for r in results if not math.isnan(r.flops)]
    if flops:
        print(
            f"MFLOPs: median {statistics.median(flops):.1f}, max {max(flops):.1f}; params: max {max(r.params for r in results) / 1e6:.2f} M;"
            f" over the limits: {[r.net.name for r in results if r.flops > MAX_FLOPS or r.params > MAX_PARAMS]}"
        )
    print(f"dynamic modes: {dict(collections.Counter(r.net.dynamic for r in results))}")
    for e in exporters:
        ops = collections.Counter()
        for r in results:
            for group in (r.static, r.dynamic):
                if e in group:
                    ops.update({k: 1 for k in group[e].ops})
        print(f"  {e} op types (networks using them): " + " ".join(f"{k}:{v}" for k, v in sorted(ops.items())))
    failures = [r for r in results if r.failure or any(not x.ok for g in (r.static, r.dynamic) for x in g.values())]
    print(f"failures: {len(failures)} {[r.net.name for r in failures]}")
    print(f"total time {elapsed:.0f} s")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
