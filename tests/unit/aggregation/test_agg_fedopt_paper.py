"""FedOpt's `variant: "paper"` against Reddi et al. 2020, Algorithm 2, written in float64:
Delta_t = (1/|S|) sum_i Delta_i (uniform), m_t = b1 m + (1 - b1) Delta, v_t per optimizer
from v_-1 = tau^2, x_{t+1} = x_t + eta m_t / (sqrt(v_t) + tau), no bias correction."""

from __future__ import annotations

import numpy as np
import pytest
from agg_helpers import as_updates

from fma.domain.aggregation import aggregate


def reddi(kind: str, x: np.ndarray, deltas: list[np.ndarray], m, v, eta, b1, b2, tau):
    d = np.mean(deltas, axis=0)
    m = b1 * m + (1 - b1) * d
    if kind == "fedadagrad":
        v = v + d * d
    elif kind == "fedadam":
        v = b2 * v + (1 - b2) * d * d
    else:
        v = v - (1 - b2) * d * d * np.sign(v - d * d)
    return x + eta * m / (np.sqrt(v) + tau), m, v


@pytest.mark.parametrize("kind", ["fedadagrad", "fedadam", "fedyogi"])
def test_paper_variant_follows_algorithm_2_over_three_rounds(kind):
    rng = np.random.default_rng(5)
    eta, b1, b2, tau = 0.05, 0.8 if kind != "fedadagrad" else 0.0, 0.95, 1e-2
    params = {"eta": eta, "beta_1": b1, "tau": tau, "variant": "paper"}
    if kind != "fedadagrad":
        params["beta_2"] = b2
    x = rng.standard_normal(30)
    m, v = np.zeros(30), np.full(30, tau * tau)
    model, state = {"w": x.astype(np.float32)}, {}
    for rnd in (1, 2, 3):
        clients = [((x + rng.normal(0, 0.2, 30)).astype(np.float32), int(rng.integers(1, 1000))) for _ in range(5)]
        deltas = [np.float64(c) - np.float64(model["w"]) for c, _ in clients]
        x, m, v = reddi(kind, np.float64(model["w"]), deltas, m, v, eta, b1, b2, tau)
        out = aggregate(kind, params, model, as_updates([({"w": c}, n) for c, n in clients]), state, round_number=rnd)
        np.testing.assert_allclose(out.model["w"], x, rtol=1e-5, atol=1e-5)
        model, state = out.model, out.state


def test_paper_and_flower_variants_differ_where_the_docs_say():
    rng = np.random.default_rng(6)
    g = {"w": np.zeros(10, np.float32)}
    clients = [({"w": rng.normal(0, 1, 10).astype(np.float32)}, n) for n in (1, 1000, 3)]
    flower = aggregate("fedadam", {}, g, as_updates(clients), {}, round_number=1).model["w"]
    paper = aggregate("fedadam", {"variant": "paper"}, g, as_updates(clients), {}, round_number=1).model["w"]
    assert not np.allclose(flower, paper, rtol=1e-3)
