"""Issue 15 through HTTP: creating an async-mode experiment (`rounds.mode` "async"); invalid
combinations answer 400 at creation and create nothing."""

from __future__ import annotations

import pytest
from hostile import bucket_objects, table_items

from fma.domain.auth import Role

ASYNC = {"mode": "async", "buffer_size": 3, "max_staleness": 2, "total_rounds": 4}


def test_async_experiment_is_created_and_returns_its_full_policy(stack):
    dev = stack.token(Role.DEVELOPER)
    rounds = {**ASYNC, "max_wait_seconds": 60, "min_buffer": 2, "staleness": {"fn": "hinge", "a": 10, "b": 1}}
    res = stack.api("POST", "/v1/experiments", dev, json_body={"name": "a", "rounds": rounds})
    assert res.status == 201, res.body
    stored = stack.experiment(dev, res.json()["experiment"]["id"])["rounds"]
    assert stored == {**rounds, "staleness": {"fn": "hinge", "a": 10.0, "b": 1.0}, "server_learning_rate": 1.0}


INVALID = [
    ("async-field-in-sync", {"min_updates": 2, "buffer_size": 3}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("sync-field-in-async", {**ASYNC, "deadline_seconds": 60}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("no-buffer-size", {"mode": "async"}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("min-buffer-above-k", {**ASYNC, "max_wait_seconds": 5, "min_buffer": 4}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("bad-staleness", {**ASYNC, "staleness": {"fn": "hinge"}}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("custom-params", {**ASYNC, "staleness": {"fn": "constant", "x": 1}}, "fedavg", {}, "UNKNOWN_FIELD"),
    ("dp-in-async", ASYNC, "fedavg", {"dp": {"clipping_norm": 1.0, "noise_multiplier": 1.0}}, "DP_NOT_SUPPORTED"),
    ("optimizer-with-eta", {**ASYNC, "server_learning_rate": 0.5}, "fedadam", {}, "INVALID_ROUND_POLICY"),
    ("krum-small-buffer", {**ASYNC, "buffer_size": 2}, "krum", {}, "INVALID_STRATEGY_PARAMS"),
]


@pytest.mark.parametrize("rounds, strategy, params, code", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_async_combinations_are_400_at_creation_and_create_nothing(stack, rounds, strategy, params, code):
    dev = stack.token(Role.DEVELOPER)
    before, objects = table_items(stack), bucket_objects(stack)
    body = {"name": "bad", "rounds": rounds, "strategy": {"name": strategy, "params": params}}
    res = stack.api("POST", "/v1/experiments", dev, json_body=body)
    assert res.status == 400, res.body
    error = res.json()["error"]
    assert error["code"] == code and error["message"] and error["details"]["field"]
    assert table_items(stack) == before and bucket_objects(stack) == objects
