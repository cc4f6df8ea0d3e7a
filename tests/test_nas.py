"""Search spaces, latency oracles and the constrained search, on real networks and real fusion."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from edgelat.errors import UsageError
from edgelat.nas import get_space, list_spaces
from edgelat.nas.oracle import BlockOracle, TableOracle
from edgelat.nas.report import plot_axes, write_search_outputs
from edgelat.nas.search import Limits, Measured, min_latency, random_search, search, search_and_verify
from edgelat.ops import get_op
from edgelat.ops.network import network_kernels, relax_from_torch


@pytest.mark.parametrize("name", ["nb201", "fbnet", "ofa"])
def test_space_operators_round_trip(name: str, tmp_path: Path) -> None:
    space = get_space(name)
    rng = np.random.default_rng(0)
    archs = [space.sample(rng) for _ in range(30)]
    assert len(set(archs)) > 20
    for arch in archs:
        genes = space.encode(arch)
        assert genes.shape == (len(space.choices),) and np.all((genes >= 0) & (genes < np.array(space.choices)))
        assert space.decode(genes) == arch
    a, b = archs[0], archs[1]
    assert space.mutate(a, rng) != a
    child = space.encode(space.crossover(a, b, rng))
    ga, gb = space.encode(a), space.encode(b)
    used = np.array([space.decode(np.where(np.arange(len(ga)) == i, 1 - (ga[i] > 0), ga)) != a for i in range(len(ga))])
    assert np.all((child == ga) | (child == gb) | ~used)  # every used gene comes from a parent
    net = space.build(a).eval()
    with torch.no_grad():
        assert net(torch.zeros(space.input_shape(a))).ndim == 2
    model = onnx.load(str(space.export_onnx(a, tmp_path / "a.onnx")))
    assert [d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim] == list(space.input_shape(a))


def test_bad_architectures_are_named() -> None:
    with pytest.raises(UsageError, match="resolution 100"):
        get_space("ofa").encode("r100_w1.0_k3e4-k3e4_k3e4-k3e4_k3e4-k3e4_k3e4-k3e4_k3e4-k3e4")
    with pytest.raises(UsageError, match="stage 2 has 5 blocks"):
        get_space("ofa").encode("r128_w1.0_k3e4-k3e4_k3e4-k3e4-k3e4-k3e4-k3e4_k3e4-k3e4_k3e4-k3e4_k3e4-k3e4")
    with pytest.raises(UsageError, match="layer 3"):
        get_space("fbnet").encode(" ".join(["k3_e1"] * 3 + ["k9_e1"] + ["k3_e1"] * 18))
    with pytest.raises(UsageError, match="unknown search space 'nope'"):
        get_space("nope")
    assert set(list_spaces()) >= {"ofa", "nb201", "fbnet"}


def _pseudo_latency(kernels: Sequence[object]) -> float:
    """A latency stand-in that sees every kernel's op, shapes and epilogue: FLOPs + bytes + a launch cost."""
    total = 0.0
    for k in kernels:
        assert k.op is not None, f"unmatched kernel {k.group.name}"  # type: ignore[attr-defined]
        f = get_op(k.op).features(k.config)  # type: ignore[attr-defined]
        total += 1e-6 * (f["flops"] + f["bytes"]) + 0.01
    return total


def _block_ms(module: object, shape: object) -> float:
    shapes = shape if isinstance(shape, list) else [shape]
    return _pseudo_latency(network_kernels(relax_from_torch(module, tuple(torch.randn(*s) for s in shapes))))


@pytest.mark.parametrize(("name", "tolerance"), [("fbnet", 1e-9), ("ofa", 1e-9), ("nb201", 0.1)])
def test_blocks_add_up_to_the_network(name: str, tolerance: float) -> None:
    """Blocks hold whole fused kernels: the per-block sum is the whole network's (NB201: ReLUs fuse across cells)."""
    space = get_space(name)
    oracle = BlockOracle(space, _block_ms)
    rng = np.random.default_rng(1)
    for arch in [space.sample(rng)]:
        whole = _pseudo_latency(network_kernels(relax_from_torch(space.build(arch), torch.randn(*space.input_shape(arch)))))
        assert oracle.predict([arch])[0] == pytest.approx(whole, rel=tolerance)


def test_nb201_dead_nodes_cost_nothing() -> None:
    """Nodes the cell output does not depend on are compiled away, so they are not blocks either."""
    space = get_space("nb201")
    live = space.blocks("|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|avg_pool_3x3~0|none~1|none~2|")
    assert not any("nor_conv_3x3" in k for k in live)


