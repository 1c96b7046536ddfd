"""Property tests through the real API handler (tests/harness.py): arbitrary JSON (nesting,
huge numbers, NaN, unicode digits, duplicate keys) into every request body, and arbitrary strings
into every path and query parameter. Never a 5xx; every refusal has the error body; a refused
request changes nothing in the table or the bucket."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fma.domain.auth import Role

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(10**450), max_value=10**450)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=8)
           | st.sampled_from(["²", "¹", "\u0661", "\ud800", "analyst", "PAUSED", "all", "fedavg"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=3) | st.dictionaries(
    st.sampled_from(["name", "role", "status", "archived", "size", "sha256", "metrics", "num_examples", "max_uses",
                     "rounds", "strategy", "client_config", "min_updates", "x"]) | st.text(max_size=4),
    inner, max_size=4), max_leaves=20)
NESTING = st.integers(1, 5000).map(lambda n: b'{"name": ' + b"[" * n + b"]" * n + b"}")
DUPLICATE = st.sampled_from([b'{"name": "a", "name": "b"}', b'{"size": 1, "size": 2}',
                             b'{"role": "analyst", "role": 1}'])
BODIES = VALUES.map(lambda v: json.dumps(v, allow_nan=True).encode("utf-8", "surrogatepass")) | NESTING | DUPLICATE \
    | st.binary(max_size=64)
ROUTES = [
    ("admin", "POST", "/v1/tokens"), ("dev", "POST", "/v1/experiments"), ("dev", "PATCH", "/v1/experiments/{id}"),
    ("dev", "POST", "/v1/experiments/{id}/enrollment-tokens"), ("enroll", "POST", "/v1/experiments/{id}/clients"),
    ("client", "POST", "/v1/experiments/{id}/rounds/1/updates"),
    ("client", "POST", "/v1/experiments/{id}/rounds/0/evaluations"),
]
PATHS = [
    ("dev", "GET", "/v1/experiments/{x}"), ("dev", "GET", "/v1/experiments/{id}/rounds/{x}"),
    ("dev", "GET", "/v1/experiments/{id}/models/{x}"), ("client", "GET", "/v1/experiments/{x}/model"),
    ("client", "PUT", "/v1/experiments/{id}/rounds/{x}/updates"), ("dev", "DELETE", "/v1/tokens/{x}"),
    ("dev", "DELETE", "/v1/experiments/{id}/clients/{x}"),
    ("client", "POST", "/v1/experiments/{id}/rounds/{x}/updates"),
]
QUERIES = [("dev", "/v1/experiments"), ("admin", "/v1/experiments"), ("dev", "/v1/experiments/{id}/rounds")]
REPR = re.compile(r"<\w+\.\w+: ")
SETTINGS = settings(max_examples=40, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


@pytest.fixture
def world(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, {"w": np.zeros(2, np.float32)}, rounds={"min_updates": 50})
    enroll = stack.api("POST", f"/v1/experiments/{exp_id}/enrollment-tokens", dev, json_body={}).json()["token"]
    client = stack.api("POST", f"/v1/experiments/{exp_id}/clients", enroll, json_body={}).json()["token"]
    return stack, {"dev": dev, "admin": stack.token(Role.ADMIN), "enroll": enroll, "client": client}, exp_id


def check(stack, res, before) -> None:
    assert res.status < 500, res.body
    if res.status >= 400:
        error = res.json()["error"]
        assert set(error) == {"code", "message", "details"} and isinstance(error["code"], str), error
        assert not REPR.search(error["message"]), error  # no Python reprs such as <Role.ADMIN: 'admin'>
        assert stack.snapshot() == before, res.body
    json.loads(res.body or b"null", parse_constant=lambda name: pytest.fail(f"{name} in a response"))


@SETTINGS
@given(route=st.sampled_from(ROUTES), body=BODIES)
def test_arbitrary_json_into_every_body_never_5xx_and_refusals_change_nothing(world, route, body):
    stack, tokens, exp_id = world
    who, method, path = route
    before = stack.snapshot()
    res = stack.api(method, path.replace("{id}", exp_id), tokens[who], body=body,
                    headers={"Content-Type": "application/json"})
    check(stack, res, before)


PARAM = st.text(max_size=70) | st.sampled_from(["²", "¹", "\u0661\u0662", "0", "99999999", "1" * 40, "-1", "..", "%2F",
                                                "a" * 64, "\ud800", " "])


@SETTINGS
@given(route=st.sampled_from(PATHS), value=PARAM)
def test_arbitrary_path_parameters_never_5xx_and_change_nothing(world, route, value):
    stack, tokens, exp_id = world
    who, method, path = route
    before = stack.snapshot()
    body = b'{"size": 10, "sha256": "' + b"0" * 64 + b'"}' if method == "POST" else None
    res = stack.api(method, path.replace("{id}", exp_id).replace("{x}", value), tokens[who], body=body,
                    headers={"Content-Type": "application/json"})
    assert res.status < 500, res.body
    if res.status >= 400:
        check(stack, res, before)


@SETTINGS
@given(route=st.sampled_from(QUERIES), query=st.dictionaries(st.sampled_from(["limit", "cursor", "archived", "x"]),
                                                            PARAM, max_size=3))
def test_arbitrary_query_parameters_never_5xx_and_change_nothing(world, route, query):
    stack, tokens, exp_id = world
    who, path = route
    before = stack.snapshot()
    res = stack.api("GET", path.replace("{id}", exp_id), tokens[who], query=query)
    check(stack, res, before)
    assert stack.snapshot() == before  # reads never write
