"""FedBuff (Nguyen et al., AISTATS 2022): one version from a buffer of possibly stale updates.

    new = current + eta * sum_i n_i s(tau_i) (u_i - m_{b_i}) / sum_i n_i

`DeltaEngine` is an `Engine` whose passes read each update as its staleness-weighted delta
d_i = s(tau_i) (u_i - m_{b_i}) against the published model of its own base version: the
streaming sum keeps one slice of each base model and one slice of one update in memory (the
same fused axpy into one accumulator as FedAvg), and shard passes read the base models' rows
beside the updates'. The built-in strategies then run unchanged on deltas: the weighted mean
is FedBuff's step, a server optimizer (FedAvgM, FedAdagrad, FedAdam, FedYogi) steps on
current + mean delta, and the robust rules (median, trimmed mean, Krum, Bulyan) pick or
combine deltas. With every tau_i = 0 and eta = 1 this is FedAvg of the buffer.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from fma.domain.aggregation.engine import Engine, EngineOptions
from fma.domain.aggregation.fedavg import weighted_average
from fma.domain.aggregation.fedopt import SERVER_STEPS, keep_integers_at_mean
from fma.domain.aggregation.math import axpy, single_threaded_blas
from fma.domain.aggregation.registry import BUILTIN
from fma.domain.aggregation.types import AggregationResult, UpdateInput
from fma.domain.strategy_catalog import ASYNC_MEAN, ASYNC_OPTIMIZERS, ASYNC_ROBUST


@dataclass(frozen=True)
class BufferedUpdate:
    """One buffer entry: an accepted update and the version it was trained on."""

    update: UpdateInput
    base_version: int

    @property
    def key(self) -> str:
        """Unique in a buffer (a client may have updates on two bases there); sorts by round."""
        return entry_key(self.base_version + 1, self.update.client_id)


def entry_key(round_number: int, client_id: str) -> str:
    return f"{round_number:08d}:{client_id}"


def base_key(version: int) -> str:
    return f"base:{version:08d}"


class DeltaEngine(Engine):
    """Reads every update as s_i (u_i - m_{b_i}); `bases[key]` is the base model of entry `key`."""

    def __init__(self, global_model: Mapping[str, np.ndarray], bases: Mapping[str, UpdateInput],
                 factors: Mapping[str, float], options: EngineOptions | None = None, *,
                 round_number: int = 0, seed: int = 0) -> None:
        super().__init__(global_model, options, round_number=round_number, seed=seed)
        self.bases = dict(bases)
        self.factors = dict(factors)

    def _bases_of(self, updates: Sequence[UpdateInput]) -> list[UpdateInput]:
        distinct = {self.bases[u.client_id].client_id: self.bases[u.client_id] for u in updates}
        return [distinct[k] for k in sorted(distinct)]

    def weighted_sum(self, updates: Sequence[UpdateInput], weights: Sequence[float], *,
                     lazy: bool = False) -> np.ndarray:
        """sum_k w_k s_k (u_k - m_{b_k}), slice by slice: each base slice read once per slice.
        (`lazy` changes nothing here: FedBuff runs in one function, never a fanout reduce.)"""
        acc = np.zeros(self.layout.total, dtype=self.layout.acc_dtype)
        bases = self._bases_of(updates)
        alphas = [float(w) * self.factors[u.client_id] for u, w in zip(updates, weights, strict=True)]
        slices = self.layout.slices(self.chunk_elems())
        tasks = [(x, s, e) for s, e in slices for x in (*bases, *updates)]
        per_slice = len(bases) + len(updates)
        cached: dict[str, np.ndarray] = {}
        with single_threaded_blas():
            for n, block in enumerate(self.blocks(tasks)):
                item, s, e = tasks[n]
                row = self._row(block, e - s)
                k = n % per_slice - len(bases)
                if k < 0:
                    cached[item.client_id] = row
                    continue
                t0 = time.perf_counter()
                row -= cached[self.bases[item.client_id].client_id]
                axpy(alphas[k], row, acc[s:e], portable=self.options.portable)
                self.stats.compute += time.perf_counter() - t0
        return acc

    def _row(self, block: object, size: int) -> np.ndarray:
        row = np.empty(size, dtype=self.layout.acc_dtype)
        for dst, view in self.views(block):  # type: ignore[arg-type]
            row[dst : dst + view.size] = view
        return row

    def shard_pass(self, updates: Sequence[UpdateInput], visit: Callable[[int, int, np.ndarray], None], *,
                   transform: bool = True, span: tuple[int, int] | None = None) -> None:
        """visit(s, e, rows) with rows[k] = s_k (u_k - m_{b_k}) on the shard [s, e)."""
        bases = self._bases_of(updates)
        index = {b.client_id: len(updates) + i for i, b in enumerate(bases)}
        own = [index[self.bases[u.client_id].client_id] for u in updates]
        factors = [self.factors[u.client_id] for u in updates]
        k = len(updates)

        def deltas(s: int, e: int, rows: np.ndarray) -> np.ndarray:
            for i in range(k):
                rows[i] -= rows[own[i]]
                if factors[i] != 1.0:
                    rows[i] *= rows.dtype.type(factors[i])
            visit(s, e, rows[:k])

        super().shard_pass([*updates, *bases], deltas, transform=transform, span=span)

    def model(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """Deltas stay in the accumulation dtype (no rounding of integer tensors' deltas)."""
        layout = self.layout
        return {n: flat[o : o + s].reshape(shape)
                for n, o, s, shape in zip(layout.names, layout.offsets, layout.sizes, layout.shapes, strict=True)}


def run_fedbuff(strategy: str, params: Mapping[str, object], engine: DeltaEngine, updates: Sequence[UpdateInput],
                state: Mapping[str, np.ndarray], server_learning_rate: float) -> AggregationResult:
    """The next version as a flat vector in `model` ("flat"), with the strategy's info and state."""
    current = engine.layout.flatten(engine.global_model)
    if strategy in ASYNC_MEAN or strategy in ASYNC_OPTIMIZERS:
        delta, weights = weighted_average(engine, updates, uniform=params.get("variant") == "paper")
        new_state: dict[str, np.ndarray] = {}
        if strategy in ASYNC_OPTIMIZERS:
            mean = current + delta
            flat, new_state = SERVER_STEPS[strategy](engine, mean.copy(), state, params)
            keep_integers_at_mean(engine, flat, mean)
        else:
            flat = current
            axpy(server_learning_rate, delta, flat, portable=engine.options.portable)
        return AggregationResult(model={"flat": flat}, state=new_state, info={"weights": weights})
    if strategy not in ASYNC_ROBUST:
        raise ValueError(f"strategy {strategy} does not run in async mode")
    raw = BUILTIN[strategy](engine.global_model, updates, state, params, engine=engine)
    delta = engine.layout.flatten(raw.model)
    flat = current
    axpy(server_learning_rate, delta, flat, portable=engine.options.portable)
    return AggregationResult(model={"flat": flat}, info=raw.info)
