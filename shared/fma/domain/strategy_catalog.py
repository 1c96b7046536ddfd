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
    default: float | int | None
    kind: type = float
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False


CATALOG: dict[str, dict[str, Param]] = {
    "fedavg": {},
    "fedprox": {"proximal_mu": Param(0.01, float, 0.0)},
}

#: params that are sent to clients in `client_config` rather than used by the server.
CLIENT_PARAMS: dict[str, tuple[str, ...]] = {"fedprox": ("proximal_mu",)}


def validate_strategy(name: object, params: object) -> dict[str, Any]:
    """Return complete params for `name`, or raise InvalidInput naming the bad field."""
    if not isinstance(name, str) or name not in CATALOG:
        raise InvalidInput(
            f"unknown strategy {name!r}; choose one of {sorted(CATALOG)}",
            code="UNKNOWN_STRATEGY", details={"field": "strategy.name"},
        )
    params = {} if params is None else params
    if not isinstance(params, Mapping):
        raise InvalidInput("strategy.params must be an object", details={"field": "strategy.params"})
    spec = CATALOG[name]
    unknown = sorted(set(params) - set(spec))
    if unknown:
        raise InvalidInput(
            f"unknown parameter(s) {unknown} for strategy {name}; allowed: {sorted(spec)}",
            code="INVALID_STRATEGY_PARAMS", details={"field": "strategy.params", "unknown": unknown},
        )
    return {key: _check(name, key, p, params.get(key, p.default)) for key, p in spec.items()}


def client_config_for(name: str, params: Mapping[str, Any]) -> dict[str, Any]:
    """Strategy params the clients need (FedProx's proximal_mu)."""
    return {key: params[key] for key in CLIENT_PARAMS.get(name, ()) if key in params}


def _check(strategy: str, key: str, p: Param, value: object) -> Any:
    where = {"field": f"strategy.params.{key}"}
    if value is None:
        raise InvalidInput(f"{strategy}: parameter {key} is required", code="INVALID_STRATEGY_PARAMS", details=where)
    if isinstance(value, bool) or not isinstance(value, int | float) or (p.kind is int and not isinstance(value, int)):
        raise InvalidInput(f"{strategy}: {key} must be a {p.kind.__name__}", code="INVALID_STRATEGY_PARAMS", details=where)
    if value != value or value in (float("inf"), float("-inf")):
        raise InvalidInput(f"{strategy}: {key} must be finite", code="INVALID_STRATEGY_PARAMS", details=where)
    low_bad = p.minimum is not None and (value <= p.minimum if p.exclusive_minimum else value < p.minimum)
    if low_bad or (p.maximum is not None and value > p.maximum):
        raise InvalidInput(
            f"{strategy}: {key}={value} is outside [{p.minimum}, {p.maximum}]",
            code="INVALID_STRATEGY_PARAMS", details=where,
        )
    return p.kind(value)
