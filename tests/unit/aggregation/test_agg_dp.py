"""The central-DP wrapper: clipping bound, seeded noise, and the privacy accountant."""

from __future__ import annotations

import math

import numpy as np
import pytest
from agg_helpers import as_updates, random_round

from fma.domain.aggregation import EngineOptions, aggregate
from fma.domain.aggregation.dp import epsilon

OPTS = EngineOptions(chunk_bytes=128, shard_bytes=128)


def dp_run(g, clients, dp, state=None, seed=1, name="fedavg", options=OPTS):
    return aggregate(name, {"dp": dp}, g, as_updates(clients), state or {}, round_number=1,
                     seed=seed, options=options)


def delta_norm(a, g):
    return math.sqrt(sum(float(np.sum((np.float64(a[n]) - g[n]) ** 2)) for n in g))


@pytest.mark.parametrize("name", ["fedavg", "fedprox", "fedavgm"])
def test_without_noise_the_aggregate_moves_at_most_the_clipping_norm(name):
    g, clients = random_round(1, 6, spread=2.0)
    out = dp_run(g, clients, {"clipping_norm": 0.25, "noise_multiplier": 0.0}, name=name)
    assert delta_norm(out.model, g) <= 0.25 * (1 + 1e-5)
    assert out.info["privacy"]["epsilon"] is None  # no noise, no privacy


def test_updates_inside_the_clipping_norm_are_left_alone_and_weighted_uniformly():
    g, clients = random_round(2, 5, spread=1e-3)  # random num_examples: DP ignores them
    dp = dp_run(g, clients, {"clipping_norm": 100.0, "noise_multiplier": 0.0})
    for n in g:
        uniform = np.mean([np.float64(t[n]) for t, _ in clients], axis=0)
        np.testing.assert_allclose(dp.model[n], uniform, rtol=1e-6, atol=1e-7)
    assert set(dp.info["weights"].values()) == {1 / 5}
    assert dp.info["privacy"]["clipped_clients"] == 0


def test_noise_is_reproducible_from_the_seed_and_has_the_calibrated_stddev():
    g = {"w": np.zeros(200_000, np.float32)}
    clients = [({"w": np.zeros(200_000, np.float32)}, 1) for _ in range(4)]
    dp = {"clipping_norm": 2.0, "noise_multiplier": 1.5}
    a, b = dp_run(g, clients, dp, seed=7), dp_run(g, clients, dp, seed=7)
    c = dp_run(g, clients, dp, seed=8, options=EngineOptions(chunk_bytes=4096, shard_bytes=1 << 20))
    assert a.model["w"].tobytes() == b.model["w"].tobytes()
    assert a.model["w"].tobytes() != c.model["w"].tobytes()
    expected = 1.5 * 2.0 / 4
    assert a.info["privacy"]["noise_stddev"] == pytest.approx(expected)
    assert np.std(a.model["w"]) == pytest.approx(expected, rel=0.01)
    assert abs(np.mean(a.model["w"])) < 5 * expected / math.sqrt(200_000)


def test_epsilon_accumulates_over_rounds_through_the_state():
    g, clients = random_round(3, 4)
    dp = {"clipping_norm": 1.0, "noise_multiplier": 1.1, "target_delta": 1e-5}
    state, eps = {}, []
    for _ in range(3):
        out = dp_run(g, clients, dp, state)
        state = out.state
        eps.append(out.info["privacy"]["epsilon"])
    assert int(state["dp/rounds"]) == 3
    assert eps[0] < eps[1] < eps[2]
    assert eps[2] == pytest.approx(epsilon(1.1, 3, 1e-5))


@pytest.mark.parametrize(("z", "rounds"), [(1.0, 1), (1.1, 10), (4.0, 100)])
def test_epsilon_is_within_the_classic_rdp_bound_of_the_gaussian_mechanism(z, rounds):
    """Paper check (Mironov 2017): RDP of T Gaussian releases is T a / (2 z^2); converting
    with log(1/delta) / (a - 1) gives an upper bound that the accountant must not exceed,
    while staying within a factor of it."""
    delta = 1e-5
    orders = np.linspace(1.01, 512, 200_000)
    bound = float(np.min(rounds * orders / (2 * z * z) + math.log(1 / delta) / (orders - 1)))
    eps = epsilon(z, rounds, delta)
    assert 0.5 * bound < eps <= bound * (1 + 1e-6)


def test_poisson_sampling_amplifies_privacy():
    assert epsilon(1.0, 10, 1e-5, sampling_rate=0.1) < epsilon(1.0, 10, 1e-5)


