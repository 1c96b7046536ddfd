"""Strategy names -> functions, built-in and registered by users.

A strategy is a function

    fn(global_model, updates, state, params, *, engine) -> AggregationResult

(a `(model, state)` tuple or a bare model dict are accepted too). It should read updates
through `engine` (`weighted_sum`, `map_shards`, `shard_pass`, `client_vector`) so that memory
stays bounded and the DP wrapper applies. See docs/custom-strategies.md.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from fma.domain import strategy_catalog
from fma.domain.aggregation.fedavg import fedavg
from fma.domain.aggregation.fedopt import fedadagrad, fedadam, fedavgm, fedyogi
from fma.domain.aggregation.robust import bulyan, fedmedian, fedtrimmedavg, krum, multikrum
from fma.domain.errors import InvalidInput
from fma.domain.strategy_catalog import Param

StrategyFn = Callable[..., object]

BUILTIN: dict[str, StrategyFn] = {
    "fedavg": fedavg,
    "fedprox": fedavg,
    "fedavgm": fedavgm,
    "fedadagrad": fedadagrad,
    "fedadam": fedadam,
    "fedyogi": fedyogi,
    "fedmedian": fedmedian,
    "fedtrimmedavg": fedtrimmedavg,
    "krum": krum,
    "multikrum": multikrum,
    "bulyan": bulyan,
}
STRATEGIES: dict[str, StrategyFn] = dict(BUILTIN)
_NAME = re.compile(r"^[a-z][a-z0-9_.-]{0,63}$")


def register_strategy(
    name: str,
    fn: StrategyFn,
    *,
    params: Mapping[str, Param | float | int] | None = None,
    client_params: tuple[str, ...] = (),
) -> StrategyFn:
    """Register `fn` under `name` with its parameters (a Param, or a bare default value).

    Built-in names cannot be replaced. Without `params`, a function already registered under
    another name (its module registered it, an entry point names it again) keeps that spec.
    Returns `fn`, so it works as a decorator's body.
    """
    if not _NAME.match(name):
        raise ValueError(f"strategy name {name!r} must match {_NAME.pattern}")
    if name in BUILTIN:
        raise ValueError(f"{name!r} is a built-in strategy")
    if params is None:
        known = [n for n, f in STRATEGIES.items() if f is fn and n in strategy_catalog.CATALOG]
        params = strategy_catalog.CATALOG[known[0]] if known else {}
        client_params = client_params or (strategy_catalog.CLIENT_PARAMS.get(known[0], ()) if known else ())
    spec = {k: v if isinstance(v, Param) else Param(v, type(v)) for k, v in params.items()}
    STRATEGIES[name] = fn
    strategy_catalog.register_params(name, spec, client_params)
    return fn


def strategy(name: str, **kwargs: object) -> Callable[[StrategyFn], StrategyFn]:
    """Decorator form: `@strategy("mine", params={"alpha": 0.5})`."""
    return lambda fn: register_strategy(name, fn, **kwargs)  # type: ignore[arg-type]


def get_strategy(name: str) -> StrategyFn:
    """The function for `name`, loading plugins first if it is not known yet."""
    if name not in STRATEGIES:
        strategy_catalog.load_plugins()
    if name not in STRATEGIES:
        raise InvalidInput(f"unknown strategy {name!r}", code="UNKNOWN_STRATEGY")
    return STRATEGIES[name]
