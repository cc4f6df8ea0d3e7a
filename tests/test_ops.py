"""Every registered op kind, walked from the registry: sampling, emission, fusion, matching."""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgelat.datasets.shapes import real_network_configs
from edgelat.errors import UnknownOpError, UsageError
from edgelat.ops import config_id, fuse, fused_groups, get_op, list_ops


@pytest.mark.parametrize("op", list_ops())
def test_sample_emit_match_roundtrip(op: str) -> None:
    spec = get_op(op)
    rng = np.random.default_rng(42)
    for _ in range(3):
        cfg = spec.sample(rng, [])
        assert spec.validate(cfg) == cfg
        fused, attrs = fuse(spec.emit(cfg))
        groups = fused_groups(fused, attrs)
        if spec.composite:
            assert len(groups) > 1
            continue
        assert len(groups) == 1, [g.name for g in groups]
        assert spec.match(groups[0]) == cfg, groups[0].ops


@pytest.mark.parametrize("op", list_ops())
def test_features_are_finite_and_grow_with_size(op: str) -> None:
    spec = get_op(op)
    cfg = spec.sample(np.random.default_rng(1), [])
    feats = spec.features(cfg)
    assert feats and all(math.isfinite(v) for v in feats.values())
    assert feats["bytes"] > 0 and feats["out_elems"] > 0
    # Doubling a size field that makes the output larger never makes the kernel read, write or compute less.
    grown = []
    for field, value in cfg.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            continue
        bigger = {**cfg, field: 2 * value}
        try:
            spec.validate(bigger)
            more = spec.features(bigger)
        except (UsageError, ValueError, ZeroDivisionError, AssertionError):
            continue  # not a free size (groups must divide channels, a kernel must fit its input...)
        if more["out_elems"] > feats["out_elems"]:
            grown.append(field)
            assert more["bytes"] > feats["bytes"] and more.get("flops", 0) >= feats.get("flops", 0), (field, feats, more)
    sizes = [v for v in cfg.values() if isinstance(v, int) and not isinstance(v, bool)]
    assert grown or not sizes, f"no field of {cfg} makes the output larger"  # (layout's sizes are shape strings)


@pytest.mark.parametrize("op", list_ops())
def test_features_of_a_batch_equal_each_configs_own(op: str) -> None:
    """Training and prediction featurize many configs at once: the same numbers, row by row, as one at a time."""
    spec = get_op(op)
    seeds = real_network_configs().get(op, [])
    rng = np.random.default_rng(3)
    configs = [spec.sample(rng, seeds) for _ in range(60)]
    names = list(spec.features(configs[0]))
    one_by_one = np.array([[spec.features(c)[n] for n in names] for c in configs], dtype=float)
    assert np.array_equal(spec.feature_matrix(configs, names), one_by_one)
    table = spec.feature_table(configs)
    assert list(table.columns) == names and np.array_equal(table.to_numpy(), one_by_one)
    assert len({tuple(r) for r in one_by_one}) > 1  # the draws differ, so rows are not all alike


def test_sampling_is_reproducible_and_uses_seeds() -> None:
    spec = get_op("conv2d")
    a = [spec.sample(np.random.default_rng(7), []) for _ in range(3)]
    b = [spec.sample(np.random.default_rng(7), []) for _ in range(3)]
    assert a == b
    seed = {"n": 1, "cin": 24, "h": 56, "w": 56, "cout": 144, "k": 1, "stride": 1, "pad": 0, "groups": 1, "dilation": 1, "epilogue": "relu"}
    drawn = [spec.sample(np.random.default_rng(i), [seed]) for i in range(20)]
    near = [d for d in drawn if d["k"] == 1 and d["epilogue"] == "relu"]
    assert len(near) >= 10, "seeded sampling should mostly perturb the real-network shape"


def test_kinds_do_not_claim_each_others_kernels() -> None:
    """A depthwise conv is never matched as a dense conv, nor the reverse."""
    dw = get_op("dwconv2d").sample(np.random.default_rng(0), [])
    fused, attrs = fuse(get_op("dwconv2d").emit(dw))
    (group,) = fused_groups(fused, attrs)
    assert get_op("conv2d").match(group) is None
    assert get_op("dwconv2d").match(group) == dw


def test_errors() -> None:
    with pytest.raises(UnknownOpError, match=r"unknown op 'conv3d'; did you mean conv2d.*`edgelat ops` lists them"):
        get_op("conv3d")
    with pytest.raises(UnknownOpError, match=r"unknown op 'xyz'; known ops: dwconv2d, conv2d, .*\(\d+ in all\)"):
        get_op("xyz")
    with pytest.raises(UsageError, match="missing"):
        get_op("dense").validate({"m": 1})
    assert config_id("dense", {"m": 1, "k": 2, "n": 3, "epilogue": ""}) == config_id("dense", {"n": 3, "k": 2, "m": 1, "epilogue": ""})


