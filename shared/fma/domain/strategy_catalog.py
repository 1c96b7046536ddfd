"""Strategy names and parameter validation, without numpy (the API handler imports this).

Each entry lists its parameters with defaults and bounds (docs/strategies.md says, per strategy,
where FMA follows Flower rather than the paper); `validate_strategy` returns the
params with defaults filled in so that the stored experiment is self-describing.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fma.domain.errors import InvalidInput


@dataclass(frozen=True)
class Param:
    """One strategy parameter: default (None = required), type and bounds (or `choices` for a
    string). Integers without a `maximum` are held to MAX_INT, so no count can overflow numpy."""

    default: float | int | str | None
    kind: type = float
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    optional: bool = False  # None (the default) means "not set" instead of "required"
    choices: tuple[str, ...] = ()


#: largest integer parameter accepted (a count of clients; far below int64 and float64's 2^53).
MAX_INT = 1_000_000
_POSITIVE = {"minimum": 0.0, "exclusive_minimum": True}
_UNIT = {"minimum": 0.0, "maximum": 1.0, "exclusive_maximum": True}
#: `variant`: "flower" computes as Flower 1.42 does, "paper" as the strategy's paper (docs/strategies.md).
VARIANT = Param("flower", str, choices=("flower", "paper"))


def _fedopt(eta: float, eta_l: float, beta_1: float, beta_2: float | None, tau: float) -> dict[str, Param]:
    """Reddi et al.'s server optimizers, with Flower 1.42's defaults."""
    spec = {
        "eta": Param(eta, float, **_POSITIVE),
        "eta_l": Param(eta_l, float, **_POSITIVE),
        "beta_1": Param(beta_1, float, **_UNIT),
        "tau": Param(tau, float, **_POSITIVE),
    }
    if beta_2 is not None:
        spec["beta_2"] = Param(beta_2, float, **_UNIT)
    spec["variant"] = VARIANT
    return spec


CATALOG: dict[str, dict[str, Param]] = {
    "fedavg": {},
    "fedprox": {"proximal_mu": Param(0.01, float, 0.0)},
    "fedavgm": {
        "server_learning_rate": Param(1.0, float, **_POSITIVE),
        "server_momentum": Param(0.0, float, 0.0, 1.0),
    },
    "fedadagrad": _fedopt(0.1, 0.1, 0.0, None, 1e-9),
    "fedadam": _fedopt(0.1, 0.1, 0.9, 0.99, 1e-9),
    "fedyogi": _fedopt(1e-2, 0.0316, 0.9, 0.99, 1e-3),
    "fedmedian": {},
    "fedtrimmedavg": {"beta": Param(0.2, float, 0.0, 0.5, exclusive_maximum=True)},
    "krum": {"num_malicious": Param(0, int, 0)},
    "multikrum": {"num_malicious": Param(0, int, 0), "num_to_select": Param(None, int, 1), "variant": VARIANT},
    "bulyan": {"num_malicious": Param(0, int, 0)},
}

#: params that are sent to clients in `client_config` rather than used by the server.
CLIENT_PARAMS: dict[str, tuple[str, ...]] = {
    "fedprox": ("proximal_mu",),
    "fedadagrad": ("eta_l",),
    "fedadam": ("eta_l",),
    "fedyogi": ("eta_l",),
}

#: the central-DP wrapper, accepted by every strategy as `params.dp` (an object).
DP_PARAMS: dict[str, Param] = {
    "clipping_norm": Param(None, float, **_POSITIVE),
    "noise_multiplier": Param(None, float, 0.0),
    "target_delta": Param(1e-5, float, 0.0, 1.0, exclusive_minimum=True, exclusive_maximum=True),
    "sampling_rate": Param(1.0, float, 0.0, 1.0, exclusive_minimum=True),
    # Adaptive clipping (Andrew et al. 2021) when target_quantile is set; clipping_norm is then
    # the initial norm, and the current one is kept in the strategy state.
    "target_quantile": Param(None, float, 0.0, 1.0, optional=True),
    "clip_norm_lr": Param(0.2, float, **_POSITIVE),
    "clipped_count_stddev": Param(None, float, 0.0, optional=True),
    # The denominator m of the privatized mean (the noise is z C / m); unset: the round's updates.
    "expected_clients": Param(None, int, 1, optional=True),
}

#: strategies that central DP supports: a clipped uniform mean, then a server step on the
#: noised mean (post-processing). Their sensitivity is C / m, which the accountant assumes.
DP_STRATEGIES = ("fedavg", "fedprox", "fedavgm", "fedadagrad", "fedadam", "fedyogi")
_DP_REFUSED = {
    "fedmedian": "a coordinate-wise median moves with one client by an amount FMA has not derived",
    "fedtrimmedavg": "a trimmed mean's sensitivity to one client is not the clipped mean's C/m",
    "krum": "Krum publishes one client's model: one client can change it by up to 2C, not C/m",
    "multikrum": "Multi-Krum's selection lets one client change which models are averaged",
    "bulyan": "Bulyan's selection lets one client change which models are averaged",
}

#: environment variable naming modules (comma-separated) whose import registers strategies.
PLUGIN_ENV = "FMA_STRATEGY_MODULES"
#: entry point group of installed packages that provide strategies.
PLUGIN_GROUP = "fma.strategies"


def register_params(name: str, params: dict[str, Param], client_params: tuple[str, ...] = ()) -> None:
    """Make a custom strategy's name and parameters known to validation."""
    CATALOG[name] = dict(params)
    if client_params:
        CLIENT_PARAMS[name] = tuple(client_params)


