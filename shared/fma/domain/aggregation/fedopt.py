"""Server optimizers over the FedAvg pseudo-gradient: FedAvgM (Hsu et al. 2019) and
FedAdagrad, FedAdam, FedYogi (Reddi et al. 2020), following Flower 1.42's formulas.

Their state (momentum, first and second moments, step count) is returned in
`AggregationResult.state` under `momentum/`, `m/`, `v/` and `step`, and handed back next
round: nothing lives on an object between rounds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from fma.domain.aggregation.engine import Engine
from fma.domain.aggregation.fedavg import weighted_average
from fma.domain.aggregation.types import AggregationResult, UpdateInput


def load_vector(engine: Engine, state: Mapping[str, np.ndarray], prefix: str) -> np.ndarray | None:
    """A flat state vector saved under `prefix/<tensor>`, or None when absent (first round)."""
    names = [f"{prefix}/{n}" for n in engine.layout.names]
    if not all(n in state for n in names):
        return None
    tensors = {n: state[f"{prefix}/{n}"] for n in engine.layout.names}
    return engine.layout.flatten(tensors)


def save_vector(engine: Engine, prefix: str, flat: np.ndarray) -> dict[str, np.ndarray]:
    layout = engine.layout
    return {
        f"{prefix}/{n}": flat[o : o + s].reshape(shape)
        for n, o, s, shape in zip(layout.names, layout.offsets, layout.sizes, layout.shapes, strict=True)
    }


def step_count(state: Mapping[str, np.ndarray]) -> int:
    return int(np.asarray(state["step"]).reshape(-1)[0]) if "step" in state else 0


def fedavgm(
    global_model: Mapping[str, np.ndarray],
    updates: Sequence[UpdateInput],
    state: Mapping[str, np.ndarray],
    params: Mapping[str, object],
    *,
    engine: Engine,
) -> AggregationResult:
    """x - lr * m, m = momentum * m_prev + (x - avg); plain FedAvg when lr = 1, momentum = 0."""
    lr, mom = float(params["server_learning_rate"]), float(params["server_momentum"])
    avg, weights = weighted_average(engine, updates)
    info = {"weights": weights}
    if mom == 0.0 and lr == 1.0:
        return AggregationResult(model=engine.model(avg), info=info)
    g = engine.layout.flatten(global_model)
    grad = np.subtract(g, avg, out=avg)
    new_state: dict[str, np.ndarray] = {}
    if mom > 0.0:
        prev = load_vector(engine, state, "momentum")
        if prev is not None:
            grad = np.add(prev * grad.dtype.type(mom), grad, out=grad)
        new_state = save_vector(engine, "momentum", grad)
    g -= grad.dtype.type(lr) * grad
    return AggregationResult(model=engine.model(g), state=new_state, info=info)


def _adaptive(kind: str):
    def strategy(
        global_model: Mapping[str, np.ndarray],
        updates: Sequence[UpdateInput],
        state: Mapping[str, np.ndarray],
        params: Mapping[str, object],
        *,
        engine: Engine,
    ) -> AggregationResult:
        avg, weights = weighted_average(engine, updates)
        g = engine.layout.flatten(global_model)
        delta = np.subtract(avg, g, out=avg)
        t = step_count(state) + 1
        m, v = _moments(kind, engine, state, delta, params)
        eta = float(params["eta"])
        if kind == "adam":  # Flower's bias correction, with its server_round + 1 exponent
            b1, b2 = float(params["beta_1"]), float(params["beta_2"])
            eta = float(eta * np.sqrt(1 - b2 ** (t + 1.0)) / (1 - b1 ** (t + 1.0)))
        denom = np.sqrt(v)
        denom += denom.dtype.type(params["tau"])
        g += eta * m / denom
        new_state = {**save_vector(engine, "m", m), **save_vector(engine, "v", v)}
        new_state["step"] = np.array(t, dtype=np.int64)
        return AggregationResult(model=engine.model(g), state=new_state, info={"weights": weights})

    strategy.__name__ = f"fed{kind}"
    strategy.__doc__ = f"Fed{kind.capitalize()} of Reddi et al. 2020, as Flower 1.42 computes it."
    return strategy


def _moments(
    kind: str, engine: Engine, state: Mapping[str, np.ndarray], delta: np.ndarray, params: Mapping
) -> tuple[np.ndarray, np.ndarray]:
    dt = delta.dtype.type
    b1 = float(params.get("beta_1", 0.0))
    b2 = float(params.get("beta_2", 0.0))
    m = load_vector(engine, state, "m")
    v = load_vector(engine, state, "v")
    m = np.zeros_like(delta) if m is None else m
    v = np.zeros_like(delta) if v is None else v
    m = dt(b1) * m + dt(1 - b1) * delta
    sq = delta * delta
    if kind == "adagrad":
        v += sq
    elif kind == "adam":
        v = dt(b2) * v + dt(1 - b2) * sq
    else:  # yogi
        v -= dt(1.0 - b2) * sq * np.sign(v - sq)
    return m, v


fedadagrad = _adaptive("adagrad")
fedadam = _adaptive("adam")
fedyogi = _adaptive("yogi")
