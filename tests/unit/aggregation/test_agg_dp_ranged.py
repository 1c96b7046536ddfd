"""Central DP range by range (issue 14): the clipped clients' share of the global model and the
noise are applied to each range of the sum as it is combined, so the fanout reduce of a DP round
never holds the model. The noise is drawn per 1 Mi-element chunk from its own stream (any range
of it without what comes before), the arithmetic is recorded (`Partitioning.ranged_dp`), and
rounds recorded before it re-run with their one noise stream."""

from __future__ import annotations

import hashlib
import itertools
from unittest import mock

import numpy as np
import pytest
from agg_helpers import as_updates
from hypothesis import given, settings
from hypothesis import strategies as st

from fma.domain.aggregation import Partitioning, aggregate, dp
from fma.domain.aggregation.fanout import RoundInputs, run_in_process
from fma.domain.codec import encode

# 1.1 M float elements: two noise chunks; an integer tensor between float ones
SHAPES = {"a": (1100, 1000), "b": (77,), "c": (5,)}
DP = {"noise_multiplier": 0.7, "clipping_norm": 0.5, "target_delta": 1e-5, "expected_clients": 6}
SEED = [7, 8, 9]


def dp_round(k: int = 4, integers: bool = True):
    """A round of k updates; with `integers`, an int64 tensor `c` (then the sum is float64)."""
    rng = np.random.default_rng(3)
    g = {"a": rng.standard_normal(SHAPES["a"]).astype(np.float32),
         "b": rng.standard_normal(SHAPES["b"]).astype(np.float32)} | ({"c": np.arange(5)} if integers else {})
    clients = []
    for i in range(k):
        x = {"a": (g["a"] + rng.standard_normal(SHAPES["a"]) * 0.01 * (i + 1)).astype(np.float32),
             "b": (g["b"] + 0.5 * i).astype(np.float32)}
        clients.append((x | ({"c": g["c"] + 10 * (i + 1)} if integers else {}), 10 + i))
    return g, as_updates(clients)


def _sha(model: dict) -> str:
    return hashlib.sha256(encode(model)).hexdigest()


@settings(max_examples=60, deadline=None)
@given(total=st.integers(1, 700), cuts=st.lists(st.integers(0, 700), max_size=6), std=st.floats(0.01, 10.0),
       seed=st.lists(st.integers(0, 2**32 - 1), min_size=1, max_size=8))
def test_chunked_noise_is_the_same_whatever_ranges_it_is_drawn_in(total, cuts, std, seed):
    bounds = sorted({0, total, *(c for c in cuts if c < total)})
    whole, parts = np.zeros(total, np.float32), np.zeros(total, np.float32)
    with mock.patch.object(dp, "NOISE_CHUNK", 64):  # many chunks, ranges across their boundaries
        dp.add_noise_range(whole, 0, total, std, seed)
        for a, b in itertools.pairwise(bounds):
            dp.add_noise_range(parts[a:b], a, total, std, seed)
    assert np.array_equal(whole, parts) and (total < 8 or np.std(whole) > 0)


def test_chunked_noise_is_gaussian_of_the_asked_deviation_and_independent_between_chunks():
    values = np.zeros(3 * dp.NOISE_CHUNK, np.float32)
    dp.add_noise_range(values, 0, values.size, 2.0, SEED)
    chunks = values.reshape(3, -1)
    assert abs(values.std() - 2.0) < 0.01 and abs(values.mean()) < 0.01
    assert abs(np.corrcoef(chunks[0], chunks[1])[0, 1]) < 0.01
    other = np.zeros_like(values)
    dp.add_noise_range(other, 0, other.size, 2.0, [7, 8, 10])  # another round's seed: other noise
    assert abs(np.corrcoef(values, other)[0, 1]) < 0.01


@pytest.mark.parametrize("ranged", [True, False])
def test_the_privatized_mean_is_the_noise_free_mean_plus_the_recorded_noise_layout(ranged):
    # Given a float32 DP round whose clipped mean is known (the same round with no noise)
    g, updates = dp_round(integers=False)
    part = Partitioning(shard_bytes=256 << 10, ranged_dp=ranged)
    quiet = aggregate("fedavg", {"dp": {**DP, "noise_multiplier": 0.0}}, g, updates, {}, round_number=1,
                      noise_seed=SEED, partitioning=part)
    # When it is aggregated with noise under either recorded arithmetic
    noised = aggregate("fedavg", {"dp": DP}, g, updates, {}, round_number=1, noise_seed=SEED, partitioning=part)
    # Then the model is that mean plus the layout's noise of std z C / m
    std = 0.7 * 0.5 / 6
    for name in ("a", "b"):
        assert np.abs(quiet.model[name] - noised.model[name]).max() > 0  # noise was added
    flat = np.concatenate([quiet.model[n].reshape(-1) for n in ("a", "b")])
    if ranged:
        dp.add_noise_range(flat, 0, flat.size, std, SEED)
    else:
        dp.add_noise(flat, std, SEED)
    expected = np.concatenate([noised.model[n].reshape(-1) for n in ("a", "b")])
    assert np.array_equal(flat, expected)
    assert noised.info["partitioning"]["ranged_dp"] is ranged


@pytest.mark.parametrize("ranged", [True, False])
def test_integer_tensors_are_not_released_under_either_arithmetic(ranged):
    g, updates = dp_round()
    for strategy in ("fedavg", "fedadam"):
        out = aggregate(strategy, {"dp": DP}, g, updates, {}, round_number=1, noise_seed=SEED,
                        partitioning=Partitioning(shard_bytes=256 << 10, ranged_dp=ranged))
        assert np.array_equal(out.model["c"], g["c"]) and out.model["c"].dtype == g["c"].dtype


def test_manifests_before_ranged_dp_re_run_with_one_noise_stream():
    old = Partitioning.from_json({"partition_updates": 3, "shard_bytes": 16 << 10, "reduce_fanin": 2,
                                  "range_sums": True})
    assert old.ranged_dp is False and Partitioning().to_json()["ranged_dp"] is True
    g, updates = dp_round()
    new = aggregate("fedavg", {"dp": DP}, g, updates, {}, round_number=1, noise_seed=SEED)
    before = aggregate("fedavg", {"dp": DP}, g, updates, {}, round_number=1, noise_seed=SEED, partitioning=old)
    assert _sha(new.model) != _sha(before.model)  # the layouts differ: a re-run must use its own


@pytest.mark.parametrize(("strategy", "params"), [
    ("fedavg", {}), ("fedadam", {}), ("fedavgm", {"server_momentum": 0.9, "server_learning_rate": 0.7}),
], ids=lambda v: v if isinstance(v, str) else "")
def test_dp_rounds_across_many_ranges_and_noise_chunks_give_the_same_bytes_in_both_plans(strategy, params):
    g, updates = dp_round()
    part = Partitioning(partition_updates=3, shard_bytes=192 << 10, reduce_fanin=2)  # ranges across chunks
    state = aggregate(strategy, params, g, updates, {}, round_number=1).state if params or strategy != "fedavg" \
        else {}
    inputs = RoundInputs(strategy, {**params, "dp": DP}, g, updates, state, round_number=2, seed=5,
                         noise_seed=SEED, partitioning=part)
    single, fanned = inputs.run(None), run_in_process(inputs)
    assert _sha(single.model) == _sha(fanned.model)
    assert _sha({k: np.asarray(v) for k, v in single.state.items()}) == \
        _sha({k: np.asarray(v) for k, v in fanned.state.items()})
    assert np.array_equal(np.asarray(fanned.model["c"]), g["c"])  # integers are not released
