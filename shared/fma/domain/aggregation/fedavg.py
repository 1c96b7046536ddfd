"""FedAvg (McMahan et al. 2017) and FedProx's server side: a streaming weighted mean."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fma.domain.aggregation.engine import Engine
from fma.domain.aggregation.math import example_weights
from fma.domain.aggregation.types import AggregationResult, UpdateInput


def weighted_average(engine: Engine, updates: Sequence[UpdateInput], *, uniform: bool = False,
                     lazy: bool = False) -> tuple[np.ndarray, dict]:
    """sum_k n_k x_k / sum_k n_k (or the plain mean with `uniform`) as a flat vector, and the
    weights for the manifest (`lazy`: see Engine.weighted_sum)."""
    weights = example_weights([1 if uniform else u.num_examples for u in updates])
    flat = engine.weighted_sum(updates, weights, lazy=lazy)
    return flat, {u.client_id: float(w) for u, w in zip(updates, weights, strict=True)}


def fedavg(
    global_model: Mapping[str, np.ndarray],
    updates: Sequence[UpdateInput],
    state: Mapping[str, np.ndarray],
    params: Mapping[str, object],
    *,
    engine: Engine,
) -> AggregationResult:
    """Weighted by num_examples; FedProx is the same on the server (mu goes to clients)."""
    flat, weights = weighted_average(engine, updates, lazy=True)  # the mean is the model: streamed by a reduce
    return AggregationResult(model=engine.model(flat), info={"weights": weights})
