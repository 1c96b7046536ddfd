"""Arbitrary JSON as strategy params (issue 11): validation answers InvalidInput or complete,
finite, bounded params, and those params never make aggregation raise anything but a domain
error."""

from __future__ import annotations

import math

import numpy as np
from agg_helpers import as_updates, random_round
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fma.domain.aggregation import aggregate
from fma.domain.errors import FmaError, InvalidInput
from fma.domain.strategy_catalog import CATALOG, DP_PARAMS, MAX_INT, validate_strategy

BUILTIN = ["fedavg", "fedprox", "fedavgm", "fedadagrad", "fedadam", "fedyogi", "fedmedian",
           "fedtrimmedavg", "krum", "multikrum", "bulyan"]
numbers = st.one_of(st.integers(), st.integers(-(10**400), 10**400), st.floats(), st.just(10**60),
                    st.just(10**400), st.decimals(allow_nan=False).map(float))
scalars = st.one_of(st.none(), st.booleans(), numbers, st.text(max_size=8), st.sampled_from(["flower", "paper"]))
json_values = st.recursive(scalars, lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                            st.dictionaries(st.text(max_size=6), inner, max_size=3)),
                           max_leaves=10)


@st.composite
def params_for(draw):
    """A strategy name and params that mostly use its real parameter names (so values get checked)."""
    name = draw(st.sampled_from(BUILTIN))
    keys = [*sorted(CATALOG[name]), "dp", "other"]
    params = draw(st.dictionaries(st.sampled_from(keys), json_values, max_size=4))
    if draw(st.booleans()):
        params["dp"] = draw(st.dictionaries(st.sampled_from([*sorted(DP_PARAMS), "x"]), json_values, max_size=4))
    return name, draw(st.one_of(st.just(params), json_values))


def _check_bounded(values: dict) -> None:
    for key, value in values.items():
        if isinstance(value, dict):
            _check_bounded(value)
        elif isinstance(value, int | float) and not isinstance(value, bool):
            assert math.isfinite(value) and abs(value) <= max(MAX_INT, 1e300), (key, value)
            if isinstance(value, int):
                assert abs(value) <= MAX_INT, (key, value)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params_for())
def test_arbitrary_json_params_are_refused_or_complete_and_bounded(case):
    name, params = case
    try:
        full = validate_strategy(name, params)
    except InvalidInput as err:
        assert err.code in ("INVALID_STRATEGY_PARAMS", "INVALID_INPUT", "DP_NOT_SUPPORTED") and err.message
        assert not any(t in err.message for t in ("Traceback", "<class", " object at 0x", "Error("))
        return
    assert set(full) - {"dp"} == set(CATALOG[name])
    _check_bounded(full)


G, CLIENTS = random_round(5, 12, spread=0.3)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(params_for())
def test_params_that_validate_never_make_aggregation_raise_a_non_domain_error(case):
    name, params = case
    try:
        validate_strategy(name, params)
    except InvalidInput:
        return
    try:
        out = aggregate(name, params, G, as_updates(CLIENTS), {}, round_number=1)
    except FmaError:
        return
    assert set(out.model) == set(G) and all(np.asarray(v).shape == G[k].shape for k, v in out.model.items())
