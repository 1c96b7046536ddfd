"""Central differential privacy around any strategy: fixed clipping and Gaussian noise.

As Flower's `DifferentialPrivacyServerSideFixedClipping` (after Andrew et al. and McMahan et
al. 2018): each client's delta from the global model is scaled to L2 norm at most
`clipping_norm`, the wrapped strategy aggregates the clipped models, and Gaussian noise of
standard deviation `noise_multiplier * clipping_norm / n` (n = clients in the round) is added
to the aggregate. The noise comes from a generator seeded by the round's seed, so a re-run
writes the same bytes. The privacy spent so far (epsilon at `target_delta`, over every DP
round of the experiment) comes from dp-accounting's RDP accountant; the round count is kept
in the strategy state under `dp/rounds`.

With `target_quantile` set, the clipping norm adapts each round (Andrew et al. 2021): it moves
geometrically toward the `target_quantile` of the clients' update norms, from a noised count
of the clients that were not clipped, and is kept in the state under `dp/clipping_norm`; the
noise multiplier is split between the model and that count so the round costs what
`noise_multiplier` alone would.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np

from fma.domain.aggregation.engine import Engine
from fma.domain.aggregation.math import clip_scale
from fma.domain.aggregation.types import AggregationResult, UpdateInput
from fma.domain.errors import Unprocessable

NOISE_CHUNK = 1 << 20
STATE_KEY = "dp/rounds"
NORM_KEY = "dp/clipping_norm"


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


def next_clipping_norm(
    norm: float, unclipped: int, n: int, dp: Mapping[str, Any], rng: np.random.Generator
) -> float:
    """Geometric update toward the target quantile of the update norms (Andrew et al. 2021):
    C <- C exp(-lr (b - gamma)), b the (noised) fraction of clients *not* clipped.

    Flower 1.42 counts the clipped clients instead, which moves C the wrong way; this follows
    the paper (tests/unit/aggregation/test_agg_dp.py checks both)."""
    noisy = unclipped + (rng.normal(0.0, _count_stddev(dp, n)) if dp["noise_multiplier"] > 0 else 0.0)
    return norm * float(np.exp(-float(dp["clip_norm_lr"]) * (noisy / n - float(dp["target_quantile"]))))


def _count_stddev(dp: Mapping[str, Any], n: int) -> float:
    return float(dp["clipped_count_stddev"]) if dp.get("clipped_count_stddev") is not None else n / 20


def with_dp(
    inner: Callable[..., AggregationResult],
    dp: Mapping[str, Any],
    global_model: Mapping[str, np.ndarray],
    updates: Sequence[UpdateInput],
    state: Mapping[str, np.ndarray],
    params: Mapping[str, object],
    *,
    engine: Engine,
) -> AggregationResult:
    """Run `inner` on clipped updates, noise its model, account for the round."""
    adaptive = dp.get("target_quantile") is not None
    z, n = float(dp["noise_multiplier"]), len(updates)
    clip = float(state[NORM_KEY]) if adaptive and NORM_KEY in state else float(dp["clipping_norm"])
    z_model = adaptive_noise_multiplier(z, _count_stddev(dp, n)) if adaptive else z
    norms = delta_norms(engine, updates)
    engine.scales = {u.client_id: clip_scale(x, clip) for u, x in zip(updates, norms, strict=True)}
    inner_state = {k: v for k, v in state.items() if not k.startswith("dp/")}
    try:
        result = inner(global_model, updates, inner_state, params, engine=engine)
    finally:
        engine.scales = None
    std = z_model * clip / n  # calibrated to the norm this round clipped with
    add_noise(result.model, std, engine.seed)
    rounds = int(np.asarray(state.get(STATE_KEY, 0)).reshape(-1)[0]) + 1
    result.state = {**result.state, STATE_KEY: np.array(rounds, dtype=np.int64)}
    if adaptive:
        unclipped = int(np.sum(norms <= clip))
        new_norm = next_clipping_norm(clip, unclipped, n, dp, np.random.default_rng([engine.seed, 1]))
        result.state[NORM_KEY] = np.array(new_norm, dtype=np.float64)
    result.info["privacy"] = _privacy_info(dp, z, clip, std, rounds, int(np.sum(norms > clip)))
    if adaptive:
        result.info["privacy"]["next_clipping_norm"] = new_norm
    return result


def _privacy_info(dp: Mapping[str, Any], z: float, clip: float, std: float, rounds: int, clipped: int) -> dict:
    eps = epsilon(z, rounds, float(dp["target_delta"]), float(dp.get("sampling_rate") or 1.0))
    return {
        "epsilon": eps if np.isfinite(eps) else None,
        "delta": float(dp["target_delta"]),
        "noise_multiplier": z,
        "clipping_norm": clip,
        "rounds": rounds,
        "noise_stddev": std,
        "clipped_clients": clipped,
    }
