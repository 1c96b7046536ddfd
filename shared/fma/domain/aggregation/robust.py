"""Byzantine-robust rules, run shard by shard over ranged reads: FedMedian and
FedTrimmedAvg (Yin et al. 2018), Krum and MultiKrum (Blanchard et al. 2017), Bulyan
(El Mhamdi et al. 2018). Selection follows Flower 1.42 (distances between client weights,
which equal distances between their deltas)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fma.domain.aggregation.engine import Engine
from fma.domain.aggregation.math import (
    add_sq_distances,
    bulyan_rows,
    bulyan_select,
    example_weights,
    krum_select,
    median_rows,
    trimmed_mean_rows,
)
from fma.domain.aggregation.types import AggregationResult, UpdateInput
from fma.domain.errors import Unprocessable

Model = Mapping[str, np.ndarray]
State = Mapping[str, np.ndarray]
Params = Mapping[str, object]


def _uniform(updates: Sequence[UpdateInput]) -> dict[str, float]:
    return {u.client_id: 1.0 / len(updates) for u in updates}


def fedmedian(g: Model, updates: Sequence[UpdateInput], state: State, params: Params, *,
              engine: Engine) -> AggregationResult:
    """Coordinate-wise median of the client models (unweighted)."""
    flat = engine.map_shards(updates, median_rows, lazy=True)
    return AggregationResult(model=engine.model(flat), info={"weights": _uniform(updates)})


def fedtrimmedavg(g: Model, updates: Sequence[UpdateInput], state: State, params: Params, *,
                  engine: Engine) -> AggregationResult:
    """Coordinate-wise mean after cutting floor(beta * n) values at each end (unweighted)."""
    beta = float(params["beta"])
    flat = engine.map_shards(updates, lambda rows: trimmed_mean_rows(rows, beta), lazy=True)
    return AggregationResult(model=engine.model(flat), info={"weights": _uniform(updates)})


def sq_distances(engine: Engine, updates: Sequence[UpdateInput], num_malicious: int) -> np.ndarray:
    """Matrix of squared L2 distances between the clients' flat vectors, shard by shard."""
    def shard(s: int, e: int, rows: np.ndarray) -> np.ndarray:
        dist = np.zeros((len(updates), len(updates)))
        add_sq_distances(rows, dist, num_malicious)
        return dist

    return engine.sum_shards(updates, shard)


def _krum(g: Model, updates: Sequence[UpdateInput], params: Params, engine: Engine,
          keep: int) -> AggregationResult:
    f = int(params["num_malicious"])
    if len(updates) <= 2 * f + 2:
        raise Unprocessable(
            f"krum needs more than 2 * num_malicious + 2 = {2 * f + 2} updates (Blanchard et al. 2017), "
            f"got {len(updates)}",
            code="TOO_FEW_UPDATES",
        )
    chosen = krum_select(sq_distances(engine, updates, f), f, keep)
    picked = [updates[i] for i in chosen]
    if keep <= 0:
        flat = engine.client_vector(picked[0], lazy=True)  # the model: streamed by a reduce
        weights = {u.client_id: float(u is picked[0]) for u in updates}
    else:
        uniform = params.get("variant") == "paper"  # Blanchard et al.: the plain mean of the m picked
        w = example_weights([1 if uniform else u.num_examples for u in picked])
        flat = engine.weighted_sum(picked, w, lazy=True)
        weights = {u.client_id: 0.0 for u in updates}
        weights.update({u.client_id: float(x) for u, x in zip(picked, w, strict=True)})
    info = {"weights": weights, "selected": [u.client_id for u in picked]}
    return AggregationResult(model=engine.model(flat), info=info)


def krum(g: Model, updates: Sequence[UpdateInput], state: State, params: Params, *,
         engine: Engine) -> AggregationResult:
    """The single client model whose n - f - 2 nearest neighbours are closest."""
    return _krum(g, updates, params, engine, 0)


def multikrum(g: Model, updates: Sequence[UpdateInput], state: State, params: Params, *,
              engine: Engine) -> AggregationResult:
    """Mean of the `num_to_select` best Krum scores: example-weighted as Flower (`variant`
    "flower", the default) or uniform as the paper (`variant` "paper")."""
    return _krum(g, updates, params, engine, int(params["num_to_select"]))


def bulyan(g: Model, updates: Sequence[UpdateInput], state: State, params: Params, *,
           engine: Engine) -> AggregationResult:
    """Krum picks n - 2f models; per coordinate, average the n - 4f closest to their median."""
    f = int(params["num_malicious"])
    if len(updates) < 4 * f + 3:
        raise Unprocessable(
            f"bulyan needs at least 4 * num_malicious + 3 = {4 * f + 3} updates, got {len(updates)}",
            code="TOO_FEW_UPDATES",
        )
    chosen = bulyan_select(sq_distances(engine, updates, f), f)
    picked = [updates[i] for i in sorted(chosen)]
    flat = engine.map_shards(picked, lambda rows: bulyan_rows(rows, f), lazy=True)
    weights = {u.client_id: 0.0 for u in updates}
    weights.update(_uniform(picked))
    info = {"weights": weights, "selected": [u.client_id for u in picked]}
    return AggregationResult(model=engine.model(flat), info=info)
