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
