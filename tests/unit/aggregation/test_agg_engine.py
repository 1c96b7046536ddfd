"""The engine: what it reads, how much at once, determinism, dtypes and odd layouts."""

from __future__ import annotations

import json
import struct
import threading
import time

import numpy as np
import pytest
from agg_helpers import Reads, as_updates, make_update, random_round

from fma.domain.aggregation import EngineOptions, UpdateInput, aggregate, weighted_metrics
from fma.domain.aggregation.layout import HEADER_PROBE_BYTES


def big_round(k=4, n=40_000, seed=0):
    rng = np.random.default_rng(seed)
    g = {"a": np.zeros(n, np.float32), "b": np.zeros((100, 7), np.float32)}
    clients = [({"a": rng.standard_normal(n).astype(np.float32),
                 "b": rng.standard_normal((100, 7)).astype(np.float32)}, i + 1) for i in range(k)]
    return g, clients


def test_fedavg_reads_each_update_once_in_ranged_reads_without_whole_fetches():
    g, clients = big_round()
    reads = Reads()
    updates = as_updates(clients, reads)
    opts = EngineOptions(chunk_bytes=32 << 10)
    out = aggregate("fedavg", {}, g, updates, {}, round_number=1, options=opts)
    sizes = sum(u.size for u in updates)
    assert reads.bytes <= sizes + len(updates) * HEADER_PROBE_BYTES
    assert out.info["bytes_read"] == reads.bytes
    data_bytes = 4 * (40_000 + 700)
    assert out.info["requests"] == len(updates) * (1 + -(-data_bytes // (32 << 10)))


def test_coordinatewise_reads_are_bounded_by_the_shard_size():
    g, clients = big_round(k=5)
    biggest = []

    def spy(u: UpdateInput) -> UpdateInput:
        def fetch_range(a, b):
            biggest.append((a, b - a))
            return u.fetch_range(a, b)
        return UpdateInput(u.client_id, u.num_examples, u.sha256, u.size, u.fetch, fetch_range, u.metrics)

    updates = [spy(u) for u in as_updates(clients)]
    aggregate("fedmedian", {}, g, updates, {}, round_number=1, options=EngineOptions(shard_bytes=4 * 2048))
    # an update's first read brings its header with its first shard; every other read is one shard
    assert max(n for a, n in biggest if a == 0) <= HEADER_PROBE_BYTES + 2048 * 4
    assert max(n for a, n in biggest if a > 0) <= 2048 * 4
    assert sum(a == 0 for a, _ in biggest) == len(updates)  # one header read per update


def slow(u: UpdateInput, seconds: float = 2e-4) -> UpdateInput:
    """The same update behind a read latency, so that the download threads are used."""
    def fetch_range(a, b):
        time.sleep(seconds)
        return u.fetch_range(a, b)
    return UpdateInput(u.client_id, u.num_examples, u.sha256, u.size, u.fetch, fetch_range, u.metrics)


@pytest.mark.parametrize("name", ["fedavg", "fedmedian", "krum", "fedadam"])
def test_a_rerun_writes_the_same_bytes_whatever_the_prefetch_depth(name):
    g, clients = random_round(9, 6)
    runs = [
        aggregate(name, {}, g, [slow(u) for u in as_updates(clients)] if latency else as_updates(clients), {},
                  round_number=1, options=EngineOptions(chunk_bytes=64, shard_bytes=100, prefetch=p))
        for p, latency in ((0, False), (1, True), (3, True), (3, True), (3, False))
    ]
    for other in runs[1:]:
        assert all(other.model[n].tobytes() == runs[0].model[n].tobytes() for n in g)


def test_output_keeps_each_tensor_dtype_and_shape():
    g = {"h": np.ones((3, 2), np.float16), "d": np.ones(4, np.float64), "i": np.array([3, 5], np.int64)}
    clients = [({"h": np.full((3, 2), 2, np.float16), "d": np.full(4, 2.0), "i": np.array([4, 6])}, 1),
               ({"h": np.full((3, 2), 4, np.float16), "d": np.full(4, 4.0), "i": np.array([6, 8])}, 3)]
    out = aggregate("fedavg", {}, g, as_updates(clients), {}, round_number=1).model
    assert {n: (a.dtype, a.shape) for n, a in out.items()} == {n: (a.dtype, a.shape) for n, a in g.items()}
    np.testing.assert_allclose(out["h"], 3.5)
    np.testing.assert_allclose(out["d"], 3.5)
    np.testing.assert_array_equal(out["i"], [6, 8])  # 5.5 -> 6, 7.5 -> 8: rounded to even


def raw_safetensors(tensors: dict[str, np.ndarray], order: list[str]) -> bytes:
    """A valid safetensors file with tensors laid out in `order` (not the library's order)."""
    header, offset, body = {}, 0, b""
    for name in order:
        data = np.ascontiguousarray(tensors[name]).tobytes()
        header[name] = {"dtype": "F32", "shape": list(tensors[name].shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        body += data
    text = json.dumps(header).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + body


def test_updates_with_another_tensor_layout_are_read_correctly():
    g, clients = random_round(4, 3)
    updates = as_updates(clients)
    data = raw_safetensors(clients[0][0], sorted(g, reverse=True))
    odd = UpdateInput("c000", clients[0][1], "0" * 64, len(data), lambda: data, lambda a, b: data[a:b])
    opts = EngineOptions(chunk_bytes=60, shard_bytes=120)
    for name in ("fedavg", "fedmedian"):
        ref = aggregate(name, {}, g, updates, {}, round_number=1, options=opts).model
        got = aggregate(name, {}, g, [odd, *updates[1:]], {}, round_number=1, options=opts).model
        for n in g:
            np.testing.assert_allclose(got[n], ref[n], rtol=1e-6)


def test_an_update_that_does_not_match_the_model_is_refused():
    g, clients = random_round(4, 2)
    wrong = make_update("bad", {"other": np.zeros(3, np.float32)})
    with pytest.raises(ValueError, match="tensors"):
        aggregate("fedavg", {}, g, [*as_updates(clients), wrong], {}, round_number=1)


def test_weighted_metrics_weigh_by_examples_over_the_clients_that_report_them():
    g, clients = random_round(1, 3)
    metrics = [{"loss": 1.0, "acc": 0.5}, {"loss": 3.0}, {}]
    updates = as_updates(clients, metrics=metrics)
    n0, n1 = clients[0][1], clients[1][1]
    expected = {"acc": 0.5, "loss": (1.0 * n0 + 3.0 * n1) / (n0 + n1)}
    assert weighted_metrics(updates) == pytest.approx(expected)
    for name in ("fedavg", "fedmedian", "fedyogi"):
        assert aggregate(name, {}, g, updates, {}, round_number=1).metrics == pytest.approx(expected)


def test_info_lists_weights_timings_and_strategy_and_is_json_safe():
    g, clients = random_round(1, 3)
    out = aggregate("fedavgm", {"server_momentum": 0.5}, g, as_updates(clients), {}, round_number=1)
    info = json.loads(json.dumps(out.info))
    assert sum(info["weights"].values()) == pytest.approx(1.0)
    assert set(info["timings"]) == {"fetch", "wait", "decode", "compute", "total"}
    assert info["strategy"] == "fedavgm" and info["params"]["server_momentum"] == 0.5
    assert info["bytes_read"] > 0
    assert [i["client_id"] for i in info["inputs"]] == sorted(info["weights"])
    assert all(i["sha256"] == "0" * 64 and i["weight"] == info["weights"][i["client_id"]] for i in info["inputs"])


def test_no_updates_and_duplicate_clients_are_refused():
    from fma.domain.errors import InvalidInput

    g, clients = random_round(1, 2)
    with pytest.raises(InvalidInput):
        aggregate("fedavg", {}, g, [], {}, round_number=1)
    u = as_updates(clients)[0]
    with pytest.raises(InvalidInput):
        aggregate("fedavg", {}, g, [u, u], {}, round_number=1)


def test_downloads_overlap_when_reads_take_time():
    g, clients = big_round(k=4)
    active, peak = [0], [0]
    lock = threading.Lock()

    def latent(u: UpdateInput) -> UpdateInput:
        def fetch_range(a, b):
            with lock:
                active[0] += 1
                peak[0] = max(peak[0], active[0])
            time.sleep(0.005)
            with lock:
                active[0] -= 1
            return u.fetch_range(a, b)
        return UpdateInput(u.client_id, u.num_examples, u.sha256, u.size, u.fetch, fetch_range, u.metrics)

    updates = [latent(u) for u in as_updates(clients)]
    opts = EngineOptions(chunk_bytes=16 << 10, prefetch=3)
    plain = aggregate("fedavg", {}, g, as_updates(clients), {}, round_number=1, options=opts)
    out = aggregate("fedavg", {}, g, updates, {}, round_number=1, options=opts)
    assert peak[0] >= 2
    assert all(out.model[n].tobytes() == plain.model[n].tobytes() for n in g)


def test_portable_sums_give_the_same_bytes_whatever_the_chunking():
    g, clients = big_round(k=5, n=30_001)
    outs = [
        aggregate("fedavg", {}, g, as_updates(clients), {}, round_number=1,
                  options=EngineOptions(chunk_bytes=c, portable=True)).model
        for c in (4 << 10, 12_345 * 4, 16 << 20)
    ]
    fused = aggregate("fedavg", {}, g, as_updates(clients), {}, round_number=1).model
    for other in outs[1:]:
        assert all(other[n].tobytes() == outs[0][n].tobytes() for n in g)
    for n in g:  # the fused default differs by float32 roundings at most
        np.testing.assert_allclose(fused[n], outs[0][n], rtol=1e-5, atol=1e-6)