def test_block_oracle_prices_each_block_once_and_keeps_a_cache(tmp_path: Path) -> None:
    space = get_space("fbnet")
    calls: list[str] = []

    def block_ms(module: object, shape: tuple[int, ...]) -> float:
        calls.append(type(module).__name__)
        return float(sum(p.numel() for p in module.parameters())) * 1e-6 + 0.001  # type: ignore[attr-defined]

    archs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    oracle = BlockOracle(space, block_ms, tmp_path / "cache.json")
    first = oracle.predict(archs + archs)
    assert len(calls) == len(set(k for a in archs for k in space.blocks(a)))
    assert np.array_equal(first[:3], first[3:])
    again = BlockOracle(space, block_ms, tmp_path / "cache.json").predict(archs)
    assert len(calls) == len(set(k for a in archs for k in space.blocks(a)))  # all from the cache file
    assert np.array_equal(again, first[:3])
    assert json.loads((tmp_path / "cache.json").read_text())


def test_a_price_read_back_from_the_cache_is_the_fresh_price_to_the_last_bit(tmp_path: Path) -> None:
    """Groups come back from the cache file sorted by name; a block's total must not depend on their order (these
    three milliseconds add up one unit in the last place apart in these two orders)."""
    space = get_space("nb201")
    groups = {"z": 0.0023268374404349585, "a": 0.0017823392143886383, "m": 0.0001963423771396107}
    assert sum(groups.values()) != sum(groups[g] for g in sorted(groups))
    archs = [space.sample(np.random.default_rng(i)) for i in range(3)]
    fresh = BlockOracle(space, blocks_ms=lambda keys: {k: groups for k in keys}, cache_file=tmp_path / "cache.json").predict(archs)
    cached = BlockOracle(space, blocks_ms=lambda keys: {}, cache_file=tmp_path / "cache.json").predict(archs)
    assert np.array_equal(fresh, cached)


def test_an_architecture_is_placed_between_its_blocks_two_sums_by_its_footprint(tmp_path: Path) -> None:
    """With a device's cache context, an architecture runs ``near + share(footprint) * (far - near)`` over its blocks,
    its footprint all its blocks' weights and its largest block's activations; each block's part is placed alike, so
    the breakdown adds up to the price. Without one, the near sum."""
    from edgelat.nas.oracle import ACTIVATION_MB, FAR_MS, PARAMS_MB
    from edgelat.predictors.context import CacheContext

    space = get_space("fbnet")
    rng = np.random.default_rng(0)
    prices: dict[str, dict[str, float]] = {}

    def blocks_ms(keys: Sequence[str]) -> dict[str, dict[str, float]]:
        for k in keys:
            near = float(rng.uniform(0.1, 1.0))
            prices[k] = {"conv": near, "n_kernels": 2.0, FAR_MS: near * float(rng.uniform(1.0, 2.0)),
                         PARAMS_MB: float(rng.uniform(0.0, 1.0)), ACTIVATION_MB: float(rng.uniform(0.1, 3.0))}  # fmt: skip
        return {k: prices[k] for k in keys}

    curve = CacheContext(center_mb=12.0, width=0.3, height=0.9)
    archs = [space.sample(np.random.default_rng(i)) for i in range(4)]
    placed = BlockOracle(space, blocks_ms=blocks_ms, share=curve.share, cache_file=tmp_path / "c.json")
    totals = placed.predict(archs)
    near_only = BlockOracle(space, blocks_ms=blocks_ms, cache_file=tmp_path / "c.json").predict(archs)  # the same blocks, from the cache
    shares = []
    for arch, total, alone in zip(archs, totals, near_only, strict=True):
        keys = space.blocks(arch)
        near = sum(prices[k]["conv"] for k in keys)
        far = sum(prices[k][FAR_MS] for k in keys)
        mb = sum(prices[k][PARAMS_MB] for k in keys) + max(prices[k][ACTIVATION_MB] for k in keys)
        assert placed.footprint_mb(keys) == pytest.approx(mb)
        shares.append(curve.share(mb))
        assert total == pytest.approx(near + curve.share(mb) * (far - near)) and alone == pytest.approx(near)
        assert sum(ms for _, ms in placed.breakdown(arch)) == pytest.approx(total)
    assert 0.05 < min(shares) and max(shares) < 0.85  # the footprints are on the curve's rise, not at its ends


