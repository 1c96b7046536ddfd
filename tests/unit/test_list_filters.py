"""The experiments list's query filters: any bytes a caller sends either parse or are a 400
naming the parameter; parsed filters match the way the API documents."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fma.domain.errors import InvalidInput
from fma.domain.experiment import Experiment, RoundPolicy
from fma.domain.states import ExperimentStatus
from fma.services.experiment_list import ListFilters, parse_filters

VALUES = st.one_of(st.none(), st.text(max_size=300), st.sampled_from(["RUNNING", "PAUSED,RUNNING", "fedavg", "krum"]))


@settings(max_examples=500, deadline=None)
@given(status=VALUES, strategy=VALUES, q=VALUES)
def test_any_query_values_parse_or_are_a_400_naming_the_parameter(status, strategy, q):
    try:
        filters = parse_filters({"status": status, "strategy": strategy, "q": q})
    except InvalidInput as exc:
        assert exc.code == "INVALID_QUERY_PARAMETER" and exc.status == 400
        assert exc.details["parameter"] in ("status", "strategy", "q") and exc.message
        return
    assert isinstance(filters, ListFilters)
    assert filters.query is None or filters.query == filters.query.strip().casefold()


def experiment(name: str, status: ExperimentStatus, strategy: str) -> Experiment:
    return Experiment(id="e1", name=name, owner="o", strategy_name=strategy, strategy_params={},
                      policy=RoundPolicy(), status=status)


@pytest.mark.parametrize("params, matches", [
    ({}, True),
    ({"status": "RUNNING"}, True),
    ({"status": "PAUSED,COMPLETED"}, False),
    ({"strategy": "fedavg"}, True),
    ({"strategy": "krum"}, False),
    ({"q": "  GITS-n  "}, True),
    ({"q": "cifar"}, False),
])
def test_filters_match_status_strategy_and_part_of_the_name_in_any_case(params, matches):
    exp = experiment("Digits-non-IID", ExperimentStatus.RUNNING, "fedavg")
    assert parse_filters(params).matches(exp) is matches
