"""Strategy names and parameter validation, without numpy (the API handler imports this).

Each entry lists its parameters with defaults and bounds; `validate_strategy` returns the
params with defaults filled in so that the stored experiment is self-describing.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fma.domain.errors import InvalidInput


@dataclass(frozen=True)
class Param:
    """One numeric strategy parameter: default (None = required), type and bounds."""

    default: float | int | None
    kind: type = float
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    exclusive_maximum: bool = False
    optional: bool = False  # None (the default) means "not set" instead of "required"


_POSITIVE = {"minimum": 0.0, "exclusive_minimum": True}
_UNIT = {"minimum": 0.0, "maximum": 1.0, "exclusive_maximum": True}


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
    "multikrum": {"num_malicious": Param(0, int, 0), "num_to_select": Param(None, int, 1)},
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
        if not isinstance(params["dp"], Mapping):
            raise InvalidInput("strategy.params.dp must be an object", code="INVALID_STRATEGY_PARAMS",
                               details={"field": "strategy.params.dp"})
        out["dp"] = _check_all(name, DP_PARAMS, params["dp"], "strategy.params.dp")
    return out


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
        raise InvalidInput(f"{strategy}: parameter {key} is required", code="INVALID_STRATEGY_PARAMS", details=where)
    if isinstance(value, bool) or not isinstance(value, int | float) or (p.kind is int and not isinstance(value, int)):
        raise InvalidInput(f"{strategy}: {key} must be a {p.kind.__name__}", code=bad, details=where)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{strategy}: {key} must be finite", code="INVALID_STRATEGY_PARAMS", details=where)
    low_bad = p.minimum is not None and (value <= p.minimum if p.exclusive_minimum else value < p.minimum)
    high_bad = p.maximum is not None and (value >= p.maximum if p.exclusive_maximum else value > p.maximum)
    if low_bad or high_bad:
        lo, hi = "(" if p.exclusive_minimum else "[", ")" if p.exclusive_maximum else "]"
        raise InvalidInput(
            f"{strategy}: {key}={value} is outside {lo}{p.minimum}, {p.maximum}{hi}",
            code="INVALID_STRATEGY_PARAMS", details=where,
        )
    return p.kind(value)
