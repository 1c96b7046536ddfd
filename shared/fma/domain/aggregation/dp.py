"""Central differential privacy: DP-FedAvg (McMahan et al. 2018) with fixed or adaptive
clipping (Andrew et al. 2021), and server optimizers on the privatized mean (DP-FedAdam).

The mechanism, per round, with m the denominator (`expected_clients`, or the round's number
of updates when unset) and C the clipping norm:
  1. each client's delta from the global model (float tensors only) is scaled to L2 norm <= C;
  2. the mean delta is their sum divided by m: uniform weights, `num_examples` plays no part,
     so one client moves it by at most C / m (add or remove one client; replacing one is two
     such steps);
  3. Gaussian noise of standard deviation z_model * C / m is added to that mean;
  4. the strategy's server step (FedAvg: none; FedAvgM, FedAdagrad, FedAdam, FedYogi: their
     optimizer) runs on the noised mean: post-processing, which costs no privacy.
Integer and bool tensors are not released: they keep the global model's values. Strategies
whose output is not a function of that mean (Krum, medians, custom code) are refused at
creation (strategy_catalog.DP_STRATEGIES), since the accountant's bound would not hold.

Adaptive clipping (`target_quantile` set) follows Andrew et al. 2021, Alg. 1, as TF-Privacy's
QuantileEstimatorQuery: the query is sum_i (b_i - 1/2) with b_i = 1 if client i was not
clipped, plus N(0, sigma_b^2), divided by m, plus 1/2. Its sensitivity is 1/2, so its noise
multiplier is 2 sigma_b; the model's is z_model = (z^-2 - (2 sigma_b)^-2)^(-1/2) (Thm. 1), so
that the pair costs what z alone does. The accountant composes both Gaussian events exactly.

The noise generator is seeded by `noise_seed`, which the aggregate service derives from a
server-side secret (services/dp_noise.py): nothing a client or analyst reads reproduces it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from fma.domain.aggregation.engine import Engine
from fma.domain.aggregation.fedopt import (
    SERVER_STEPS,
    identity_step,
    keep_integers_at_mean,
    keep_integers_in_range,
    ranged_step,
)
from fma.domain.aggregation.math import clip_scale
from fma.domain.aggregation.types import AggregationResult, UpdateInput
from fma.domain.errors import Unprocessable

NOISE_CHUNK = 1 << 20
#: the spawn key's first word for the model's noise chunks (the count query's noise is seed + [1]).
NOISE_STREAM = 2
STATE_KEY = "dp/rounds"
NORM_KEY = "dp/clipping_norm"
NEIGHBOURING = "add or remove one client's update (fixed denominator m)"


def delta_norms(engine: Engine, updates: Sequence[UpdateInput]) -> np.ndarray:
    """||x_k - g|| over the float tensors for each client, from one shard pass of ranged reads."""
    mask = engine.layout.integer_mask()

    def shard(s: int, e: int, rows: np.ndarray) -> np.ndarray:
        d = rows - engine.layout.gather(engine.global_model, s, e)
        if mask is not None:
            d[:, mask[s:e]] = 0.0
        return np.einsum("ij,ij->i", d, d, dtype=np.float64)

    return np.sqrt(engine.sum_shards(updates, shard, transform=False))


def add_noise(flat: np.ndarray, std: float, seed: Any, mask: np.ndarray | None = None) -> None:
    """Add N(0, std^2) to `flat` in place from one seeded float32 stream (chunked, so memory
    stays O(chunk)); positions where `mask` is True get none. The noise of rounds recorded
    before `Partitioning.ranged_dp` (their re-runs); new rounds draw `chunk_noise`."""
    if std == 0.0:
        return
    rng = np.random.default_rng(seed)
    for s in range(0, flat.size, NOISE_CHUNK):
        part = flat[s : s + NOISE_CHUNK]
        noise = rng.standard_normal(part.size, dtype=np.float32)
        noise *= np.float32(std)
        if mask is not None:
            noise[mask[s : s + NOISE_CHUNK]] = 0.0
        part += noise.astype(part.dtype, copy=False)


def chunk_noise(seed: Any, chunk: int, size: int, std: float) -> np.ndarray:
    """N(0, std^2) float32 noise of elements [chunk * NOISE_CHUNK, + size) of the flat vector:
    each chunk has its own stream (the seed's SeedSequence spawned at (NOISE_STREAM, chunk)), so
    any range of the noise is drawn without drawing what comes before it."""
    sequence = np.random.SeedSequence(np.atleast_1d(seed).tolist(), spawn_key=(NOISE_STREAM, chunk))
    noise = np.random.default_rng(sequence).standard_normal(size, dtype=np.float32)
    noise *= np.float32(std)
    return noise


def add_noise_range(values: np.ndarray, start: int, total: int, std: float, seed: Any) -> None:
    """Add the chunked noise of elements [start, start + values.size) to `values` in place: the
    same values whichever ranges a vector is finished in."""
    if std == 0.0 or values.size == 0:
        return
    end = start + values.size
    for chunk in range(start // NOISE_CHUNK, (end - 1) // NOISE_CHUNK + 1):
        a = chunk * NOISE_CHUNK
        noise = chunk_noise(seed, chunk, min(NOISE_CHUNK, total - a), std)
        lo, hi = max(a, start), min(a + NOISE_CHUNK, end)
        values[lo - start : hi - start] += noise[lo - a : hi - a].astype(values.dtype, copy=False)


def epsilon(noise_multiplier: float, rounds: int, delta: float, sampling_rate: float = 1.0,
            count_multiplier: float | None = None) -> float:
    """Epsilon at `delta` after `rounds` rounds, each one Gaussian release of multiplier
    `noise_multiplier` (and, with adaptive clipping, one of `count_multiplier`), Poisson-sampled
    when the rate is below 1: dp-accounting's RDP accountant over the exact composition."""
    if noise_multiplier <= 0.0 or (count_multiplier is not None and count_multiplier <= 0.0):
        return float("inf")
    import dp_accounting  # deferred: only DP rounds pay for the import
    from dp_accounting import rdp

    event: Any = dp_accounting.GaussianDpEvent(noise_multiplier)
    if count_multiplier is not None:
        event = dp_accounting.ComposedDpEvent([event, dp_accounting.GaussianDpEvent(count_multiplier)])
    if sampling_rate < 1.0:
        event = dp_accounting.PoissonSampledDpEvent(sampling_rate, event)
    accountant = rdp.RdpAccountant()
    accountant.compose(dp_accounting.SelfComposedDpEvent(event, rounds))
    return float(accountant.get_epsilon(delta))


def adaptive_noise_multiplier(noise_multiplier: float, count_stddev: float) -> float:
    """The model's share of the noise when the clipped count is noised too (Andrew et al. 2021,
    Thm. 1): z_delta = (z^-2 - (2 sigma_b)^-2)^(-1/2), so that the pair costs what z alone does."""
    if noise_multiplier <= 0.0:
        return 0.0
    if noise_multiplier >= 2 * count_stddev:
        raise Unprocessable(
            f"adaptive clipping needs noise_multiplier < 2 * clipped_count_stddev "
            f"({noise_multiplier} >= {2 * count_stddev}); raise clipped_count_stddev",
            code="INVALID_STRATEGY_PARAMS",
        )
    return (noise_multiplier**-2 - (2 * count_stddev) ** -2) ** -0.5


def unclipped_fraction(unclipped: int, n: int, m: int, count_stddev: float, rng: np.random.Generator,
                       noised: bool) -> float:
    """The paper's query: (sum_i (b_i - 1/2) + N(0, sigma_b^2)) / m + 1/2; sensitivity 1/2."""
    centred = unclipped - n / 2 + (rng.normal(0.0, count_stddev) if noised else 0.0)
    return centred / m + 0.5


def next_clipping_norm(norm: float, fraction: float, dp: Mapping[str, Any]) -> float:
    """Geometric update toward the target quantile (Andrew et al. 2021): C <- C exp(-lr (b - gamma)),
    b the (noised) fraction of clients *not* clipped. Flower 1.42 counts the clipped clients
    instead, which moves C the wrong way (tests/unit/aggregation/test_agg_dp.py shows both)."""
    return norm * float(np.exp(-float(dp["clip_norm_lr"]) * (fraction - float(dp["target_quantile"]))))


def count_stddev(dp: Mapping[str, Any], m: int) -> float:
    return float(dp["clipped_count_stddev"]) if dp.get("clipped_count_stddev") is not None else m / 20


def with_dp(
    name: str,
    dp: Mapping[str, Any],
    global_model: Mapping[str, np.ndarray],
    updates: Sequence[UpdateInput],
    state: Mapping[str, np.ndarray],
    params: Mapping[str, object],
    *,
    engine: Engine,
    noise_seed: Any,
) -> AggregationResult:
    """Clip, average uniformly over m, noise, then run `name`'s server step on the noised mean."""
    if name not in SERVER_STEPS:
        raise Unprocessable(f"central DP is not available with {name}", code="DP_NOT_SUPPORTED")
    adaptive = dp.get("target_quantile") is not None
    z, n = float(dp["noise_multiplier"]), len(updates)
    m = int(dp.get("expected_clients") or n)
    clip = float(state[NORM_KEY]) if adaptive and NORM_KEY in state else float(dp["clipping_norm"])
    z_model = adaptive_noise_multiplier(z, count_stddev(dp, m)) if adaptive else z
    norms = delta_norms(engine, updates)
    inner_state = {k: v for k, v in state.items() if not k.startswith("dp/")}
    if engine.partitioning.ranged_dp:
        mean, std = _ranged_privatized_mean(engine, updates, norms, clip, m, z_model, noise_seed)
        flat, new_state = _server_step(name, engine, mean, inner_state, params)
    else:  # the arithmetic of rounds recorded before ranged_dp (their re-runs)
        mean, std = _privatized_mean(engine, updates, norms, clip, m, z_model, noise_seed)
        flat, new_state = SERVER_STEPS[name](engine, mean, inner_state, params)
    rounds = int(np.asarray(state.get(STATE_KEY, 0)).reshape(-1)[0]) + 1
    new_state = {**new_state, STATE_KEY: np.array(rounds, dtype=np.int64)}
    info: dict[str, Any] = {"weights": {u.client_id: 1.0 / m for u in updates}}
    count_z = None
    if adaptive:
        count_z = 2 * count_stddev(dp, m)
        rng = np.random.default_rng([*np.atleast_1d(noise_seed).tolist(), 1])
        fraction = unclipped_fraction(int(np.sum(norms <= clip)), n, m, count_stddev(dp, m), rng, z > 0)
        new_state[NORM_KEY] = np.array(next_clipping_norm(clip, fraction, dp), dtype=np.float64)
    info["privacy"] = _privacy_info(dp, z, z_model, count_z, clip, std, rounds, int(np.sum(norms > clip)), m)
    if adaptive:
        info["privacy"]["next_clipping_norm"] = float(new_state[NORM_KEY])
    return AggregationResult(model=engine.model(flat), state=new_state, info=info)


def _ranged_privatized_mean(engine: Engine, updates: Sequence[UpdateInput], norms: np.ndarray, clip: float,
                            m: int, z_model: float, noise_seed: Any) -> tuple[Any, float]:
    """g + (sum_k clip_k(x_k - g)) / m + N(0, (z C / m)^2) on float positions, integers kept at
    g, computed range by range as the sum's ranges are combined: the vector in the single
    plan, left in its pieces in the fanout reduce (then read range by range, never whole)."""
    n, layout, std = len(updates), engine.layout, z_model * clip / m
    share = 1.0 - n / m  # the (1 - n/m) g that makes it g + (sum of clipped deltas) / m

    def finish(s: int, e: int, values: np.ndarray) -> None:
        g = engine.global_range(s, e)
        if n != m:
            values += values.dtype.type(share) * g
        add_noise_range(values, s, layout.total, std, noise_seed)
        keep_integers_in_range(layout, s, e, values, g)  # integers are not released: they stay g

    engine.scales = {u.client_id: clip_scale(x, clip) for u, x in zip(updates, norms, strict=True)}
    try:
        mean = engine.weighted_sum(updates, [1.0 / m] * n, lazy=True, finish=finish)
    finally:
        engine.scales = None
    return mean, std


def _server_step(name: str, engine: Engine, mean: Any, state: Mapping[str, np.ndarray],
                 params: Mapping[str, object]) -> tuple[Any, dict[str, Any]]:
    """`name`'s server step on the privatized mean; integers keep the mean's values (g), as the
    step over a mean left in its pieces keeps them (fedopt.ranged_step), so both plans agree."""
    if not isinstance(mean, np.ndarray):  # the fanout reduce: the mean left in its pieces
        return (mean, {}) if SERVER_STEPS[name] is identity_step else ranged_step(name, engine, mean, state, params)
    flat, new_state = SERVER_STEPS[name](engine, mean, state, params)
    keep_integers_at_mean(engine, flat, mean)
    return flat, new_state


def _privatized_mean(engine: Engine, updates: Sequence[UpdateInput], norms: np.ndarray, clip: float,
                     m: int, z_model: float, noise_seed: Any) -> tuple[np.ndarray, float]:
    """g + (sum_k clip_k(x_k - g)) / m + N(0, (z C / m)^2) on float positions; integers stay g
    (one noise stream over the whole vector: rounds recorded before ranged_dp)."""
    engine.scales = {u.client_id: clip_scale(x, clip) for u, x in zip(updates, norms, strict=True)}
    try:  # sum_k (g + c_k (x_k - g)) / m: the mean delta rides on g, as float32 models are stored
        mean = engine.weighted_sum(updates, [1.0 / m] * len(updates))
    finally:
        engine.scales = None
    g = engine.layout.flatten(engine.global_model)
    if len(updates) != m:  # add the (1 - n/m) g that makes it g + (sum of clipped deltas) / m
        mean += mean.dtype.type(1.0 - len(updates) / m) * g
    std = z_model * clip / m
    mask = engine.layout.integer_mask()
    add_noise(mean, std, noise_seed, mask)
    if mask is not None:
        mean[mask] = g[mask]
    return mean, std


def _privacy_info(dp: Mapping[str, Any], z: float, z_model: float, count_z: float | None, clip: float,
                  std: float, rounds: int, clipped: int, m: int) -> dict:
    eps = epsilon(z_model if count_z else z, rounds, float(dp["target_delta"]),
                  float(dp.get("sampling_rate") or 1.0), count_z)
    return {
        "epsilon": eps if np.isfinite(eps) else None,
        "delta": float(dp["target_delta"]),
        "noise_multiplier": z,
        "model_noise_multiplier": z_model,
        "count_noise_multiplier": count_z,
        "clipping_norm": clip,
        "expected_clients": m,
        "sensitivity": clip / m,
        "neighbouring": NEIGHBOURING,
        "rounds": rounds,
        "noise_stddev": std,
        "clipped_clients": clipped,
    }
