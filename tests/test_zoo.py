"""The model zoo, and the NAS-Bench-201 and FBNet network builders."""

from __future__ import annotations

import io
import itertools
from collections.abc import Callable, Iterator

import numpy as np
import onnx
import onnxruntime
import pytest
import torch
from torch import nn

from edgelat.datasets import fbnet, nb201, zoo
from edgelat.errors import UsageError

NB201_ARCH = "|none~0|+|skip_connect~0|nor_conv_3x3~1|+|none~0|avg_pool_3x3~1|nor_conv_1x1~2|"  # a zero node, every op
# skip at stage starts (a projection there), group-2 blocks (channel shuffle), all kernel sizes
FBNET_ARCH = "k5_e6 skip k3_e1_g2 skip k5_e1 skip skip skip k5_e6 k5_e1 k3_e1_g2 k5_e1 k5_e6 k3_e6 k3_e3 k5_e6 k3_e6 k3_e3 k5_e1 k3_e3 k5_e1 k5_e1_g2"

# Published parameter counts (1000 classes): torchvision for ResNet, MobileNetV2/V3, EfficientNet,
# SqueezeNet, ShuffleNetV2, MnasNet, DenseNet; pycls/timm for RegNet and MobileNetV2-1.4;
# pytorchcv for MobileNetV1 and ProxylessNAS.
REFERENCE_PARAMS = {
    "resnet18": 11_689_512,
    "resnet34": 21_797_672,
    "resnet50": 25_557_032,
    "mobilenetv1_100": 4_231_976,
    "mobilenetv2_100": 3_504_872,
    "mobilenetv2_140": 6_108_776,
    "mobilenetv3_small_100": 2_542_856,
    "mobilenetv3_large_100": 5_483_032,
    "efficientnet_b0": 5_288_548,
    "squeezenet1_0": 1_248_424,
    "squeezenet1_1": 1_235_496,
    "shufflenetv2_050": 1_366_792,
    "shufflenetv2_100": 2_278_604,
    "shufflenetv2_150": 3_503_624,
    "mnasnet_050": 2_218_512,
    "mnasnet_100": 4_383_312,
    "densenet121": 7_978_856,
    "regnetx_002": 2_684_792,
    "regnetx_004": 5_157_512,
    "regnety_002": 3_162_996,
    "regnety_004": 4_344_144,
    "proxylessnas_mobile": 4_080_512,
}


