"""Aggregation strategies and the engine that runs them.

Entry point for the aggregate service: `aggregate(...)`. Strategies are pure functions
`(global_model, updates, state, params, *, engine) -> AggregationResult`; see registry.py.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from fma.domain.aggregation.dp import with_dp
from fma.domain.aggregation.engine import Engine, EngineOptions
from fma.domain.aggregation.fedbuff import BufferedUpdate, DeltaEngine, base_key, run_fedbuff
from fma.domain.aggregation.math import single_threaded_blas
from fma.domain.aggregation.passes import Partitioning, PassRunner
from fma.domain.aggregation.registry import get_strategy, register_strategy, strategy
from fma.domain.aggregation.types import AggregationResult, UpdateInput
from fma.domain.errors import InvalidInput
from fma.domain.round_mode import staleness_weight
from fma.domain.strategy_catalog import check_async_strategy, validate_strategy

__all__ = [
    "AggregationResult",
    "BufferedUpdate",
    "Engine",
    "EngineOptions",
    "Partitioning",
    "UpdateInput",
    "aggregate",
    "aggregate_buffer",
    "register_strategy",
    "strategy",
    "weighted_metrics",
]


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
    noise_seed: object = None,
    options: EngineOptions | None = None,
    partitioning: Partitioning | None = None,
    passes: PassRunner | None = None,
) -> AggregationResult:
    """Run `strategy` over `updates` (any order in, client-id order inside).

    `params` are validated again (defaults filled in); `params["dp"]` runs the strategy under
    central DP (dp.py), its noise seeded by `noise_seed` (an int or a sequence of ints: the
    service derives it from a server-side secret; `seed` when None). The result's model has
    the global model's names, shapes and dtypes. The same inputs and options give the same
    bytes on the same machine type (BLAS runs on one thread, so the core count cannot move a
    rounding); `EngineOptions(portable=True)` makes them the same on any machine. `info`
    carries weights, timings, bytes read, selected clients (Krum, Bulyan), privacy spent (DP)
    and the manifest's `inputs` (client, sha256, num_examples, weight), all JSON-safe.
    `partitioning` fixes the arithmetic's shape (passes.py); `passes` says where its pieces
    run (this process by default; fanout.py runs them as separate tasks, same bytes).
    """
    if not updates:
        raise InvalidInput("cannot aggregate a round with no accepted updates", code="NO_UPDATES")
    fn = get_strategy(strategy)
    full = validate_strategy(strategy, params)
    dp = full.pop("dp", None)
    ordered = sorted(updates, key=lambda u: u.client_id)
    if len({u.client_id for u in ordered}) != len(ordered):
        raise InvalidInput("two updates from the same client", code="DUPLICATE_CLIENT")
    start = time.perf_counter()
    with single_threaded_blas(), Engine(global_model, options, round_number=round_number, seed=seed,
                                        partitioning=partitioning, passes=passes) as engine:
        if dp is not None:
            raw = with_dp(strategy, dp, global_model, ordered, state, full, engine=engine,
                          noise_seed=seed if noise_seed is None else noise_seed)
        else:
            raw = fn(global_model, ordered, state, full, engine=engine)
        result = _normalise(raw, global_model)
        info: dict[str, Any] = {"strategy": strategy, "params": {**full, **({"dp": dp} if dp else {})},
                                "partitioning": engine.partitioning.to_json()}
        info.update(engine.stats.as_info())
    info["timings"]["total"] = round(time.perf_counter() - start, 6)
    result.info = {**info, **result.info}
    result.info["inputs"] = _inputs(ordered, result.info.get("weights", {}))
    result.metrics = {**weighted_metrics(ordered), **result.metrics}
    return result


def aggregate_buffer(
    strategy: str,
    params: Mapping[str, object],
    current_model: Mapping[str, np.ndarray],
    buffer: Sequence[BufferedUpdate],
    bases: Mapping[int, UpdateInput],
    state: Mapping[str, np.ndarray],
    *,
    current_version: int,
    staleness: Mapping[str, Any],
    server_learning_rate: float = 1.0,
    seed: int = 0,
    options: EngineOptions | None = None,
) -> AggregationResult:
    """FedBuff: version `current_version + 1` from `buffer` (fedbuff.py gives the formula).

    `bases[v]` reads the published model of version v for every base version in the buffer
    (`current_model` is version `current_version`). Entries are folded in (round, client) order,
    so the same buffer gives the same bytes in any order. `info["inputs"]` lists per entry the
    client, round, base version, staleness, s(tau), num_examples and the strategy's weight.
    """
    if not buffer:
        raise InvalidInput("cannot aggregate an empty buffer", code="NO_UPDATES")
    full = validate_strategy(strategy, params)
    check_async_strategy(strategy, full, server_learning_rate=server_learning_rate, smallest_buffer=len(buffer))
    ordered = sorted(buffer, key=lambda b: b.key)
    if len({b.key for b in ordered}) != len(ordered):
        raise InvalidInput("one update twice in a buffer", code="DUPLICATE_CLIENT")
    taus = {b.key: current_version - b.base_version for b in ordered}
    if min(taus.values()) < 0:
        raise ValueError("an update's base version is newer than the current version")
    factors = {k: staleness_weight(staleness, tau) for k, tau in taus.items()}
    keyed = [replace(b.update, client_id=b.key) for b in ordered]
    base_inputs = {v: replace(bases[v], client_id=base_key(v)) for v in sorted({b.base_version for b in ordered})}
    of_entry = {b.key: base_inputs[b.base_version] for b in ordered}
    start = time.perf_counter()
    with single_threaded_blas(), DeltaEngine(current_model, of_entry, factors, options,
                                             round_number=current_version + 1, seed=seed) as engine:
        raw = run_fedbuff(strategy, full, engine, keyed, state, server_learning_rate)
        model = _normalise(engine.layout.split(raw.model["flat"]), current_model).model
        info: dict[str, Any] = {"strategy": strategy, "params": full, **raw.info}
        info.update(engine.stats.as_info())
    info["timings"]["total"] = round(time.perf_counter() - start, 6)
    info["inputs"] = _buffer_inputs(ordered, taus, factors, info.get("weights", {}))
    info["server_learning_rate"] = server_learning_rate
    state_out = {k: _contiguous(np.asarray(v)) for k, v in raw.state.items()}
    return AggregationResult(model=model, state=state_out, metrics=weighted_metrics([b.update for b in ordered]),
                             info=info)


def _buffer_inputs(ordered: Sequence[BufferedUpdate], taus: Mapping[str, int], factors: Mapping[str, float],
                   weights: Mapping[str, float]) -> list[dict[str, Any]]:
    """Per entry: who, which bytes, its base and staleness, and the weight it was given."""
    out = []
    for b in ordered:
        weight = weights.get(b.key)
        out.append({
            "client_id": b.update.client_id, "round": b.base_version + 1, "base_version": b.base_version,
            "staleness": taus[b.key], "staleness_weight": factors[b.key], "sha256": b.update.sha256,
            "num_examples": b.update.num_examples, "weight": weight,
            "effective_weight": None if weight is None else weight * factors[b.key],
        })
    return out


def _inputs(updates: Sequence[UpdateInput], weights: Mapping[str, float]) -> list[dict[str, Any]]:
    """The manifest's inputs: who, which bytes, and the weight the strategy gave them."""
    return [
        {"client_id": u.client_id, "sha256": u.sha256, "num_examples": u.num_examples,
         "weight": weights.get(u.client_id)}
        for u in updates
    ]


