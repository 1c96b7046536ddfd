"""Two plans, one result: `single` and `fanout` give the same bytes for every built-in strategy.

The fanout plan runs every piece through its encoded object (fanout.run_in_process), so what
crosses between tasks is exactly what a Step Functions child writes to partials/.
"""

from __future__ import annotations

import hashlib
import itertools

import numpy as np
import pytest
from agg_helpers import as_updates, random_round

from fma.domain.aggregation import Partitioning, aggregate
from fma.domain.aggregation.fanout import (
    RoundInputs,
    compute_piece,
    decode_piece,
    encode_piece,
    reduce,
    run_in_process,
)
from fma.domain.aggregation.passes import NeedPass, partitions, tree_sum
from fma.domain.codec import encode

SHAPES = {"a": (120, 70), "b": (77,), "c": (9000,), "n": (3,)}
DP = {"noise_multiplier": 0.7, "clipping_norm": 0.5, "target_delta": 1e-5}
STRATEGIES = [
    ("fedavg", {}), ("fedprox", {"proximal_mu": 0.1}),
    ("fedavgm", {"server_momentum": 0.9, "server_learning_rate": 0.7}),
    ("fedadagrad", {}), ("fedadam", {}), ("fedyogi", {}), ("fedadam", {"variant": "paper"}),
    ("fedmedian", {}), ("fedtrimmedavg", {"beta": 0.2}),
    ("krum", {"num_malicious": 1}), ("multikrum", {"num_malicious": 1, "num_to_select": 4}),
    ("bulyan", {"num_malicious": 1}),
    ("fedavg", {"dp": DP}), ("fedadam", {"dp": DP}),
    ("fedavg", {"dp": {**DP, "target_quantile": 0.5, "clipped_count_stddev": 3.0}}),
]
#: tiny pieces: 3 updates per partial, 1 shard per range, a reduce tree of fan-in 2.
TINY = Partitioning(partition_updates=3, shard_bytes=16 << 10, reduce_fanin=2)


def _inputs(strategy: str, params: dict, k: int = 11, partitioning: Partitioning = TINY) -> RoundInputs:
    g, clients = random_round(3, k, SHAPES)
    state = {}
    if strategy in ("fedadam", "fedavgm", "fedyogi", "fedadagrad"):  # a second round: momentum, moments
        first = aggregate(strategy, {k_: v for k_, v in params.items() if k_ != "dp"}, g, as_updates(clients),
                          {}, round_number=1)
        state = first.state
    return RoundInputs(strategy, params, g, as_updates(clients), state, round_number=2, seed=5,
                       noise_seed=[7, 8, 9], partitioning=partitioning)


def _sha(model: dict) -> str:
    return hashlib.sha256(encode(model)).hexdigest()


@pytest.mark.parametrize(("strategy", "params"), STRATEGIES, ids=lambda v: str(v)[:40])
def test_single_and_fanout_publish_the_same_bytes(strategy, params):
    inputs = _inputs(strategy, params)
    single = inputs.run(None)
    pieces: list = []
    fanned = run_in_process(inputs, on_piece=pieces.append)
    assert _sha(fanned.model) == _sha(single.model)
    assert {k: v for k, v in fanned.state.items()}.keys() == single.state.keys()
    for name in single.state:
        assert np.asarray(fanned.state[name]).tobytes() == np.asarray(single.state[name]).tobytes()
    assert fanned.info["weights"] == single.info["weights"]
    assert fanned.info.get("selected") == single.info.get("selected")
    assert len(pieces) > 2  # really fanned out into several pieces
    assert _sha(run_in_process(inputs).model) == _sha(single.model)  # a re-run writes the same bytes


def test_partition_pieces_are_client_order_partials_with_weight_totals():
    inputs = _inputs("fedavg", {})
    pieces: list = []
    run_in_process(inputs, on_piece=pieces.append)
    sums = [p for p in pieces if p.kind == "sum"]
    first_range = [p for p in sums if p.facts["range"] == sums[0].facts["range"]]
    assert [p.facts["count"] for p in first_range] == [3, 3, 3, 2]
    assert first_range[0].facts["clients"] == ["c000", "c002"]
    total = sum(p.facts["weight_total"] for p in first_range)
    assert total == pytest.approx(1.0)
    assert all(p.facts["bytes_read"] > 0 and p.facts["requests"] > 0 for p in sums)


def test_sum_pieces_are_partitions_times_parameter_ranges_each_holding_only_its_range():
    """Given a model of several ranges, each decomposable piece is one partition's partial sum
    over one range (range-major), its value the range's length, and together they tile the
    vector once per partition; the published bytes are the single plan's (test above)."""
    inputs = _inputs("fedavg", {})
    pieces: list = []
    run_in_process(inputs, on_piece=pieces.append)
    sums = [p for p in pieces if p.kind == "sum"]
    spans = list(dict.fromkeys(tuple(p.facts["range"]) for p in sums))
    total = sum(int(np.prod(s)) for s in SHAPES.values())
    assert len(spans) > 3 and spans[0][0] == 0 and spans[-1][1] == total
    assert all(a[1] == b[0] for a, b in itertools.pairwise(spans))
    assert len(sums) == 4 * len(spans)
    assert [tuple(p.facts["range"]) for p in sums] == [s for s in spans for _ in range(4)]
    assert all(p.value.size == p.facts["range"][1] - p.facts["range"][0] for p in sums)
    assert max(p.value.nbytes for p in sums) < total * 4 / 3