def load_plugins() -> None:
    """Import the modules in $FMA_STRATEGY_MODULES and the `fma.strategies` entry points.

    A module registers its strategies on import (`register_strategy`); an entry point that
    names a function registers it under the entry point's name. Called only for names that
    are not built in, so the API handler stays numpy-free for them.
    """
    import importlib
    import os
    from importlib.metadata import entry_points

    for module in filter(None, (m.strip() for m in os.environ.get(PLUGIN_ENV, "").split(","))):
        importlib.import_module(module)
    for ep in entry_points(group=PLUGIN_GROUP):
        if ep.name in CATALOG:
            continue
        obj = ep.load()
        if callable(obj):
            from fma.domain.aggregation.registry import register_strategy

            register_strategy(ep.name, obj, params=getattr(obj, "fma_params", None))


def validate_strategy(name: object, params: object) -> dict[str, Any]:
    """Return complete params for `name`, or raise InvalidInput naming the bad field."""
    if isinstance(name, str) and name not in CATALOG:
        load_plugins()
    if not isinstance(name, str) or name not in CATALOG:
        raise InvalidInput(
            f"unknown strategy {name!r}; choose one of {sorted(CATALOG)}",
            code="UNKNOWN_STRATEGY", details={"field": "strategy.name"},
        )
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise InvalidInput("strategy.params must be an object", details={"field": "strategy.params"})
    spec = CATALOG[name]
    out = _check_all(name, spec, {k: v for k, v in params.items() if k != "dp"}, "strategy.params")
    if params.get("dp") is not None:
        _check_dp_allowed(name)
        if not isinstance(params["dp"], Mapping):
            raise InvalidInput("strategy.params.dp must be an object", code="INVALID_STRATEGY_PARAMS",
                               details={"field": "strategy.params.dp"})
        out["dp"] = _check_all(name, DP_PARAMS, params["dp"], "strategy.params.dp")
    return out


def _check_dp_allowed(name: str) -> None:
    """Refuse DP around a strategy whose sensitivity the accountant's C/m does not bound."""
    if name in DP_STRATEGIES:
        return
    why = _DP_REFUSED.get(name, "FMA cannot derive the sensitivity of a custom strategy")
    raise InvalidInput(
        f"central DP (params.dp) is not available with {name}: {why}, so the epsilon reported "
        f"would not hold. Use one of {list(DP_STRATEGIES)} (server optimizers run on the privatized mean)",
        code="DP_NOT_SUPPORTED", details={"field": "strategy.params.dp", "allowed": list(DP_STRATEGIES)},
    )


def _check_all(name: str, spec: Mapping[str, Param], params: Mapping[str, Any], where: str) -> dict[str, Any]:
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) {unknown} for strategy {name}; allowed: {sorted(spec)}",
            code="INVALID_STRATEGY_PARAMS", details={"field": where, "unknown": unknown},
        )
    return {key: _check(name, f"{where}.{key}", p, params.get(key, p.default)) for key, p in spec.items()}


