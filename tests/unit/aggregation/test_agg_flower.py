"""Differential tests: FMA's strategies against Flower 1.42's functions and strategy classes
on random inputs, to 1e-5 relative. Small chunk and shard sizes force many ranged reads per
update, so the streaming and sharded paths are the ones compared."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import as_ndarrays, as_updates, fit_results, from_ndarrays, random_round, rel_err

from fma.domain.aggregation import EngineOptions, aggregate

flwr_agg = pytest.importorskip("flwr.server.strategy.aggregate")
from flwr.common import ndarrays_to_parameters, parameters_to_ndarrays  # noqa: E402
from flwr.server import strategy as fl  # noqa: E402

TINY = EngineOptions(chunk_bytes=96, shard_bytes=160, prefetch=2)
SEEDS = [0, 1, 2]


def run(name, params, g, clients, state=None, rnd=1, options=TINY):
    return aggregate(name, params, g, as_updates(clients), state or {}, round_number=rnd, options=options)


def weights_results(clients):
    return [(as_ndarrays(t), n) for t, n in clients]


@pytest.mark.parametrize("seed", SEEDS)
def test_fedavg_matches_flower_aggregate_inplace_and_aggregate(seed):
    g, clients = random_round(seed, 9)
    ours = run("fedavg", {}, g, clients).model
    inplace = from_ndarrays(flwr_agg.aggregate_inplace(fit_results(clients)), g)
    plain = from_ndarrays(flwr_agg.aggregate(weights_results(clients)), g)
    assert rel_err(ours, inplace) < 1e-5
    assert rel_err(ours, plain) < 1e-5
    assert all(ours[n].dtype == np.float32 for n in ours)


@pytest.mark.parametrize("seed", SEEDS)
def test_fedprox_server_side_is_fedavg(seed):
    g, clients = random_round(seed, 5)
    prox = fl.FedProx(proximal_mu=0.1, initial_parameters=ndarrays_to_parameters(as_ndarrays(g)))
    theirs, _ = prox.aggregate_fit(1, fit_results(clients), [])
    ours = run("fedprox", {"proximal_mu": 0.1}, g, clients).model
    assert rel_err(ours, from_ndarrays(parameters_to_ndarrays(theirs), g)) < 1e-5


@pytest.mark.parametrize("seed", SEEDS)
def test_fedmedian_matches_flower(seed):
    g, clients = random_round(seed, 8 + seed)  # even and odd client counts
    theirs = from_ndarrays(flwr_agg.aggregate_median(weights_results(clients)), g)
    assert rel_err(run("fedmedian", {}, g, clients).model, theirs) < 1e-6


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.2, 0.45])
def test_fedtrimmedavg_matches_flower(beta):
    g, clients = random_round(7, 11)
    theirs = from_ndarrays(flwr_agg.aggregate_trimmed_avg(weights_results(clients), beta), g)
    assert rel_err(run("fedtrimmedavg", {"beta": beta}, g, clients).model, theirs) < 1e-5


@pytest.mark.parametrize(("f", "keep"), [(0, 0), (1, 0), (2, 0), (1, 3), (2, 5)])
def test_krum_and_multikrum_select_and_aggregate_like_flower(f, keep):
    g, clients = random_round(11 + f, 10, spread=0.5)
    theirs = from_ndarrays(flwr_agg.aggregate_krum(weights_results(clients), f, keep), g)
    name, params = ("krum", {"num_malicious": f}) if keep == 0 else (
        "multikrum", {"num_malicious": f, "num_to_select": keep})
    result = run(name, params, g, clients)
    assert rel_err(result.model, theirs) < 1e-5
    assert len(result.info["selected"]) == max(1, keep)
    if keep == 0:  # Krum returns one client's model exactly
        chosen = int(result.info["selected"][0][1:])
        assert all(np.array_equal(result.model[n], clients[chosen][0][n]) for n in g)


@pytest.mark.parametrize(("n", "f"), [(7, 1), (11, 2), (9, 1)])
def test_bulyan_matches_flower(n, f):
    g, clients = random_round(20 + n, n, spread=0.5)
    theirs = flwr_agg.aggregate_bulyan(weights_results(clients), f, flwr_agg.aggregate_krum, to_keep=0)
    result = run("bulyan", {"num_malicious": f}, g, clients)
    assert rel_err(result.model, from_ndarrays(theirs, g)) < 1e-5
    assert len(result.info["selected"]) == n - 2 * f


def test_bulyan_refuses_fewer_than_4f_plus_3_clients():
    from fma.domain.errors import Unprocessable

    g, clients = random_round(3, 6)
    with pytest.raises(Unprocessable, match="4 \\* num_malicious \\+ 3"):
        run("bulyan", {"num_malicious": 1}, g, clients)


def _rounds(make_flower, name, params, seeds=(0, 1, 2)):
    """Three rounds, FMA's state carried through aggregate()'s result like the service does."""
    g0, _ = random_round(seeds[0], 1)
    flower = make_flower(ndarrays_to_parameters(as_ndarrays(g0)))
    g, state = g0, {}
    for rnd, seed in enumerate(seeds, start=1):
        rng = np.random.default_rng(100 + seed)
        clients = [({k: (v + rng.normal(0, 0.1, v.shape)).astype(np.float32) for k, v in g.items()},
                    int(rng.integers(1, 50))) for _ in range(6)]
        theirs, _ = flower.aggregate_fit(rnd, fit_results(clients), [])
        result = run(name, params, g, clients, state, rnd)
        expected = from_ndarrays(parameters_to_ndarrays(theirs), g)
        assert rel_err(result.model, expected) < 1e-5, f"round {rnd}"
        g, state = result.model, result.state
    return state


def test_fedavgm_with_momentum_matches_flower_over_rounds():
    state = _rounds(lambda p: fl.FedAvgM(initial_parameters=p, server_learning_rate=0.7, server_momentum=0.9),
                    "fedavgm", {"server_learning_rate": 0.7, "server_momentum": 0.9})
    assert any(k.startswith("momentum/") for k in state)


@pytest.mark.parametrize("name", ["fedadagrad", "fedadam", "fedyogi"])
def test_adaptive_optimizers_match_flower_over_rounds(name):
    params = {"eta": 0.05, "tau": 1e-3, "beta_1": 0.8}
    if name != "fedadagrad":
        params["beta_2"] = 0.95
    cls = {"fedadagrad": fl.FedAdagrad, "fedadam": fl.FedAdam, "fedyogi": fl.FedYogi}[name]
    kwargs = {k: v for k, v in params.items() if not (name == "fedadagrad" and k == "beta_1")}
    if name == "fedadagrad":
        params["beta_1"] = 0.0  # Flower's FedAdagrad fixes beta_1 = 0
    state = _rounds(lambda p: cls(initial_parameters=p, **kwargs), name, params)
    assert int(state["step"]) == 3


@pytest.mark.parametrize("strategy", ["fedavg"])
def test_dp_fixed_clipping_without_noise_matches_flower_wrapper(strategy):
    """With equal num_examples (DP weighs clients uniformly; Flower's inner FedAvg by examples)."""
    g, clients = random_round(5, 6, spread=0.3)
    clients = [(t, 10) for t, _ in clients]
    inner = fl.FedAvg()
    wrapper = fl.DifferentialPrivacyServerSideFixedClipping(inner, 0.0, 0.4, len(clients))
    wrapper.current_round_params = as_ndarrays(g)
    theirs, _ = wrapper.aggregate_fit(1, fit_results(clients), [])
    dp = {"clipping_norm": 0.4, "noise_multiplier": 0.0}
    ours = run(strategy, {"dp": dp}, g, clients)
    assert rel_err(ours.model, from_ndarrays(parameters_to_ndarrays(theirs), g)) < 1e-5
    assert ours.info["privacy"]["clipped_clients"] == 6