def test_manifests_before_range_sums_re_run_their_own_arithmetic():
    """A manifest written before range_sums records none: its re-run keeps one piece per
    partition over the whole vector; new manifests record True."""
    old = Partitioning.from_json({"partition_updates": 3, "shard_bytes": 16 << 10, "reduce_fanin": 2})
    assert old.range_sums is False and Partitioning().to_json()["range_sums"] is True
    inputs = _inputs("fedavg", {}, partitioning=old)
    pieces: list = []
    fanned = run_in_process(inputs, on_piece=pieces.append)
    assert [p.value.size for p in pieces] == [sum(int(np.prod(s)) for s in SHAPES.values())] * 4
    assert _sha(fanned.model) == _sha(inputs.run(None).model)


def test_robust_strategies_fan_out_over_parameter_ranges():
    inputs = _inputs("krum", {"num_malicious": 1})
    pieces: list = []
    run_in_process(inputs, on_piece=pieces.append)
    folds = [p for p in pieces if p.kind == "fold"]
    assert len(folds) > 3 and all(p.value.shape == (11, 11) for p in folds)
    starts = [p.facts["range"][0] for p in folds]
    assert starts == sorted(starts) and starts[0] == 0


def test_one_partition_is_exactly_the_plain_streaming_fold():
    """With K <= partition_updates the default plan is the fold that single always ran."""
    inputs = _inputs("fedavg", {}, partitioning=Partitioning())
    u = inputs.updates
    weights = np.array([x.num_examples for x in u], dtype=np.float64)
    weights /= weights.sum()
    from fma.domain.aggregation.engine import Engine

    with Engine(inputs.global_model) as engine:
        plain = engine.partial_sum(sorted(u, key=lambda x: x.client_id), list(weights))
        flat = engine.layout.flatten(inputs.run(None).model)
    assert plain.astype(np.float32).tobytes() == flat.tobytes()


def test_reduce_asks_for_each_pass_in_turn_and_a_child_refuses_a_piece_out_of_range():
    inputs = _inputs("krum", {"num_malicious": 1})
    need = reduce(inputs, lambda p, i: None, 0)
    assert isinstance(need, NeedPass) and need.index == 0 and need.kind == "fold"
    with pytest.raises(ValueError, match="pieces"):
        compute_piece(inputs, lambda p, i: None, 0, need.npieces)


def test_piece_objects_round_trip_value_and_facts():
    inputs = _inputs("fedavg", {})
    piece = compute_piece(inputs, lambda p, i: None, 0, 1)
    value, facts = decode_piece(encode_piece(piece))
    assert value.tobytes() == piece.value.tobytes() and value.flags.writeable
    assert facts["pass"] == 0 and facts["piece"] == 1 and facts["kind"] == "sum"


@pytest.mark.parametrize(("n", "fanin"), [(1, 2), (2, 2), (5, 2), (9, 3), (33, 32), (64, 4)])
def test_tree_sum_is_the_level_by_level_tree(n, fanin):
    rng = np.random.default_rng(n)
    items = [rng.standard_normal(50).astype(np.float32) * 10.0 ** rng.integers(-3, 4) for _ in range(n)]
    level = [x.copy() for x in items]
    while len(level) > 1:  # the definition, written plainly
        groups = [level[i : i + fanin] for i in range(0, len(level), fanin)]
        level = []
        for g in groups:
            acc = g[0].copy()
            for x in g[1:]:
                acc += x
            level.append(acc)
    assert tree_sum(iter([x.copy() for x in items]), fanin).tobytes() == level[0].tobytes()


def test_partitions_cover_in_order():
    assert partitions(7, 3) == [(0, 3), (3, 6), (6, 7)]
    assert partitions(0, 3) == []


def _probe(*args: object) -> dict:
    import json
    import subprocess
    import sys
    from pathlib import Path

    probe = Path(__file__).with_name("agg_fanout_probe.py")
    out = subprocess.run([sys.executable, str(probe), *map(str, args)], capture_output=True, text=True,
                         check=True, timeout=300)
    return json.loads(out.stdout)


def test_a_partition_child_holds_its_accumulator_and_the_reads_in_flight_whatever_its_partition():
    """tracemalloc: a child folding 30 or 60 updates of a 2M-parameter model holds its float32
    accumulator and the reads in flight (prefetch = 3 ahead, the one being folded, the one
    being fetched: each a whole 8 MB update here, up to chunk_bytes), whatever the number of
    updates it folds."""
    small, large = _probe("fedavg", 30, 2_000_000, 30, 64 << 20), _probe("fedavg", 60, 2_000_000, 60, 64 << 20)
    for r, k in ((small, 30), (large, 60)):
        assert r["kind"] == "sum" and r["bytes_read"] >= k * r["model_bytes"]
        assert r["peak_extra"] < r["model_bytes"] + (3 + 2) * r["model_bytes"] * 1.1, r
    assert large["peak_extra"] < 1.2 * small["peak_extra"]  # memory does not grow with the partition


def test_a_range_child_holds_clients_times_shard_not_clients_times_model():
    """A median child over one 1 MB parameter range of 20 clients: its range and a few
    clients x 256 KiB shard blocks, not the 20 x 8 MB that the whole model would be."""
    r = _probe("fedmedian", 20, 2_000_000, 1000, 1 << 20)
    assert r["kind"] == "map" and r["value_bytes"] == 1 << 20
    assert r["bytes_read"] < 20 * (1 << 20) + 20 * (128 << 10)  # its byte range of each update (+ headers)
    assert r["peak_extra"] < (1 << 20) + 3 * 20 * (256 << 10), r
