"""An experiment's `expected_clients` and the shard count derived from it (issues 13 and 18):
set at creation through the API, defaulted by the deployment (FMA_DEFAULT_EXPECTED_CLIENTS),
fixed for the experiment's life, and refused naming the field when out of range."""

from __future__ import annotations

import math

import pytest
from hostile import table_items

from fma.domain.auth import Role
from fma.local import dispatch

BODY = {"name": "exp", "strategy": {"name": "fedavg"}, "rounds": {"min_updates": 2, "total_rounds": 1}}


def create(stack, dev: str, **fields):
    return stack.api("POST", "/v1/experiments", dev, json_body=BODY | fields)


@pytest.mark.parametrize(("expected", "shards"), [(1, 1), (8, 1), (9, 2), (200, 25), (1024, 128), (10_000_000, 128)])
def test_the_shard_count_follows_expected_clients_and_is_kept(stack, expected, shards):
    dev = stack.token(Role.DEVELOPER, "dev-1")
    res = create(stack, dev, expected_clients=expected)
    assert res.status == 201, res.body
    made = res.json()["experiment"]
    assert shards == min(128, math.ceil(expected / 8))
    assert (made["expected_clients"], made["shards"]) == (expected, shards)
    again = stack.api("GET", f"/v1/experiments/{made['id']}", dev).json()
    assert (again["expected_clients"], again["shards"]) == (expected, shards)


def test_the_deployment_sets_the_default(stack, monkeypatch):
    dev = stack.token(Role.DEVELOPER, "dev-1")
    made = create(stack, dev).json()["experiment"]
    assert (made["expected_clients"], made["shards"]) == (64, 8)  # tests/conftest.py's deployment
    monkeypatch.delenv("FMA_DEFAULT_EXPECTED_CLIENTS")
    dispatch.reset_handler_caches()
    made = create(stack, dev).json()["experiment"]
    assert (made["expected_clients"], made["shards"]) == (1000, 125)  # Limits' built-in default
    monkeypatch.setenv("FMA_DEFAULT_EXPECTED_CLIENTS", "16")
    dispatch.reset_handler_caches()
    made = create(stack, dev).json()["experiment"]
    assert (made["expected_clients"], made["shards"]) == (16, 2)


@pytest.mark.parametrize("bad", [0, -1, 10_000_001, "100", 1.5, True, [], {}])
def test_an_expected_clients_out_of_range_is_refused_naming_it_and_writes_nothing(stack, bad):
    dev = stack.token(Role.DEVELOPER, "dev-1")
    before = table_items(stack)
    res = create(stack, dev, expected_clients=bad)
    assert res.status == 400, res.body
    error = res.json()["error"]
    assert error["details"]["field"] == "expected_clients" and "expected_clients" in error["message"]
    assert table_items(stack) == before