@pytest.fixture(autouse=True, scope="module")
def one_thread() -> Iterator[None]:
    """These inputs are tiny: a second thread only adds stalls on a busy two-core machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _first_archs(table: str, n: int = 20) -> list[str]:
    """The first architectures of a latency table edgelat ships (edgelat/datasets/data)."""
    from edgelat.datasets.tables import load_fbnet_table, load_nb201_table

    frame = load_nb201_table() if table == "nb201" else load_fbnet_table()
    return [str(a) for a in frame["arch"].head(n)]


# --- the registry ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", zoo.list_models())
def test_model_runs_at_any_resolution(name: str) -> None:
    model = zoo.create_model(name, num_classes=10).eval()
    with torch.no_grad():
        for resolution in (64, 32):
            out = model(zoo.example_input(resolution))
            assert out.shape == (1, 10)
            assert torch.isfinite(out).all()


@pytest.mark.parametrize(("name", "expected"), sorted(REFERENCE_PARAMS.items()))
def test_parameter_count_matches_reference(name: str, expected: int) -> None:
    assert _params(zoo.create_model(name)) == pytest.approx(expected, rel=0.03)


def test_list_models_filters_with_fnmatch() -> None:
    assert zoo.list_models("resnet*") == ["resnet18", "resnet34", "resnet50"]
    assert zoo.list_models("no_such_*") == []
    assert len(zoo.list_models()) >= 30


def test_unknown_model_names_close_matches() -> None:
    with pytest.raises(UsageError, match="unknown model 'resnet81'.*resnet18"):
        zoo.create_model("resnet81")


def test_unknown_argument_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="mobilenetv2_100"):
        zoo.create_model("mobilenetv2_100", width=2.0)


def test_validation_zoo_covers_every_model() -> None:
    names = {name for name, _ in zoo.VALIDATION_ZOO}
    assert len(zoo.VALIDATION_ZOO) >= 36
    assert len(set(zoo.VALIDATION_ZOO)) == len(zoo.VALIDATION_ZOO)
    assert names == set(zoo.list_models())
    assert len({resolution for _, resolution in zoo.VALIDATION_ZOO}) >= 2
    for name, resolution in zoo.VALIDATION_ZOO:
        if name.startswith(("vgg", "densenet", "resnet50")):
            assert resolution <= 160, name


def test_example_input_is_deterministic() -> None:
    x = zoo.example_input(96, batch=2)
    assert x.shape == (2, 3, 96, 96)
    assert torch.equal(x, zoo.example_input(96, batch=2))
    with pytest.raises(UsageError):
        zoo.example_input(16)


# --- export with static shapes ----------------------------------------------------------------

EXPORTED: dict[str, tuple[Callable[[], nn.Module], int]] = {
    "shufflenetv2_100": (lambda: zoo.create_model("shufflenetv2_100"), 64),
    "mobilenetv3_large_100": (lambda: zoo.create_model("mobilenetv3_large_100"), 64),
    "nb201": (lambda: nb201.build_nb201(NB201_ARCH), 32),
    "fbnet": (lambda: fbnet.build_fbnet(FBNET_ARCH), 32),
}


@pytest.mark.parametrize("name", EXPORTED)
def test_torch_export(name: str) -> None:
    build, resolution = EXPORTED[name]
    model, x = build().eval(), zoo.example_input(resolution)
    program = torch.export.export(model, (x,))
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x))


@pytest.mark.parametrize("name", EXPORTED)
@pytest.mark.filterwarnings("ignore::DeprecationWarning")  # the TorchScript exporter is deprecated
def test_onnx_export_has_static_shapes(name: str) -> None:
    build, resolution = EXPORTED[name]
    model, x = build().eval(), zoo.example_input(resolution)
    buffer = io.BytesIO()
    torch.onnx.export(model, (x,), buffer, dynamo=False)
    proto = onnx.load_from_string(buffer.getvalue())
    onnx.checker.check_model(proto)
    for value in itertools.chain(proto.graph.input, proto.graph.output):
        assert all(d.HasField("dim_value") for d in value.type.tensor_type.shape.dim), value
    assert not {"Shape", "ConstantOfShape"} & {node.op_type for node in proto.graph.node}
    session = onnxruntime.InferenceSession(buffer.getvalue(), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    with torch.no_grad():
        np.testing.assert_allclose(out, model(x).numpy(), rtol=1e-3, atol=1e-3 * float(np.abs(out).max()))


# --- NAS-Bench-201 ----------------------------------------------------------------------------


def test_nb201_dataset_archs_build_and_run() -> None:
    for arch in _first_archs("nb201"):
        assert nb201.arch_to_str(nb201.parse_arch(arch)) == arch
        with torch.no_grad():
            assert nb201.build_nb201(arch).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 10)


def test_nb201_matches_the_benchmark_parameter_count() -> None:
    # NAS-Bench-201's largest CIFAR-10 network (all 3x3 convs) has 1.531546 M parameters
    arch = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert _params(nb201.build_nb201(arch)) == 1_531_546


def test_nb201_all_none_cell_outputs_zeros() -> None:
    net = nb201.build_nb201("|none~0|+|none~0|none~1|+|none~0|none~1|none~2|", num_classes=7).eval()
    with torch.no_grad():
        assert net(torch.randn(2, 3, 32, 32)).shape == (2, 7)


def test_nb201_parse_sorts_edges_and_round_trips() -> None:
    parsed = nb201.parse_arch("|skip_connect~0|+|none~1|nor_conv_1x1~0|+|avg_pool_3x3~2|skip_connect~0|nor_conv_3x3~1|")
    assert parsed[1] == (("nor_conv_1x1", 0), ("none", 1))
    assert nb201.parse_arch(nb201.arch_to_str(parsed)) == parsed
    assert nb201.OPS == ("none", "skip_connect", "nor_conv_1x1", "nor_conv_3x3", "avg_pool_3x3")


@pytest.mark.parametrize(
    ("arch", "problem"),
    [
        ("|nor_conv_3x3~0|+|nor_conv_3x3~0|avg_pool_3x3~1|", "2 node"),
        ("nor_conv_3x3~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "start and end with '|'"),
        ("|conv_5x5~0|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "unknown op 'conv_5x5'"),
        ("|skip_connect|+|skip_connect~0|none~1|+|none~0|none~1|none~2|", "op~input"),
        ("|skip_connect~0|+|skip_connect~0|none~0|+|none~0|none~1|none~2|", "one edge from each of nodes"),
        ("|skip_connect~0|+|skip_connect~0|+|none~0|none~1|none~2|", "one edge from each of nodes"),
        ("", "node"),
    ],
)
def test_nb201_bad_arch_is_a_usage_error(arch: str, problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        nb201.build_nb201(arch)


# --- FBNet ------------------------------------------------------------------------------------


def test_fbnet_dataset_archs_build_and_run() -> None:
    for arch in _first_archs("fbnet"):
        assert len(fbnet.parse_arch(arch)) == fbnet.NUM_LAYERS == 22
        with torch.no_grad():
            assert fbnet.build_fbnet(arch).eval()(torch.randn(1, 3, 32, 32)).shape == (1, 100)


def test_fbnet_accepts_a_list_and_the_csv_string() -> None:
    assert fbnet.parse_arch(FBNET_ARCH.split()) == fbnet.parse_arch(FBNET_ARCH)
    assert len(fbnet.LAYER_CHOICES) == 9


@pytest.mark.parametrize(
    ("arch", "problem"),
    [
        (["k3_e1"] * 21, "22 layers, got 21"),
        ("", "22 layers, got 0"),
        (["k3_e1"] * 21 + ["k7_e6"], "layer 21 .*'k7_e6'"),
        (["k3_e3_g2"] + ["skip"] * 21, "layer 0 .*'k3_e3_g2'"),
    ],
)
def test_fbnet_bad_arch_is_a_usage_error(arch: str | list[str], problem: str) -> None:
    with pytest.raises(UsageError, match=problem):
        fbnet.build_fbnet(arch)
