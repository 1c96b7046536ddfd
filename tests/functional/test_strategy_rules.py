"""Strategy rules at creation, through the HTTP API: parameters that cannot be computed with
(10**400, 10**60) and DP around strategies whose sensitivity FMA does not account for are
refused with 400 and the error body, and nothing is written."""

from __future__ import annotations

import boto3
import pytest

from fma.domain.auth import Role


def table_items() -> list[dict]:
    table = boto3.resource("dynamodb", region_name="us-east-1").Table("fma-test")
    return table.scan()["Items"]


def create(stack, dev, strategy):
    body = {"name": "x", "strategy": strategy, "rounds": {"min_updates": 3, "total_rounds": 2}}
    return stack.api("POST", "/v1/experiments", dev, json_body=body)


def assert_refused(stack, res, text):
    assert res.status == 400, (res.status, res.body)
    err = res.json()["error"]
    assert set(err) == {"code", "message", "details"} and text in err["message"], err
    return err


@pytest.mark.parametrize(("strategy", "text"), [
    ({"name": "fedavgm", "params": {"server_learning_rate": 10**400}}, "server_learning_rate"),
    ({"name": "krum", "params": {"num_malicious": 10**60}}, "num_malicious"),
    ({"name": "multikrum", "params": {"num_to_select": 2, "variant": "both"}}, "variant"),
    ({"name": "fedadam", "params": {"dp": {"clipping_norm": 10**400, "noise_multiplier": 1}}}, "clipping_norm"),
])
def test_parameters_beyond_computation_are_400_and_write_nothing(stack, strategy, text):
    dev = stack.token(Role.DEVELOPER)
    before = table_items()
    assert_refused(stack, create(stack, dev, strategy), text)
    assert table_items() == before


@pytest.mark.parametrize("strategy", [
    {"name": "krum", "params": {"num_malicious": 0}},
    {"name": "multikrum", "params": {"num_to_select": 2}},
    {"name": "fedmedian"},
    {"name": "fedtrimmedavg"},
    {"name": "bulyan"},
])
def test_dp_around_a_robust_selection_is_400_saying_why_and_writes_nothing(stack, strategy):
    dev = stack.token(Role.DEVELOPER)
    before = table_items()
    body = {**strategy, "params": {**strategy.get("params", {}), "dp": {"clipping_norm": 1, "noise_multiplier": 1}}}
    err = assert_refused(stack, create(stack, dev, body), f"not available with {strategy['name']}")
    assert err["code"] == "DP_NOT_SUPPORTED" and "epsilon reported would not hold" in err["message"]
    assert table_items() == before


@pytest.mark.parametrize("name", ["fedavg", "fedadam", "fedyogi"])
def test_dp_with_a_mean_based_strategy_is_created(stack, name):
    dev = stack.token(Role.DEVELOPER)
    res = create(stack, dev, {"name": name, "params": {"dp": {"clipping_norm": 1, "noise_multiplier": 1}}})
    assert res.status == 201, res.body
    assert res.json()["experiment"]["strategy"]["params"]["dp"]["expected_clients"] is None


def test_krum_with_a_quota_of_at_most_2f_plus_2_is_refused_at_creation(stack):
    dev = stack.token(Role.DEVELOPER)
    body = {"name": "x", "strategy": {"name": "krum", "params": {"num_malicious": 1}},
            "rounds": {"min_updates": 4, "total_rounds": 2}}
    res = stack.api("POST", "/v1/experiments", dev, json_body=body)
    assert_refused(stack, res, "needs rounds.min_updates >= 5")