def _additive_tables(space_name: str) -> tuple[TableOracle, TableOracle, dict[str, float], dict[str, float]]:
    """Every NB201 arch with a latency that adds up over edges and an accuracy that prefers convs."""
    space = get_space(space_name)
    rng = np.random.default_rng(0)
    cost = rng.uniform(0.1, 2.0, size=(len(space.choices), max(space.choices)))
    gain = rng.uniform(0.0, 1.0, size=cost.shape) + cost  # bigger ops score better: a real trade-off
    archs = {space.decode(np.array(g)) for g in np.ndindex(*space.choices)}
    lat = {a: float(cost[np.arange(len(space.choices)), space.encode(a)].sum()) for a in archs}
    acc = {a: float(gain[np.arange(len(space.choices)), space.encode(a)].sum()) for a in archs}
    return TableOracle(lat, space), TableOracle(acc, space), lat, acc


def test_search_meets_the_budget_and_beats_random_search() -> None:
    space = get_space("nb201")
    lat_oracle, acc_oracle, lat, acc = _additive_tables("nb201")
    assert min_latency(space, lat_oracle).predicted_ms == pytest.approx(min(lat.values()))
    budget = float(np.quantile(list(lat.values()), 0.2))
    optimum = max(acc[a] for a in lat if lat[a] <= budget)
    regrets, random_regrets = [], []
    for seed in range(3):
        result = search(space, lat_oracle, acc_oracle.predict, budget, population=24, generations=12, seed=seed)
        assert result.front and all(c.predicted_ms <= budget for c in result.front)
        scores = [c.score for c in result.front]
        assert scores == sorted(scores)  # the front: slower only when better
        regrets.append(optimum - result.best.score)
        baseline = random_search(space, lat_oracle, acc_oracle.predict, budget, result.evaluations, seed=seed)
        random_regrets.append(optimum - baseline.best.score)
    assert np.mean(regrets) < np.mean(random_regrets)


def test_search_stops_on_evaluations_and_refuses_an_impossible_budget() -> None:
    space = get_space("nb201")
    lat_oracle, acc_oracle, lat, _ = _additive_tables("nb201")
    result = search(space, lat_oracle, acc_oracle.predict, max(lat.values()), population=10, generations=100, max_evaluations=40)
    assert result.evaluations <= 40 + 10
    with pytest.raises(UsageError, match=f"smallest reachable predicted latency is {min(lat.values()):.3f} ms"):
        search(space, lat_oracle, acc_oracle.predict, min(lat.values()) * 0.9)


def test_verification_refits_until_a_measured_pick_meets_the_budget() -> None:
    """The first oracle is 40% optimistic; measuring shows it, refit fixes it, round 2 meets the budget."""
    space = get_space("nb201")
    truth, acc_oracle, lat, _ = _additive_tables("nb201")
    optimistic = TableOracle({a: 0.6 * ms for a, ms in lat.items()}, space)
    state = {"oracle": optimistic, "refits": []}

    def refit(archs: list[str]) -> None:
        state["refits"].append(archs)  # type: ignore[attr-defined]
        state["oracle"] = truth

    budget = float(np.quantile(list(lat.values()), 0.3))
    result = search_and_verify(
        space, lambda: state["oracle"], acc_oracle.predict, budget, lambda a: float(truth.predict([a])[0]), refit,
        rounds=3, top_k=2, population=16, generations=8,
    )  # fmt: skip
    assert state["refits"] and result.refits == 1 and result.rounds == 2
    assert result.chosen is not None and result.chosen.measured_ms <= budget and result.chosen.round == 2
    assert all(v.measured_ms > budget for v in result.verified if v.round == 1)
    assert all(abs(v.error) < 1e-9 for v in result.verified if v.round == 2)


def test_the_device_not_the_oracle_says_when_no_architecture_meets_the_budget() -> None:
    """The oracle is 80% pessimistic: it puts every architecture over a budget the fastest ones meet when measured.
    The fastest is measured before anything is refused, the predictions are scaled by what it showed, and the
    search returns a measured pick within the budget. A budget nothing meets when measured is refused with both."""
    space = get_space("nb201")
    truth, acc_oracle, lat, _ = _additive_tables("nb201")
    pessimistic = TableOracle({a: 1.8 * ms for a, ms in lat.items()}, space)
    fastest = min_latency(space, truth)
    budget = 1.2 * fastest.predicted_ms
    assert min_latency(space, pessimistic).predicted_ms > budget  # the oracle alone would refuse
    with pytest.raises(UsageError, match="smallest reachable predicted"):
        search(space, pessimistic, acc_oracle.predict, budget, population=8, generations=2)
    measured: list[str] = []

    def measure(arch: str) -> float:
        measured.append(arch)
        return float(truth.predict([arch])[0])

    result = search_and_verify(space, lambda: pessimistic, acc_oracle.predict, budget, measure, rounds=2, top_k=2, population=16, generations=8)
    assert measured[0] == fastest.arch and result.scaled_by == pytest.approx(1 / 1.8)
    assert result.chosen is not None and result.chosen.measured_ms <= budget
    assert result.as_dict()["oracle_scaled_by"] == pytest.approx(1 / 1.8)
    assert len(measured) == len(set(measured))  # no architecture measured twice
    with pytest.raises(UsageError, match=r"measured at [0-9.]+ ms on the device"):
        search_and_verify(space, lambda: pessimistic, acc_oracle.predict, 0.9 * fastest.predicted_ms, measure, rounds=2, top_k=2)