def test_dp_state_is_kept_apart_from_the_wrapped_strategy_state():
    g, clients = random_round(4, 4)
    dp = {"clipping_norm": 1.0, "noise_multiplier": 0.5}
    out = aggregate("fedadam", {"dp": dp}, g, as_updates(clients), {}, round_number=1, seed=3)
    assert "dp/rounds" in out.state and "step" in out.state
    again = aggregate("fedadam", {"dp": dp}, g, as_updates(clients), out.state, round_number=2, seed=4)
    assert int(again.state["step"]) == 2 and int(again.state["dp/rounds"]) == 2


def _norms_round(norms, seed=0):
    """A global model at 0 and one client per norm, each update pointing its own way."""
    rng = np.random.default_rng(seed)
    g = {"w": np.zeros(16, np.float32)}
    clients = []
    for x in norms:
        v = rng.standard_normal(16)
        clients.append(({"w": (v / np.linalg.norm(v) * x).astype(np.float32)}, 1))
    return g, clients


def test_adaptive_clipping_follows_the_paper_where_flower_moves_the_wrong_way():
    """Andrew et al. 2021, Alg. 1: b = fraction of clients NOT clipped, C <- C exp(-lr (b - gamma)).
    Flower 1.42 counts the clipped clients instead, so when nobody is clipped it raises C.
    FMA is tested against the paper's formula, and Flower's direction is shown for the record."""
    from flwr.server import strategy as fl
    from flwr.server.strategy.dp_adaptive_clipping import DifferentialPrivacyServerSideAdaptiveClipping

    g, clients = _norms_round([0.1, 0.2, 0.3, 0.4])  # all below C = 1: nobody is clipped
    dp = {"clipping_norm": 1.0, "noise_multiplier": 0.0, "target_quantile": 0.5, "clip_norm_lr": 0.2}
    out = dp_run(g, clients, dp)
    paper = 1.0 * math.exp(-0.2 * (4 / 4 - 0.5))
    assert float(out.state["dp/clipping_norm"]) == pytest.approx(paper)
    assert out.info["privacy"]["next_clipping_norm"] == pytest.approx(paper) and paper < 1.0

    from agg_helpers import as_ndarrays, fit_results

    flower = DifferentialPrivacyServerSideAdaptiveClipping(fl.FedAvg(), 0.0, 4, initial_clipping_norm=1.0,
                                                           target_clipped_quantile=0.5, clip_norm_lr=0.2)
    flower.current_round_params = as_ndarrays(g)
    flower.aggregate_fit(1, fit_results(clients), [])
    assert flower.clipping_norm == pytest.approx(math.exp(0.2 * 0.5)) and flower.clipping_norm > 1.0


def test_adaptive_clipping_norm_converges_to_the_target_quantile_of_the_norms():
    norms = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    g, clients = _norms_round(norms)
    dp = {"clipping_norm": 0.05, "noise_multiplier": 0.0, "target_quantile": 0.5, "clip_norm_lr": 0.5}
    state = {}
    for _ in range(40):
        state = dp_run(g, clients, dp, state).state
    assert 4.0 <= float(state["dp/clipping_norm"]) <= 5.0  # half of the clients below it


def test_adaptive_clipping_noise_uses_this_rounds_norm_and_the_split_multiplier():
    g = {"w": np.zeros(100_000, np.float32)}
    clients = [({"w": np.zeros(100_000, np.float32)}, 1) for _ in range(40)]
    dp = {"clipping_norm": 2.0, "noise_multiplier": 1.0, "target_quantile": 0.5, "clipped_count_stddev": 2.0}
    out = dp_run(g, clients, dp)
    z_model = (1.0**-2 - 4.0**-2) ** -0.5  # Andrew et al. Thm 1 with sigma_b = 2
    assert out.info["privacy"]["noise_stddev"] == pytest.approx(z_model * 2.0 / 40)
    assert np.std(out.model["w"]) == pytest.approx(z_model * 2.0 / 40, rel=0.02)
    assert out.info["privacy"]["clipping_norm"] == 2.0 != float(out.state["dp/clipping_norm"])


def test_adaptive_clipping_refuses_a_count_noise_too_small_for_the_multiplier():
    from fma.domain.errors import Unprocessable

    g, clients = _norms_round([1.0, 2.0])
    with pytest.raises(Unprocessable, match="clipped_count_stddev"):
        dp_run(g, clients, {"clipping_norm": 1.0, "noise_multiplier": 1.0, "target_quantile": 0.5})