def test_network_kernels_of_a_torch_block() -> None:
    """A real torch block splits into kernels that the registry recognises."""
    import torch
    from torch import nn

    from edgelat.ops.network import network_kernels, relax_from_torch

    block = nn.Sequential(
        nn.Conv2d(3, 16, 3, 2, 1, bias=False),
        nn.BatchNorm2d(16),
        nn.ReLU6(),
        nn.Conv2d(16, 16, 3, 1, 1, groups=16, bias=False),
        nn.BatchNorm2d(16),
        nn.Hardswish(),
        nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    kernels = network_kernels(relax_from_torch(block, torch.randn(1, 3, 32, 32)))
    ops = [k.op for k in kernels]
    assert ops[:2] == ["conv2d", "dwconv2d"], [k.group.name for k in kernels]
    assert kernels[0].config["epilogue"].endswith("tir_clip") and kernels[0].config["stride"] == 2
    assert kernels[1].config["epilogue"].endswith("divide.s")  # hard-swish fused into the depthwise conv
    assert "max_pool2d" in ops and "global_avg_pool" in ops and "dense" in ops


def test_convs_with_equal_input_and_output_shapes_keep_their_own_attributes() -> None:
    """A MobileNetV1 block: the 3x3 depthwise and the 1x1 conv see the same shapes in and out."""
    import torch
    from torch import nn

    from edgelat.ops.network import network_kernels, relax_from_torch

    block = nn.Sequential(nn.Conv2d(32, 32, 3, 1, 1, groups=32), nn.ReLU(), nn.Conv2d(32, 32, 1), nn.ReLU())
    dw, pw = network_kernels(relax_from_torch(block, torch.randn(1, 32, 8, 8)))
    assert (dw.op, dw.config["k"], dw.config["pad"], dw.config["groups"]) == ("dwconv2d", 3, 1, 32)
    assert (pw.op, pw.config["k"], pw.config["pad"], pw.config["groups"]) == ("conv2d", 1, 0, 1)


def test_what_adaptation_and_pruning_need_lives_on_the_kind() -> None:
    conv = {"n": 1, "cin": 32, "h": 14, "w": 14, "cout": 64, "k": 3, "stride": 1, "pad": 1, "groups": 1, "dilation": 1, "epilogue": ""}
    assert get_op("conv2d").adapt_group(conv) == "conv2d_k3"
    assert get_op("conv2d").adapt_group({**conv, "groups": 4}) == "conv2d_k3_g"
    assert get_op("dwconv2d").adapt_group({**conv, "cout": 32, "groups": 32}) == "dwconv2d_k3"
    assert get_op("softmax").adapt_group({"rows": 4, "cols": 8}) == "softmax"
    assert get_op("conv2d").pruned(conv, 8, 4) == {**conv, "cout": 56, "cin": 28}
    assert get_op("dwconv2d").pruned({**conv, "cout": 32, "groups": 32}, 4, 0) == {**conv, "cin": 28, "cout": 28, "groups": 28}
    assert get_op("dense").pruned({"m": 1, "k": 64, "n": 10, "epilogue": ""}, 0, 16)["k"] == 48
    with pytest.raises(UsageError, match="not edited by channel pruning"):
        get_op("softmax").pruned({"rows": 4, "cols": 8}, 1, 0)


def test_a_gate_fused_into_a_pool_counts_the_map_it_scales() -> None:
    """Mean, then a gate that scales the pooled map (it reads the pool's input): the kernel writes C x H x W."""
    from edgelat.ops import fuse, fused_groups

    spec = get_op("global_avg_pool")
    plain = {"n": 1, "c": 32, "h": 7, "w": 7, "epilogue": ""}
    for gate in ("tir_sigmoid+multiply.i2", "add.s+tir_clip+tir_clip+divide.s+multiply.i5"):
        cfg = {**plain, "epilogue": gate}
        (group,) = fused_groups(*fuse(spec.emit(cfg)))
        assert spec.match(group) == cfg and group.calls[-1].out == (1, 32, 7, 7)
        assert spec.features(cfg)["out_elems"] == 32 * 49 and spec.features(plain)["out_elems"] == 32


def test_a_per_channel_operand_runs_along_the_channels() -> None:
    """``.c``: one value per channel of a conv (axis 1, 4-D or conv1d's 3-D), per output column of a matmul."""
    from edgelat.ops import fuse, fused_groups

    cases = {
        "batch_matmul": ({"b": 2, "m": 64, "k": 16, "n": 32, "epilogue": "add.c+gelu"}, 32),
        "conv2d_rect": ({"n": 1, "cin": 8, "h": 1, "w": 50, "cout": 12, "kh": 1, "kw": 3, "sh": 1, "sw": 1, "ph": 0, "pw": 1,
                         "groups": 1, "dims": 1, "epilogue": "add.c+relu"}, 12),  # fmt: skip
        "conv2d": ({"n": 1, "cin": 8, "h": 9, "w": 9, "cout": 12, "k": 3, "stride": 1, "pad": 1, "groups": 1, "dilation": 1, "epilogue": "add.c"}, 12),
    }
    for op, (cfg, channels) in cases.items():
        (group,) = fused_groups(*fuse(get_op(op).emit(cfg)))
        add = next(c for c in group.calls if c.op == "add")
        small = [a for a in add.args if a is not None and a != add.out]
        assert len(small) == 1 and math.prod(small[0]) == channels and max(small[0]) == channels, (op, add.args)
