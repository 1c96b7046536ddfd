"""Norm-bounded FedAvg (Sun et al. 2019, "Can You Really Backdoor Federated Learning?").

Each client's delta from the global model is scaled down to a threshold that tracks a
quantile of the deltas' norms (a moving average kept in the strategy state), then the
clipped models are averaged by num_examples and applied with a server learning rate.
"""

import numpy as np

from fma.domain.aggregation import AggregationResult, register_strategy
from fma.domain.strategy_catalog import Param


def norm_bounded_avg(global_model, updates, state, params, *, engine):
    g = engine.layout.flatten(global_model)  # the global model as one flat vector

    # Pass 1, shard by shard (ranged reads): squared norm of each client's delta.
    sq = np.zeros(len(updates))

    def visit(s, e, rows):  # rows: one row per client, columns [s, e) of the flat vector
        d = rows - g[s:e]
        sq[:] += np.einsum("ij,ij->i", d, d, dtype=np.float64)

    engine.shard_pass(updates, visit)
    norms = np.sqrt(sq)

    # The threshold follows the chosen quantile of the norms, smoothed across rounds.
    q = float(np.quantile(norms, params["quantile"]))
    threshold = q if "threshold" not in state else 0.9 * float(state["threshold"]) + 0.1 * q
    scale = np.minimum(1.0, threshold / np.maximum(norms, 1e-12))

    # Pass 2, streaming: sum_k w_k c_k x_k + sum_k w_k (1 - c_k) g, one update at a time.
    n = np.array([u.num_examples for u in updates], dtype=np.float64)
    w = n / n.sum()
    avg = engine.weighted_sum(updates, w * scale)
    avg += np.float32(np.sum(w * (1.0 - scale))) * g

    new = g + np.float32(params["server_lr"]) * (avg - g)
    return AggregationResult(
        model=engine.model(new),
        state={"threshold": np.array(threshold)},
        info={"threshold": threshold, "clipped": int(np.sum(scale < 1.0))},
    )


register_strategy(
    "norm_bounded",
    norm_bounded_avg,
    params={
        "quantile": Param(0.5, float, minimum=0.0, maximum=1.0),
        "server_lr": Param(1.0, float, minimum=0.0, exclusive_minimum=True),
    },
)
