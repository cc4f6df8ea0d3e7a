"""The front door: ONNX files as exporters write them, and kernels recognised by what they compute."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

from edgelat.errors import ModelImportError
from edgelat.ops.network import Kernel, network_kernels, relax_from_onnx, relax_from_torch


def _export(module: nn.Module, shapes: list[tuple[int, ...]], path: Path, *, opset: int = 17, dynamo: bool = False,
            dynamic: dict | None = None) -> Path:  # fmt: skip
    module.eval()
    args = tuple(torch.randn(*s) for s in shapes)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if dynamo:
            torch.onnx.export(module, args, str(path), dynamo=True, opset_version=opset, dynamic_shapes=dynamic, verbose=False)
        else:
            names = [f"in{i}" for i in range(len(shapes))]
            torch.onnx.export(module, args, str(path), dynamo=False, opset_version=opset, input_names=names, dynamic_axes=dynamic)
    return path


def _kernels(module: nn.Module, shape: tuple[int, ...], tmp_path: Path, **kw: object) -> list[Kernel]:
    return network_kernels(relax_from_onnx(_export(module, [shape], tmp_path / "net.onnx", **kw)))  # type: ignore[arg-type]


class Lambda(nn.Module):
    def __init__(self, fn: Callable[..., torch.Tensor], cin: int = 8) -> None:
        super().__init__()
        self.conv, self.fn = nn.Conv2d(cin, 16, 3, padding=1), fn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fn(self.conv(x))


# -- files that are not models, and shapes that do not fit ---------------------------------------


def test_files_that_are_not_onnx_models_are_one_clear_error(tmp_path: Path) -> None:
    good = _export(nn.Sequential(nn.Conv2d(3, 4, 3)), [(1, 3, 16, 16)], tmp_path / "good.onnx")
    cases = {
        "random.onnx": np.random.default_rng(0).bytes(3000),
        "empty.onnx": b"",
        "truncated.onnx": good.read_bytes()[: good.stat().st_size // 2],
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(ModelImportError, match="ONNX model") as err:
            relax_from_onnx(tmp_path / name)
        assert "\n" not in str(err.value), name
    (tmp_path / "dir.onnx").mkdir()
    with pytest.raises(ModelImportError, match="not a file"):
        relax_from_onnx(tmp_path / "dir.onnx")
    with pytest.raises(ModelImportError, match="no such model file"):
        relax_from_onnx(tmp_path / "missing.onnx")


def test_symbolic_dims_are_bound_from_the_given_shape(tmp_path: Path) -> None:
    net = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 4))
    path = _export(net, [(1, 3, 32, 32)], tmp_path / "dyn.onnx", dynamic={"in0": {0: "batch", 2: "height", 3: "width"}})
    with pytest.raises(ModelImportError, match=r"input 'in0' \(batch,3,height,width\) has symbolic dims \(batch, height, width\)"):
        relax_from_onnx(path)
    kernels = network_kernels(relax_from_onnx(path, (1, 3, 48, 40)))
    assert kernels[0].op == "conv2d" and (kernels[0].config["h"], kernels[0].config["w"]) == (48, 40)
    with pytest.raises(ModelImportError, match=r"has 3 dims, input 'in0' \(batch,3,height,width\) has 4"):
        relax_from_onnx(path, (1, 3, 48))
    with pytest.raises(ModelImportError, match="contradicts input 'in0'.*dim 1 is 3"):
        relax_from_onnx(path, (1, 4, 48, 48))
    fixed = _export(net, [(1, 3, 32, 32)], tmp_path / "fixed.onnx")
    with pytest.raises(ModelImportError, match="contradicts input 'in0' \\(1,3,32,32\\).*dim 2 is 32"):
        relax_from_onnx(fixed, (1, 3, 64, 64))
    assert network_kernels(relax_from_onnx(fixed, (1, 3, 32, 32)))[0].config["h"] == 32


def test_several_inputs_each_get_a_shape(tmp_path: Path) -> None:
    class TwoInputs(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv, self.meta, self.head = nn.Conv2d(3, 8, 3), nn.Linear(5, 8), nn.Linear(16, 2)

        def forward(self, image: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
            return self.head(torch.cat([self.conv(image).mean((2, 3)), self.meta(meta)], 1))

    path = _export(TwoInputs(), [(1, 3, 16, 16), (1, 5)], tmp_path / "two.onnx", dynamic={"in0": {0: "b"}, "in1": {0: "b"}})
    with pytest.raises(ModelImportError, match=r"2 inputs \(in0, in1\): give a shape for each"):
        relax_from_onnx(path, (1, 3, 16, 16))
    by_order = network_kernels(relax_from_onnx(path, [(1, 3, 16, 16), (1, 5)]))
    by_name = network_kernels(relax_from_onnx(path, {"in0": (1, 3, 16, 16), "in1": (1, 5)}))
    assert [k.config for k in by_order] == [k.config for k in by_name]
    assert {"conv2d", "global_avg_pool", "dense", "concat"} <= {k.op for k in by_order}
    with pytest.raises(ModelImportError, match="no input named 'image'"):
        relax_from_onnx(path, {"image": (1, 3, 16, 16)})
    torch_kernels = network_kernels(relax_from_torch(TwoInputs().eval(), (torch.randn(1, 3, 16, 16), torch.randn(1, 5))))
    assert [k.op for k in torch_kernels if k.op == "conv2d"] == ["conv2d"]


def test_a_node_tvm_cannot_import_is_named(tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """One line naming the node and its op type, and nothing printed to stdout."""
    x = onnx.helper.make_tensor_value_info("x", onnx.TensorProto.FLOAT, [1, 3, 8, 8])
    y = onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, [1, 4, 6, 6])
    weight = onnx.helper.make_tensor("w", onnx.TensorProto.FLOAT, [4, 5, 3, 3], [0.0] * 180)  # 5 input channels, x has 3
    nodes = {
        # (Celu was the example once: ONNX defines it as a function, which is expanded now)
        "no_converter": (onnx.helper.make_node("LpNormalization", ["x"], ["y"], name="lpnorm_1"), [], r"'lpnorm_1' \(LpNormalization\).*no converter"),
        "converter_fails": (onnx.helper.make_node("Conv", ["x", "w"], ["y"], name="conv_7"), [weight], r"'conv_7' \(Conv, inputs \(1,3,8,8\), \(4,5,3,3\)\): The channel size"),
    }
    for name, (node, inits, message) in nodes.items():
        path = tmp_path / f"{name}.onnx"
        graph = onnx.helper.make_graph([node], "g", [x], [y], inits)
        onnx.save(onnx.helper.make_model(graph, opset_imports=[onnx.helper.make_opsetid("", 17)]), str(path))
        with pytest.raises(ModelImportError, match="TVM cannot import ONNX node " + message) as err:
            relax_from_onnx(path)
        assert "\n" not in str(err.value)
        assert capfd.readouterr().out == ""


def test_shape_arithmetic_from_both_exporters_becomes_static(tmp_path: Path) -> None:
    """A channel shuffle whose sizes come from ``x.shape``: Shape/Gather/Concat/Reshape chains in the file."""

    class Shuffle(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = nn.Conv2d(3, 16, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = self.conv(x)
            b, c, h, w = x.shape
            return x.view(b, 4, c // 4, h, w).transpose(1, 2).contiguous().view(b, -1, h, w)

    dims = {"in0": {0: "b", 2: "h", 3: "w"}}
    ts = _export(Shuffle(), [(1, 3, 16, 16)], tmp_path / "ts.onnx", opset=11, dynamic=dims)
    assert {"Shape", "Gather"} <= {n.op_type for n in onnx.load(str(ts)).graph.node}
    h, w = torch.export.Dim("h", min=4, max=64), torch.export.Dim("w", min=4, max=64)
    dyn = _export(Shuffle(), [(1, 3, 16, 16)], tmp_path / "dyn.onnx", opset=18, dynamo=True, dynamic=({2: h, 3: w},))
    for path in (ts, dyn):
        kernels = network_kernels(relax_from_onnx(path, (1, 3, 24, 24)))
        assert [k.op for k in kernels] == ["conv2d", "channel_shuffle"], path.name
        assert kernels[1].config["groups"] in (4, 4) and kernels[1].config["h"] == 24


# -- kernels by what they compute ------------------------------------------------------------


@pytest.mark.parametrize(
    "spelling",
    [lambda y: y.mean((2, 3)), lambda y: y.mean(dim=[-1, -2], keepdim=True), lambda y: F.adaptive_avg_pool2d(y, 1),
     lambda y: F.avg_pool2d(y, y.shape[-1])],  # fmt: skip
    ids=["mean", "mean_keepdim", "adaptive", "avg_pool_whole"],
)
def test_global_average_pooling_in_any_spelling(spelling: Callable[[torch.Tensor], torch.Tensor], tmp_path: Path) -> None:
    for opset in (11, 18):
        kernels = _kernels(Lambda(spelling), (1, 8, 12, 12), tmp_path, opset=opset)
        pools = [k for k in kernels if k.op == "global_avg_pool"]
        assert len(pools) == 1 and pools[0].config == {"n": 1, "c": 16, "h": 12, "w": 12, "epilogue": ""}, [k.group.ops for k in kernels]


def test_a_sum_then_a_division_runs_as_two_kernels(tmp_path: Path) -> None:
    """TVM does not fuse a sum with what follows it (a mean it does): predicted as what the build runs."""
    kernels = _kernels(Lambda(lambda y: y.sum((2, 3)) / (y.shape[2] * y.shape[3])), (1, 8, 12, 12), tmp_path)
    assert [(k.op, (k.config or {}).get("epilogue")) for k in kernels][1:] == [("reduce", ""), ("activation", "divide.s")]


def test_a_squeeze_excite_gate_is_profiled_at_the_size_it_scales(tmp_path: Path) -> None:
    """The gate's conv runs on one pixel, but TVM fuses the scaling of the whole map into it: the kernel
    writes C x H x W values. Its config says so (``multiply.x35``), and what is profiled for it does too."""
    from edgelat.ops import fuse, fused_groups, get_op
    from edgelat.ops.lowering import shape_of

    class SE(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.reduce, self.expand = nn.Conv2d(16, 8, 1), nn.Conv2d(8, 16, 1)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x * F.hardsigmoid(self.expand(F.relu(self.reduce(x.mean((2, 3), keepdim=True)))))

    kernels = _kernels(SE(), (1, 16, 5, 7), tmp_path)
    gate = [k for k in kernels if k.op == "conv2d" and k.config["cout"] == 16]
    assert len(gate) == 1 and gate[0].config["h"] == gate[0].config["w"] == 1, [k.group.ops for k in kernels]
    assert gate[0].config["epilogue"].endswith("multiply.x35"), gate[0].config
    spec = get_op("conv2d")
    assert spec.features(gate[0].config)["out_elems"] == 16 * 35
    module = spec.emit(gate[0].config)
    assert int(np.prod([int(d) for d in shape_of(module["main"].body.body)])) == 16 * 35  # the kernel profiled writes the whole map
    (group,) = fused_groups(*fuse(module))
    assert spec.match(group) == gate[0].config
    # A sampler seeded with the gate draws gates: on one pixel, scaling maps of other (square) sizes.
    drawn = [spec.sample(np.random.default_rng(i), [gate[0].config]) for i in range(20)]
    gates = [d for d in drawn if "multiply.x" in d["epilogue"]]
    assert len(gates) >= 10 and all(d["h"] == d["w"] == 1 for d in gates)
    assert len({d["epilogue"] for d in gates}) > 1 and all(int(d["epilogue"].rsplit(".x", 1)[1]) ** 0.5 % 1 == 0 for d in gates)


@pytest.mark.parametrize(
    ("name", "spellings"),
    [
        ("hswish", [nn.Hardswish(), lambda y: y * F.relu6(y + 3) / 6, lambda y: y * (y + 3).clamp(0, 6) / 6, lambda y: y * (F.relu6(y + 3) / 6)]),
        ("swish", [nn.SiLU(), lambda y: y * torch.sigmoid(y)]),
        ("relu6", [nn.ReLU6(), lambda y: F.hardtanh(y, 0, 6), lambda y: y.clamp(0, 6)]),
        ("gelu", [lambda y: 0.5 * y * (1 + torch.erf(y / 1.4142135))]),
    ],
)
def test_activations_written_out_are_the_named_epilogue(name: str, spellings: list, tmp_path: Path) -> None:
    from edgelat.ops.epilogue import ACTIVATIONS

    for fn in spellings:
        for opset, dynamo in ((13, False), (18, True)):
            module = fn if isinstance(fn, nn.Module) else Lambda(fn)
            if isinstance(fn, nn.Module):
                module = nn.Sequential(nn.Conv2d(8, 16, 3, padding=1), fn)
            (conv,) = _kernels(module, (1, 8, 10, 10), tmp_path, opset=opset, dynamo=dynamo)
            assert (conv.op, conv.config["epilogue"]) == ("conv2d", "add.c+" + ACTIVATIONS[name]), (opset, dynamo)
    if name in ("hswish", "swish"):  # and through torch.export
        (conv,) = network_kernels(relax_from_torch(Lambda(spellings[1]).eval(), torch.randn(1, 8, 10, 10)))
        assert conv.config["epilogue"] == "add.c+" + ACTIVATIONS[name]


def test_gemm_and_matmul_plus_add_are_dense(tmp_path: Path) -> None:
    class Explicit(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.w, self.b = nn.Parameter(torch.randn(10, 32)), nn.Parameter(torch.randn(10))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x @ self.w.t() + self.b

    gemm = _kernels(nn.Linear(32, 10), (1, 32), tmp_path)
    matmul = _kernels(Explicit(), (1, 32), tmp_path)
    tokens = _kernels(nn.Linear(32, 10), (1, 49, 32), tmp_path)  # MatMul + Add on a 3-D input
    expected = {"m": 1, "k": 32, "n": 10, "epilogue": "add.c"}
    assert [(k.op, k.config) for k in gemm] == [(k.op, k.config) for k in matmul] == [("dense", expected)]
    assert [(k.op, k.config) for k in tokens] == [("dense", {**expected, "m": 49})]


def test_pad_then_conv_is_a_padded_conv(tmp_path: Path) -> None:
    class Padded(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.same, self.zero = nn.Conv2d(8, 8, 3, stride=2), nn.Conv2d(8, 8, 3)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.same(F.pad(x, (0, 1, 0, 1))) + self.zero(nn.ZeroPad2d(1)(x))[:, :, ::2, ::2]

    from_onnx = _kernels(Padded(), (1, 8, 16, 16), tmp_path)
    from_torch = network_kernels(relax_from_torch(Padded().eval(), torch.randn(1, 8, 16, 16)))
    for kernels in (from_onnx, from_torch):
        convs = [k.config for k in kernels if k.op == "conv2d"]
        assert len(convs) == 2 and not [k for k in kernels if k.op is None], [k.group.ops for k in kernels]
        assert {(c["h"], c["stride"], c["pad"]) for c in convs} == {(16, 2, 1), (16, 1, 1)}


def test_channel_shuffle_in_either_order_and_views_cost_nothing(tmp_path: Path) -> None:
    def shuffle_a(y: torch.Tensor) -> torch.Tensor:
        b, c, h, w = y.size()
        return y.view(b, 2, c // 2, h, w).transpose(1, 2).reshape(b, c, h, w)

    def shuffle_b(y: torch.Tensor) -> torch.Tensor:
        return y.reshape(1, 8, 2, 6, 6).permute(0, 2, 1, 3, 4).reshape(1, 16, 6, 6)

    for fn in (shuffle_a, shuffle_b):
        kernels = _kernels(Lambda(fn), (1, 8, 6, 6), tmp_path)
        assert [k.op for k in kernels] == ["conv2d", "channel_shuffle"]
    views = _kernels(Lambda(lambda y: y.flatten(1).unsqueeze(1).transpose(0, 1).squeeze(0)), (1, 8, 6, 6), tmp_path)
    assert [k.op for k in views] == ["conv2d"]  # flatten, unsqueeze, a transpose of a dim of one, squeeze: views


def test_transformer_blocks_match_dedicated_kinds(tmp_path: Path) -> None:
    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layer = nn.TransformerEncoderLayer(32, 4, 64, batch_first=True, norm_first=True, activation="gelu")

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layer(x)

    kernels = _kernels(Block(), (1, 16, 32), tmp_path, opset=17)
    ops = [k.op for k in kernels]
    assert None not in ops, [k.group.ops for k in kernels if k.op is None]
    assert {"dense", "batch_matmul", "softmax", "layernorm", "layout"} <= set(ops)
    assert any(k.config.get("epilogue") == "gelu" for k in kernels)  # written out with erf by the exporter


def test_upsampling_and_reductions_have_kinds(tmp_path: Path) -> None:
    def decoder(y: torch.Tensor) -> torch.Tensor:
        a = F.interpolate(y, scale_factor=2, mode="nearest")
        b = F.interpolate(y, size=(20, 20), mode="bilinear", align_corners=True)
        return a.amax(1) + b.sum(1)

    kernels = _kernels(Lambda(decoder), (1, 8, 10, 10), tmp_path)
    resizes = sorted((k.config["method"], k.config["oh"]) for k in kernels if k.op == "resize2d")
    assert resizes == [("linear", 20), ("nearest_neighbor", 20)]
    assert sorted(k.config["reducer"] for k in kernels if k.op == "reduce") == ["max", "sum"]
    deconv = _kernels(nn.Sequential(nn.ConvTranspose2d(8, 4, 2, stride=2), nn.ReLU()), (1, 8, 10, 10), tmp_path)
    assert [(k.op, k.config["epilogue"]) for k in deconv] == [("conv2d_transpose", "add.c+relu")]


# -- prediction's shortcut: constants stand in for weights computed at build time -----------------


@pytest.mark.parametrize("name", ["vit_sdpa_erf", "centernet_topk", "resnet_cifar_option_a", "unet_bilinear_pad", "nonlocal_shape_arith"])
def test_constants_that_stand_in_give_the_kernels_a_real_fold_gives(name: str) -> None:
    """Prediction folds computations on weights alone into zeros of their shape, without building them
    (:class:`StandInConstants`): the kernels (kinds, configs, names, ops) are those TVM's FoldConstant gives,
    including its refusal to materialise large tensors made from nothing (an attention mask's ``full``)."""
    from edgelat.ops.lowering import fuse, fused_groups
    from edgelat.ops.network import is_view, match_kernel
    from tests.corpus import example_inputs, get

    net = get(name)
    example = example_inputs(net)
    mod = relax_from_torch(net.build(), example if len(example) > 1 else example[0])

    def kernels(values: bool) -> list[tuple[object, ...]]:
        fused, attrs = fuse(mod, values=values)
        found = [match_kernel(g) for g in fused_groups(fused, attrs) if not is_view(g)]
        return [(k.op, k.config, k.group.name, tuple(k.group.ops)) for k in found]

    assert kernels(values=False) == kernels(values=True)


def test_stand_in_constants_leave_no_call_on_constants_alone() -> None:
    """A conv's bias reshaped for broadcasting is a computation on a constant: folded without a build."""
    import tvm
    from tvm import relax

    from edgelat.ops.lowering import _passes
    from edgelat.ops.rewrites import StandInConstants

    mod = relax_from_torch(nn.Sequential(nn.Conv2d(3, 8, 3), nn.ReLU()).eval(), torch.randn(1, 3, 8, 8))
    legalized = tvm.transform.Sequential(_passes()[:6])(mod)

    def calls_on_constants(m: tvm.IRModule) -> int:
        found = []

        def visit(expr: object) -> None:
            if isinstance(expr, relax.Call) and expr.op == tvm.ir.Op.get("relax.call_tir"):
                fields = expr.args[1].fields
                found.append(bool(fields) and all(isinstance(f, tvm.ir.expr.Constant) for f in fields))

        relax.analysis.post_order_visit(m["main"], visit)
        return sum(found)

    assert calls_on_constants(legalized) >= 1  # the bias's reshape, before
    assert calls_on_constants(StandInConstants(legalized)) == 0
