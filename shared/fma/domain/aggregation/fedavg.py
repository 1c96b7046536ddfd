"""FedAvg as a streaming weighted mean: one update in memory at a time."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fma.domain.aggregation.types import AggregationResult, UpdateInput
from fma.domain.codec import decode


def weighted_mean(global_model: Mapping[str, np.ndarray], updates: Sequence[UpdateInput]) -> dict[str, np.ndarray]:
    """Sum w_i x_i / sum w_i in client-id order, accumulated in float64 for reproducibility."""
    total = float(sum(u.num_examples for u in updates))
    acc = {name: np.zeros(arr.shape, dtype=np.float64) for name, arr in global_model.items()}
    for update in sorted(updates, key=lambda u: u.client_id):
        tensors, _ = decode(update.fetch())
        weight = update.num_examples / total
        for name, buf in acc.items():
            buf += weight * tensors[name]
        del tensors
    return {name: buf.astype(global_model[name].dtype) for name, buf in acc.items()}


def fedavg(
    global_model: Mapping[str, np.ndarray],
    updates: Sequence[UpdateInput],
    state: Mapping[str, np.ndarray],
    params: Mapping[str, object],
) -> AggregationResult:
    return AggregationResult(model=weighted_mean(global_model, updates))
