"""Aggregation strategies and the engine that runs them.

Entry point for the aggregate service: `aggregate(...)`. Strategies are pure functions
`(global_model, updates, state, params) -> AggregationResult`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fma.domain.aggregation.fedavg import fedavg
from fma.domain.aggregation.types import AggregationResult, UpdateInput
from fma.domain.errors import InvalidInput

STRATEGIES = {"fedavg": fedavg, "fedprox": fedavg}

__all__ = ["AggregationResult", "UpdateInput", "aggregate", "weighted_metrics"]


def weighted_metrics(updates: Sequence[UpdateInput]) -> dict[str, float]:
    """Mean of each client metric weighted by num_examples, over the clients that reported it."""
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for u in updates:
        for key, value in u.metrics.items():
            sums[key] = sums.get(key, 0.0) + float(value) * u.num_examples
            weights[key] = weights.get(key, 0.0) + u.num_examples
    return {k: sums[k] / weights[k] for k in sorted(sums) if weights[k] > 0}


def aggregate(
    strategy: str,
    params: Mapping[str, object],
    global_model: Mapping[str, np.ndarray],
    updates: Sequence[UpdateInput],
    state: Mapping[str, np.ndarray],
    *,
    round_number: int,
    seed: int = 0,
) -> AggregationResult:
    """Run `strategy` over `updates` (any order in, client-id order inside)."""
    if not updates:
        raise InvalidInput("cannot aggregate a round with no accepted updates", code="NO_UPDATES")
    fn = STRATEGIES.get(strategy)
    if fn is None:
        raise InvalidInput(f"unknown strategy {strategy!r}", code="UNKNOWN_STRATEGY")
    ordered = sorted(updates, key=lambda u: u.client_id)
    result = fn(global_model, ordered, state, params)
    result.metrics = {**weighted_metrics(ordered), **result.metrics}
    return result
