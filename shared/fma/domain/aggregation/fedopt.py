"""Server optimizers over the mean pseudo-gradient: FedAvgM (Hsu et al. 2019) and
FedAdagrad, FedAdam, FedYogi (Reddi et al. 2020).

Each is a mean of the client models followed by a *server step* on that mean. The step is a
separate function (`SERVER_STEPS`) so that central DP can hand it the privatized mean
(DP-FedAdam: the optimizer is post-processing of a noised mean, so it costs no privacy).
`variant` "flower" (the default) follows Flower 1.42: example-weighted mean, FedAdam's bias
correction with its `server_round + 1` exponent, v_-1 = 0. `variant` "paper" follows Reddi et
al.'s Algorithm 2: the uniform mean 1/|S| of the deltas, no bias correction, v_-1 = tau^2.

Their state (momentum, first and second moments, step count) is returned in
`AggregationResult.state` under `momentum/`, `m/`, `v/` and `step`, and handed back next
round: nothing lives on an object between rounds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import numpy as np

from fma.domain.aggregation.engine import Engine
from fma.domain.aggregation.fedavg import weighted_average
from fma.domain.aggregation.types import AggregationResult, UpdateInput

Step = Callable[[Engine, np.ndarray, Mapping[str, np.ndarray], Mapping[str, object]],
                tuple[np.ndarray, dict[str, np.ndarray]]]


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


def fedavgm_step(engine: Engine, avg: np.ndarray, state: Mapping[str, np.ndarray],
                 params: Mapping[str, object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """x - lr * m, m = momentum * m_prev + (x - avg); the mean itself when lr = 1, momentum = 0."""
    lr, mom = float(params["server_learning_rate"]), float(params["server_momentum"])
    if mom == 0.0 and lr == 1.0:
        return avg, {}
    g = engine.layout.flatten(engine.global_model)
    grad = np.subtract(g, avg)
    new_state: dict[str, np.ndarray] = {}
    if mom > 0.0:
        prev = load_vector(engine, state, "momentum")
        if prev is not None:
            grad = np.add(prev * grad.dtype.type(mom), grad, out=grad)
        new_state = save_vector(engine, "momentum", grad)
    g -= grad.dtype.type(lr) * grad
    return g, new_state


def _adaptive_step(kind: str) -> Step:
    def step(engine: Engine, avg: np.ndarray, state: Mapping[str, np.ndarray],
             params: Mapping[str, object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        g = engine.layout.flatten(engine.global_model)
        delta = np.subtract(avg, g)
        t = step_count(state) + 1
        paper = params.get("variant") == "paper"
        m, v = _moments(kind, engine, state, delta, params, paper)
        eta = float(params["eta"])
        if kind == "adam" and not paper:  # Flower's bias correction, with its server_round + 1 exponent
            b1, b2 = float(params["beta_1"]), float(params["beta_2"])
            eta = float(eta * np.sqrt(1 - b2 ** (t + 1.0)) / (1 - b1 ** (t + 1.0)))
        denom = np.sqrt(v)
        denom += denom.dtype.type(params["tau"])
        g += eta * m / denom
        new_state = {**save_vector(engine, "m", m), **save_vector(engine, "v", v)}
        new_state["step"] = np.array(t, dtype=np.int64)
        return g, new_state

    return step


def _moments(kind: str, engine: Engine, state: Mapping[str, np.ndarray], delta: np.ndarray,
             params: Mapping, paper: bool) -> tuple[np.ndarray, np.ndarray]:
    dt = delta.dtype.type
    b1 = float(params.get("beta_1", 0.0))
    b2 = float(params.get("beta_2", 0.0))
    m = load_vector(engine, state, "m")
    v = load_vector(engine, state, "v")
    m = np.zeros_like(delta) if m is None else m
    if v is None:  # Reddi et al. start from v_-1 >= tau^2; Flower from 0
        v = np.full_like(delta, dt(float(params["tau"]) ** 2) if paper else dt(0))
    m = dt(b1) * m + dt(1 - b1) * delta
    sq = delta * delta
    if kind == "adagrad":
        v += sq
    elif kind == "adam":
        v = dt(b2) * v + dt(1 - b2) * sq
    else:  # yogi
        v -= dt(1.0 - b2) * sq * np.sign(v - sq)
    return m, v


def identity_step(engine: Engine, avg: np.ndarray, state: Mapping[str, np.ndarray],
                  params: Mapping[str, object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """FedAvg and FedProx's server step: the mean is the model."""
    return avg, {}


SERVER_STEPS: dict[str, Step] = {
    "fedavg": identity_step,
    "fedprox": identity_step,
    "fedavgm": fedavgm_step,
    "fedadagrad": _adaptive_step("adagrad"),
    "fedadam": _adaptive_step("adam"),
    "fedyogi": _adaptive_step("yogi"),
}


def keep_integers_at_mean(engine: Engine, flat: np.ndarray, mean: np.ndarray) -> None:
    """Integer and bool tensors (BatchNorm's `num_batches_tracked`) take the clients' mean
    (rounded when the model is written), never a server optimizer's step: momentum or Adam
    on a counter has no meaning (docs/strategies.md, "Integer tensors")."""
    mask = engine.layout.integer_mask()
    if mask is not None:
        flat[mask] = mean[mask]


def _mean_then(name: str):
    step = SERVER_STEPS[name]

    def strategy(
        global_model: Mapping[str, np.ndarray],
        updates: Sequence[UpdateInput],
        state: Mapping[str, np.ndarray],
        params: Mapping[str, object],
        *,
        engine: Engine,
    ) -> AggregationResult:
        avg, weights = weighted_average(engine, updates, uniform=params.get("variant") == "paper")
        flat, new_state = step(engine, avg.copy() if engine.layout.integer_mask() is not None else avg,
                               state, params)
        keep_integers_at_mean(engine, flat, avg)
        return AggregationResult(model=engine.model(flat), state=new_state, info={"weights": weights})

    strategy.__name__ = name
    strategy.__doc__ = f"{name}: a mean of the client models, then {step.__name__} (see the module)."
    return strategy


fedavgm = _mean_then("fedavgm")
fedadagrad = _mean_then("fedadagrad")
fedadam = _mean_then("fedadam")
fedyogi = _mean_then("fedyogi")
