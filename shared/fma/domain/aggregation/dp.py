"""Central differential privacy around any strategy: fixed clipping and Gaussian noise.

As Flower's `DifferentialPrivacyServerSideFixedClipping` (after Andrew et al. and McMahan et
al. 2018): each client's delta from the global model is scaled to L2 norm at most
`clipping_norm`, the wrapped strategy aggregates the clipped models, and Gaussian noise of
standard deviation `noise_multiplier * clipping_norm / n` (n = clients in the round) is added
to the aggregate. The noise comes from a generator seeded by the round's seed, so a re-run
writes the same bytes. The privacy spent so far (epsilon at `target_delta`, over every DP
round of the experiment) comes from dp-accounting's RDP accountant; the round count is kept
in the strategy state under `dp/rounds`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fma.domain.aggregation.engine import Engine
from fma.domain.aggregation.math import clip_scale
from fma.domain.aggregation.types import AggregationResult, UpdateInput

NOISE_CHUNK = 1 << 20
STATE_KEY = "dp/rounds"


def delta_norms(engine: Engine, updates: Sequence[UpdateInput]) -> np.ndarray:
    """||x_k - g|| for each client, from one shard pass of ranged reads."""
    sq = np.zeros(len(updates))

    def visit(s: int, e: int, rows: np.ndarray) -> None:
        d = rows - engine.layout.gather(engine.global_model, s, e)
        sq[:] += np.einsum("ij,ij->i", d, d, dtype=np.float64)

    engine.shard_pass(updates, visit, transform=False)
    return np.sqrt(sq)


def add_noise(model: dict[str, np.ndarray], std: float, seed: int) -> None:
    """Add N(0, std^2) to every float tensor in name order, in place, from one seeded stream."""
    rng = np.random.default_rng(seed)
    for name in sorted(model):
        arr = model[name]
        if arr.dtype.kind != "f" or std == 0.0:
            continue
        if not arr.flags.writeable or not arr.flags.c_contiguous:
            arr = model[name] = np.array(arr, order="C")
        flat = arr.reshape(-1)
        for s in range(0, flat.size, NOISE_CHUNK):
            part = flat[s : s + NOISE_CHUNK]
            noise = rng.standard_normal(part.size, dtype=np.float32)
            noise *= np.float32(std)
            part += noise.astype(part.dtype, copy=False)


def epsilon(noise_multiplier: float, rounds: int, delta: float, sampling_rate: float = 1.0) -> float:
    """Epsilon at `delta` after `rounds` Gaussian releases (Poisson-sampled when rate < 1)."""
    if noise_multiplier <= 0.0:
        return float("inf")
    import dp_accounting  # deferred: only DP rounds pay for the import
    from dp_accounting import rdp

    event: Any = dp_accounting.GaussianDpEvent(noise_multiplier)
    if sampling_rate < 1.0:
        event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(delta))


def with_dp(
    inner: Callable[..., AggregationResult],
    dp: Mapping[str, float],
    global_model: Mapping[str, np.ndarray],
    updates: Sequence[UpdateInput],
    state: Mapping[str, np.ndarray],
    params: Mapping[str, object],
    *,
    engine: Engine,
) -> AggregationResult:
    """Run `inner` on clipped updates, noise its model, account for the round."""
    clip, z = float(dp["clipping_norm"]), float(dp["noise_multiplier"])
    norms = delta_norms(engine, updates)
    engine.scales = {u.client_id: clip_scale(n, clip) for u, n in zip(updates, norms, strict=True)}
    inner_state = {k: v for k, v in state.items() if not k.startswith("dp/")}
    try:
        result = inner(global_model, updates, inner_state, params, engine=engine)
    finally:
        engine.scales = None
    std = z * clip / len(updates)
    add_noise(result.model, std, engine.seed)
    rounds = int(np.asarray(state.get(STATE_KEY, 0)).reshape(-1)[0]) + 1
    eps = epsilon(z, rounds, float(dp["target_delta"]), float(dp.get("sampling_rate", 1.0)))
    result.state = {**result.state, STATE_KEY: np.array(rounds, dtype=np.int64)}
    result.info["privacy"] = {
        "epsilon": eps if np.isfinite(eps) else None,
        "delta": float(dp["target_delta"]),
        "noise_multiplier": z,
        "clipping_norm": clip,
        "rounds": rounds,
        "noise_stddev": std,
        "clipped_clients": sum(1 for n in norms if n > clip),
    }
    return result
