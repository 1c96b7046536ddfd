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
from typing import Any

import numpy as np

from fma.domain.aggregation.engine import Engine
from fma.domain.aggregation.fedavg import weighted_average
from fma.domain.aggregation.layout import FlatLayout, cast_to
from fma.domain.aggregation.lazy_result import LazyOutput
from fma.domain.aggregation.lazy_step import RangeStep, StepVector
from fma.domain.aggregation.types import AggregationResult, UpdateInput

Step = Callable[[Engine, np.ndarray, Mapping[str, np.ndarray], Mapping[str, object]],
                tuple[np.ndarray, dict[str, np.ndarray]]]
#: the elementwise server step over aligned vectors: (g, mean, old state, params, step) -> (model, state)
Core = Callable[[np.ndarray, np.ndarray, Mapping[str, np.ndarray | None], Mapping[str, object], int],
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


def _fedavgm_core(g: np.ndarray, avg: np.ndarray, prev: Mapping[str, np.ndarray | None],
                  params: Mapping[str, object], t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """FedAvgM over aligned vectors (the whole model, or one range of it): g is a writable copy
    of the global model, returned as the new model; m = momentum * m_prev + (g - avg)."""
    lr, mom = float(params["server_learning_rate"]), float(params["server_momentum"])
    grad = np.subtract(g, avg)
    new_state: dict[str, np.ndarray] = {}
    if mom > 0.0:
        if prev.get("momentum") is not None:
            grad = np.add(prev["momentum"] * grad.dtype.type(mom), grad, out=grad)
        new_state["momentum"] = grad
    g -= grad.dtype.type(lr) * grad
    return g, new_state


def _adaptive_core(kind: str) -> Core:
    def core(g: np.ndarray, avg: np.ndarray, prev: Mapping[str, np.ndarray | None],
             params: Mapping[str, object], t: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        delta = np.subtract(avg, g)
        paper = params.get("variant") == "paper"
        m, v = _moments(kind, prev.get("m"), prev.get("v"), delta, params, paper)
        eta = float(params["eta"])
        if kind == "adam" and not paper:  # Flower's bias correction, with its server_round + 1 exponent
            b1, b2 = float(params["beta_1"]), float(params["beta_2"])
            eta = float(eta * np.sqrt(1 - b2 ** (t + 1.0)) / (1 - b1 ** (t + 1.0)))
        denom = np.sqrt(v)
        denom += denom.dtype.type(params["tau"])
        g += eta * m / denom
        return g, {"m": m, "v": v}

    return core


def _moments(kind: str, m: np.ndarray | None, v: np.ndarray | None, delta: np.ndarray,
             params: Mapping, paper: bool) -> tuple[np.ndarray, np.ndarray]:
    dt = delta.dtype.type
    b1 = float(params.get("beta_1", 0.0))
    b2 = float(params.get("beta_2", 0.0))
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


def _is_identity(name: str, params: Mapping[str, object]) -> bool:
    """FedAvgM with lr 1 and no momentum is FedAvg: the mean itself is the model."""
    return (name == "fedavgm" and float(params["server_momentum"]) == 0.0
            and float(params["server_learning_rate"]) == 1.0)


def _whole_step(name: str) -> Step:
    """The server step over the whole flat vector (the single plan, DP and FedBuff)."""
    core = CORES[name]

    def step(engine: Engine, avg: np.ndarray, state: Mapping[str, np.ndarray],
             params: Mapping[str, object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        if _is_identity(name, params):
            return avg, {}
        g, t = engine.layout.flatten(engine.global_model), step_count(state) + 1
        prev = {p: load_vector(engine, state, p) for p in STATE_PREFIXES[name]}
        flat, new = core(g, avg, prev, params, t)
        out = {k: v for p, vec in new.items() for k, v in save_vector(engine, p, vec).items()}
        return flat, _with_step_count(name, out, t)

    step.__name__ = f"{name}_step"
    return step


def ranged_step(name: str, engine: Engine, avg: Any, state: Mapping[str, np.ndarray],
                params: Mapping[str, object]) -> tuple[Any, dict[str, Any]]:
    """The server step of `name` over a mean left in its pieces (the fanout reduce): the model
    and the new state as vectors computed range by range (lazy_step.py), the same bytes as
    `_whole_step` over the whole vector, never the model in memory."""
    if _is_identity(name, params):
        return avg, {}
    layout, core, t = engine.layout, CORES[name], step_count(state) + 1
    present = [p for p in STATE_PREFIXES[name] if all(f"{p}/{n}" in state for n in layout.names)]

    def compute(s: int, e: int) -> dict[str, np.ndarray]:
        mean = avg.read(s, e)
        g = layout.gather(engine.global_model, s, e)
        prev = {p: layout.gather({n: state[f"{p}/{n}"] for n in layout.names}, s, e) for p in present}
        flat, new = core(g, mean, prev, params, t)  # the cores never write to the mean
        keep_integers_in_range(layout, s, e, flat, mean)
        return {"": flat, **new}

    step = RangeStep(compute)
    outputs = [p for p in STATE_PREFIXES[name] if name != "fedavgm" or float(params["server_momentum"]) > 0.0]
    new_state: dict[str, Any] = {}
    for p in outputs:
        vector = StepVector(step, p, layout.total, layout.acc_dtype)
        new_state.update({f"{p}/{n}": LazyOutput(vector, o, shape, layout.acc_dtype, cast_to)
                          for n, o, shape in zip(layout.names, layout.offsets, layout.shapes, strict=True)})
    return StepVector(step, "", layout.total, layout.acc_dtype), _with_step_count(name, new_state, t)


def _with_step_count(name: str, state: dict[str, Any], t: int) -> dict[str, Any]:
    """The adaptive optimizers keep their step count t (Adam's bias correction needs it)."""
    if name != "fedavgm":
        state["step"] = np.array(t, dtype=np.int64)
    return state


def identity_step(engine: Engine, avg: np.ndarray, state: Mapping[str, np.ndarray],
                  params: Mapping[str, object]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """FedAvg and FedProx's server step: the mean is the model."""
    return avg, {}


CORES: dict[str, Core] = {
    "fedavgm": _fedavgm_core,
    "fedadagrad": _adaptive_core("adagrad"),
    "fedadam": _adaptive_core("adam"),
    "fedyogi": _adaptive_core("yogi"),
}
#: the state vectors each server step reads and writes (under `<prefix>/<tensor>`).
STATE_PREFIXES: dict[str, tuple[str, ...]] = {
    "fedavgm": ("momentum",), "fedadagrad": ("m", "v"), "fedadam": ("m", "v"), "fedyogi": ("m", "v"),
}
SERVER_STEPS: dict[str, Step] = {
    "fedavg": identity_step,
    "fedprox": identity_step,
    **{name: _whole_step(name) for name in CORES},
}


def keep_integers_at_mean(engine: Engine, flat: np.ndarray, mean: np.ndarray) -> None:
    """Integer and bool tensors (BatchNorm's `num_batches_tracked`) take the clients' mean
    (rounded when the model is written), never a server optimizer's step: momentum or Adam
    on a counter has no meaning (docs/strategies.md, "Integer tensors")."""
    keep_integers_in_range(engine.layout, 0, engine.layout.total, flat, mean)


def keep_integers_in_range(layout: FlatLayout, s: int, e: int, flat: np.ndarray, mean: np.ndarray) -> None:
    """`keep_integers_at_mean` over elements [s, e) of the flat vector (flat and mean hold them)."""
    for i, lo, hi in layout.overlaps(s, e):
        if layout.dtypes[i].kind in "iub":
            a = layout.offsets[i] + lo - s
            flat[a : a + hi - lo] = mean[a : a + hi - lo]


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
        avg, weights = weighted_average(engine, updates, uniform=params.get("variant") == "paper", lazy=True)
        if not isinstance(avg, np.ndarray):  # the fanout reduce: the mean left in its pieces
            model, lazy_state = ranged_step(name, engine, avg, state, params)
            return AggregationResult(model=engine.model(model), state=lazy_state, info={"weights": weights})
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