def client_config_for(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Strategy params the clients need (FedProx's proximal_mu)."""
    return {key: params[key] for key in CLIENT_PARAMS.get(name, ()) if key in params}


def _check(strategy: str, field_path: str, p: Param, value: object) -> Any:
    where = {"field": field_path}
    key = field_path.removeprefix("strategy.params.")
    bad = "INVALID_STRATEGY_PARAMS"
    if value is None and p.optional:
        return None
    if value is None:
        raise InvalidInput(f"{strategy}: parameter {key} is required", code=bad, details=where)
    if p.kind is str:
        if not isinstance(value, str) or (p.choices and value not in p.choices) or len(value) > 256:
            allowed = f"one of {list(p.choices)}" if p.choices else "a string of at most 256 characters"
            raise InvalidInput(f"{strategy}: {key} must be {allowed}", code=bad, details=where)
        return value
    if isinstance(value, bool) or not isinstance(value, int | float) or (p.kind is int and not isinstance(value, int)):
        raise InvalidInput(f"{strategy}: {key} must be a {p.kind.__name__}", code=bad, details=where)
    number = _finite(value) if p.kind is float else value
    if number is None:
        raise InvalidInput(f"{strategy}: {key} must be a finite number", code=bad, details=where)
    maximum = p.maximum if p.maximum is not None or p.kind is not int else MAX_INT
    low_bad = p.minimum is not None and (number <= p.minimum if p.exclusive_minimum else number < p.minimum)
    high_bad = maximum is not None and (number >= maximum if p.exclusive_maximum else number > maximum)
    if low_bad or high_bad:
        lo, hi = "(" if p.exclusive_minimum else "[", ")" if p.exclusive_maximum else "]"
        shown = f"{number:g}" if isinstance(number, float) else str(number) if abs(number) < 10**30 else "huge"
        raise InvalidInput(
            f"{strategy}: {key}={shown} is outside {lo}{p.minimum}, {maximum}{hi}", code=bad, details=where,
        )
    return p.kind(number)


def _finite(value: int | float) -> float | None:
    """`value` as a finite float, or None (NaN, infinity, or an integer beyond float range)."""
    try:
        number = float(value)
    except OverflowError:  # 10**400 is a valid JSON integer
        return None
    return number if math.isfinite(number) else None


#: strategies async mode (FedBuff, issue 15) runs on the buffer's staleness-weighted deltas
#: d_i = s(tau_i) (u_i - m_{b_i}): the weighted mean (FedAvg, FedProx), a server optimizer
#: stepping on that mean, or a robust rule over the d_i. Custom strategies see client models,
#: not deltas against several base versions, so they stay in sync mode.
ASYNC_MEAN = ("fedavg", "fedprox")
ASYNC_OPTIMIZERS = ("fedavgm", "fedadagrad", "fedadam", "fedyogi")
ASYNC_ROBUST = ("fedmedian", "fedtrimmedavg", "krum", "multikrum", "bulyan")
ASYNC_STRATEGIES = (*ASYNC_MEAN, *ASYNC_OPTIMIZERS, *ASYNC_ROBUST)
#: smallest number of updates each robust rule is defined for, given num_malicious f.
ROBUST_QUORUM = {"bulyan": lambda f: 4 * f + 3, "krum": lambda f: 2 * f + 3, "multikrum": lambda f: 2 * f + 3}


def check_async_strategy(name: str, params: Mapping[str, Any], *, server_learning_rate: float,
                         smallest_buffer: int) -> None:
    """Refuse a strategy that async mode cannot run with these settings (400 at creation).

    `smallest_buffer` is the fewest updates a version may aggregate (`min_buffer` with
    `max_wait_seconds`, else `buffer_size`).
    """
    if name not in ASYNC_STRATEGIES:
        raise InvalidInput(
            f"strategy {name} does not run in async mode; choose one of {list(ASYNC_STRATEGIES)}",
            code="ASYNC_NOT_SUPPORTED", details={"field": "strategy.name", "allowed": list(ASYNC_STRATEGIES)},
        )
    if params.get("dp") is not None:
        raise InvalidInput(
            "central DP (params.dp) is not available in async mode: its accountant assumes one "
            "uniform mean per round of a sampled cohort, not staleness-weighted buffers",
            code="DP_NOT_SUPPORTED", details={"field": "strategy.params.dp"},
        )
    if name in ASYNC_OPTIMIZERS and server_learning_rate != 1.0:
        own = "server_learning_rate" if name == "fedavgm" else "eta"
        raise InvalidInput(
            f"{name} steps with its own rate (strategy.params.{own}); rounds.server_learning_rate must "
            "stay 1.0 with a server optimizer", code="INVALID_ROUND_POLICY",
            details={"field": "rounds.server_learning_rate"},
        )
    need = ROBUST_QUORUM.get(name)
    f = int(params.get("num_malicious", 0) or 0)
    if need is not None and smallest_buffer < need(f):
        raise InvalidInput(
            f"{name} with num_malicious={f} needs at least {need(f)} updates per buffer; "
            f"this policy may publish {smallest_buffer}", code="INVALID_STRATEGY_PARAMS",
            details={"field": "rounds.buffer_size", "minimum": need(f)},
        )
