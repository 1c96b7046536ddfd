"""Property tests (hypothesis) of the aggregation rules, through `aggregate` and its ranged
reads, with small chunk and shard sizes."""

from __future__ import annotations

import numpy as np
from agg_helpers import as_updates, make_update, rel_err
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from fma.domain.aggregation import EngineOptions, aggregate

TINY = EngineOptions(chunk_bytes=40, shard_bytes=64, prefetch=1)
PROPS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
values = st.floats(-1e3, 1e3, allow_nan=False, width=32)


@st.composite
def rounds(draw, min_clients=1, max_clients=7):
    """A global model of two tensors and k client models with num_examples."""
    k = draw(st.integers(min_clients, max_clients))
    a, b = draw(st.integers(1, 9)), draw(st.integers(1, 5))
    clients = []
    for _ in range(k):
        t = {"a": draw(arrays(np.float32, (a,), elements=values)),
             "b": draw(arrays(np.float32, (b, 2), elements=values))}
        clients.append((t, draw(st.integers(1, 1000))))
    g = {"a": np.zeros(a, np.float32), "b": np.zeros((b, 2), np.float32)}
    return g, clients


def run(name, params, g, updates):
    return aggregate(name, params, g, updates, {}, round_number=1, options=TINY)


@PROPS
@given(rounds(), st.randoms(use_true_random=False),
       st.sampled_from(["fedavg", "fedmedian", "fedtrimmedavg", "krum"]))
def test_order_of_updates_does_not_change_the_bytes(r, rnd, name):
    g, clients = r
    assume(name != "krum" or len(clients) > 2)  # Krum's n > 2f + 2
    updates = as_updates(clients)
    shuffled = list(updates)
    rnd.shuffle(shuffled)
    first, second = run(name, {}, g, updates), run(name, {}, g, shuffled)
    assert all(first.model[n].tobytes() == second.model[n].tobytes() for n in g)


@PROPS
@given(rounds(min_clients=2), st.randoms(use_true_random=False),
       st.sampled_from(["fedavg", "fedmedian", "fedtrimmedavg"]))
def test_permuting_which_client_sent_what_does_not_change_the_result(r, rnd, name):
    g, clients = r
    permuted = list(clients)
    rnd.shuffle(permuted)
    first, second = run(name, {}, g, as_updates(clients)), run(name, {}, g, as_updates(permuted))
    for n in g:
        np.testing.assert_allclose(first.model[n], second.model[n], rtol=1e-5, atol=1e-3)


@PROPS
@given(rounds(max_clients=1), st.lists(st.integers(1, 10**6), min_size=1, max_size=12))
def test_fedavg_of_identical_updates_is_that_update(r, counts):
    g, (only,) = r
    updates = [make_update(f"c{i}", only[0], n) for i, n in enumerate(counts)]
    out = run("fedavg", {}, g, updates).model
    for n in g:
        np.testing.assert_allclose(out[n], only[0][n], rtol=2e-6, atol=1e-6)


@PROPS
@given(rounds())
def test_trimmed_mean_with_beta_zero_is_the_plain_mean(r):
    g, clients = r
    out = run("fedtrimmedavg", {"beta": 0.0}, g, as_updates(clients)).model
    for n in g:
        expected = np.mean([np.float64(t[n]) for t, _ in clients], axis=0)
        np.testing.assert_allclose(out[n], expected, rtol=1e-6, atol=1e-4)


@PROPS
@given(rounds(min_clients=3, max_clients=7), st.integers(1, 3),
       st.floats(-1e30, 1e30, allow_nan=False, allow_infinity=False))
def test_median_stays_within_the_honest_values_whatever_f_outliers_send(r, f, evil):
    g, honest = r
    f = min(f, (len(honest) - 1) // 2)  # a majority stays honest
    bad = [({n: np.full_like(v, np.float32(evil)) for n, v in g.items()}, 1) for _ in range(f)]
    out = run("fedmedian", {}, g, as_updates(honest + bad)).model
    for n in g:
        stack = np.stack([t[n] for t, _ in honest])
        assert np.all(out[n] >= stack.min(axis=0)) and np.all(out[n] <= stack.max(axis=0))


@PROPS
@given(rounds(min_clients=2))
def test_fedavg_stays_within_1e_6_of_a_float64_reference(r):
    g, clients = r
    out = run("fedavg", {}, g, as_updates(clients)).model
    total = sum(n for _, n in clients)
    ref = {k: sum(np.float64(t[k]) * n for t, n in clients) / total for k in g}
    scale = max(1.0, max(float(np.abs(np.float64(t[k])).max()) for t, _ in clients for k in g))
    for k in g:
        assert np.max(np.abs(out[k] - ref[k])) <= 1e-6 * scale * 4


def test_fedavg_of_many_clients_is_within_1e_6_relative_of_float64():
    rng = np.random.default_rng(0)
    g = {"w": np.zeros(20_000, np.float32)}
    clients = [({"w": rng.standard_normal(20_000).astype(np.float32) + 1}, int(rng.integers(1, 500)))
               for _ in range(100)]
    out = aggregate("fedavg", {}, g, as_updates(clients), {}, round_number=1).model
    total = sum(n for _, n in clients)
    ref = {"w": sum(np.float64(t["w"]) * n for t, n in clients) / total}
    assert rel_err(out, ref) < 1e-6