def _normalise(raw: object, global_model: Mapping[str, np.ndarray]) -> AggregationResult:
    """Accept AggregationResult, (model, state) or a model; check and cast to the model's dtypes."""
    if isinstance(raw, AggregationResult):
        result = raw
    elif isinstance(raw, tuple):
        result = AggregationResult(model=dict(raw[0]), state=dict(raw[1]))
    else:
        result = AggregationResult(model=dict(raw))  # type: ignore[call-overload]
    if set(result.model) != set(global_model):
        raise ValueError("strategy returned a model whose tensor names differ from the global model")
    model = {}
    for name, ref in global_model.items():
        value = result.model[name]
        if _is_lazy(value):  # left in stored pieces
            if tuple(value.shape) != tuple(ref.shape) or np.dtype(value.dtype) != np.dtype(ref.dtype):
                raise ValueError(f"strategy returned {name} as {value.dtype}{value.shape}, expected {ref.shape}")
            model[name] = value
            continue
        arr = np.asarray(value)
        if arr.shape != ref.shape:
            raise ValueError(f"strategy returned {name} with shape {arr.shape}, expected {ref.shape}")
        model[name] = _contiguous(arr.astype(ref.dtype, copy=False))
    result.model = model
    result.state = {k: v if _is_lazy(v) else _contiguous(np.asarray(v)) for k, v in result.state.items()}
    return result


def _is_lazy(value: Any) -> bool:
    """A tensor read by range as it is written (lazy_result.LazyOutput), never held whole."""
    return not isinstance(value, np.ndarray) and hasattr(value, "read_flat")


def _contiguous(arr: np.ndarray) -> np.ndarray:
    """C order for the encoder; unlike np.ascontiguousarray, keeps 0-d arrays 0-d."""
    return arr if arr.flags.c_contiguous else arr.copy(order="C")