def test_memory_and_size_limits_are_hard_constraints_predicted_then_measured(tmp_path: Path) -> None:
    """A size law every candidate is judged by (here the number of conv3x3 in the cell, as MB): the front holds only
    architectures within the limits; a pick whose *measured* memory exceeds the limit is not chosen."""
    space = get_space("nb201")
    lat_oracle, acc_oracle, lat, _ = _additive_tables("nb201")

    def size(arch: str) -> float:
        return 1.0 + arch.count("nor_conv_3x3")

    def lightness(archs: Sequence[str]) -> np.ndarray:
        return np.array([[10.0 * size(a), size(a)] for a in archs])

    budget = max(lat.values())
    free = search(space, lat_oracle, acc_oracle.predict, budget, population=16, generations=8)
    limits = Limits(memory_mb=35.0, size_mb=3.0)
    bound = search(space, lat_oracle, acc_oracle.predict, budget, population=16, generations=8, limits=limits, lightness=lightness)
    assert any(size(c.arch) > 3.0 for c in free.front)  # the limit binds: unconstrained, the best cells are larger
    assert bound.front and all(c.size_mb == size(c.arch) <= 3.0 and c.memory_mb is not None and c.memory_mb <= 35.0 for c in bound.front)
    # Measured: the best pick's memory is five times its prediction, over the limit: another pick is chosen.
    top = max(bound.front, key=lambda c: (c.score, -c.predicted_ms)).arch

    def measure(arch: str) -> Measured:
        return Measured(float(lat_oracle.predict([arch])[0]), 10.0 * size(arch) * (5.0 if arch == top else 1.0), size(arch))

    result = search_and_verify(space, lambda: lat_oracle, acc_oracle.predict, budget, measure, rounds=2, top_k=3, population=16,
                               generations=8, limits=limits, make_lightness=lambda: lightness)  # fmt: skip
    assert top in {v.arch for v in result.verified} and all(v.predicted_memory_mb is not None for v in result.verified)
    assert result.chosen is not None and result.chosen.arch != top and (result.chosen.measured_memory_mb or 99.0) <= 35.0
    with pytest.raises(UsageError, match="--memory-mb must be positive"):
        Limits(memory_mb=0)
    # The Pareto plot on memory and accuracy: the front as searched (its memory predicted under the limit).
    import pandas as pd

    paths = write_search_outputs(space, result, tmp_path / "bound", {}, plot_axes("memory,accuracy"))
    assert (pd.read_csv(paths["pareto_csv"])["memory_mb"] <= 35.0).all() and Path(paths["pareto_png"]).stat().st_size > 10_000
    # A search without limits plotted on size: the front's sizes are predicted for the plot.
    free_result = search_and_verify(space, lambda: lat_oracle, acc_oracle.predict, budget, measure, rounds=1, top_k=1,
                                    population=16, generations=4)  # fmt: skip
    paths = write_search_outputs(space, free_result, tmp_path / "free", {}, ("size", "accuracy"), lightness)
    front = pd.read_csv(paths["pareto_csv"])
    assert list(front["size_mb"]) == [size(a) for a in front["arch"]]
    for bad in ("memory", "memory,memory", "latency,speed"):
        with pytest.raises(UsageError, match="--plot takes two different axes"):
            plot_axes(bad)


def test_nb201_parameters_that_cannot_reach_the_output_do_not_exist() -> None:
    """A cell whose last node ignores its convs holds no conv weights, so proxies cannot be fooled by them."""
    space = get_space("nb201")
    constant = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|none~0|none~1|none~2|"
    full = "|nor_conv_3x3~0|+|nor_conv_3x3~0|nor_conv_3x3~1|+|nor_conv_3x3~0|nor_conv_3x3~1|nor_conv_3x3~2|"
    assert not space.output_depends_on_input(constant) and space.output_depends_on_input(full)
    count = {a: sum(p.numel() for p in space.build(a).parameters()) for a in (constant, full)}
    assert count[constant] < count[full] / 10
