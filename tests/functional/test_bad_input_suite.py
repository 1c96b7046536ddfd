"""Malformed and malicious API inputs: each gets its status and error code, and changes nothing
(the table and the bucket are byte-for-byte the same afterwards)."""

from __future__ import annotations

import json

import boto3
import numpy as np
import pytest
from harness import BUCKET

from fma.domain.auth import Role

LONG = "x" * 201
# (case id, who, method, path, body (dict -> JSON, bytes -> raw), query, headers, status, code)
CASES = [
    ("malformed-json", "dev", "POST", "/v1/experiments", b"{oops", None, None, 400, "MALFORMED_JSON"),
    ("json-array", "dev", "POST", "/v1/experiments", [1, 2], None, None, 400, "INVALID_BODY"),
    ("unknown-field", "dev", "POST", "/v1/experiments", {"name": "a", "x": 1}, None, None, 400, "UNKNOWN_FIELD"),
    ("missing-name", "dev", "POST", "/v1/experiments", {}, None, None, 400, "MISSING_FIELD"),
    ("empty-name", "dev", "POST", "/v1/experiments", {"name": "  "}, None, None, 400, "INVALID_INPUT"),
    ("long-name", "dev", "POST", "/v1/experiments", {"name": LONG}, None, None, 400, "INVALID_INPUT"),
    ("name-not-string", "dev", "POST", "/v1/experiments", {"name": 5}, None, None, 400, "INVALID_INPUT"),
    ("unknown-strategy", "dev", "POST", "/v1/experiments", {"name": "a", "strategy": {"name": "sgd"}}, None, None,
     400, "UNKNOWN_STRATEGY"),
    ("unknown-strategy-param", "dev", "POST", "/v1/experiments",
     {"name": "a", "strategy": {"name": "fedavg", "params": {"lr": 1}}}, None, None, 400, "INVALID_STRATEGY_PARAMS"),
    ("strategy-param-wrong-type", "dev", "POST", "/v1/experiments",
     {"name": "a", "strategy": {"name": "fedprox", "params": {"proximal_mu": "big"}}}, None, None, 400,
     "INVALID_STRATEGY_PARAMS"),
    ("rounds-not-object", "dev", "POST", "/v1/experiments", {"name": "a", "rounds": 3}, None, None, 400,
     "INVALID_INPUT"),
    ("min-updates-zero", "dev", "POST", "/v1/experiments", {"name": "a", "rounds": {"min_updates": 0}}, None, None,
     400, "INVALID_INPUT"),
    ("min-updates-word", "dev", "POST", "/v1/experiments", {"name": "a", "rounds": {"min_updates": "most"}}, None,
     None, 400, "INVALID_INPUT"),
    ("total-rounds-negative", "dev", "POST", "/v1/experiments", {"name": "a", "rounds": {"total_rounds": -1}}, None,
     None, 400, "INVALID_INPUT"),
    ("on-deadline-bad", "dev", "POST", "/v1/experiments", {"name": "a", "rounds": {"on_deadline": "panic"}}, None,
     None, 400, "INVALID_INPUT"),
    ("rounds-unknown-field", "dev", "POST", "/v1/experiments", {"name": "a", "rounds": {"quorum": 3}}, None, None,
     400, "UNKNOWN_FIELD"),
    ("client-config-not-object", "dev", "POST", "/v1/experiments", {"name": "a", "client_config": [1]}, None, None,
     400, "INVALID_INPUT"),
    ("max-update-bytes-zero", "dev", "POST", "/v1/experiments", {"name": "a", "max_update_bytes": 0}, None, None,
     400, "INVALID_INPUT"),
    ("max-update-bytes-bool", "dev", "POST", "/v1/experiments", {"name": "a", "max_update_bytes": True}, None, None,
     400, "INVALID_INPUT"),
    ("oversized-json", "dev", "POST", "/v1/experiments", {"name": "a", "client_config": {"k": "v" * 300_000}}, None,
     None, 413, "PAYLOAD_TOO_LARGE"),
    ("mint-bad-role", "admin", "POST", "/v1/tokens", {"role": "root"}, None, None, 400, "INVALID_INPUT"),
    ("mint-client-role", "admin", "POST", "/v1/tokens", {"role": "client"}, None, None, 400, "INVALID_INPUT"),
    ("mint-short-expiry", "admin", "POST", "/v1/tokens", {"role": "analyst", "expires_in_seconds": 1}, None, None,
     400, "INVALID_INPUT"),
    ("patch-to-completed", "dev", "PATCH", "/v1/experiments/{id}", {"status": "COMPLETED"}, None, None, 400,
     "INVALID_INPUT"),
    ("patch-missing-status", "dev", "PATCH", "/v1/experiments/{id}", {}, None, None, 400, "MISSING_FIELD"),
    ("enroll-zero-uses", "dev", "POST", "/v1/experiments/{id}/enrollment-tokens", {"max_uses": 0}, None, None, 400,
     "INVALID_INPUT"),
    ("enroll-expiry-string", "dev", "POST", "/v1/experiments/{id}/enrollment-tokens",
     {"expires_in_seconds": "soon"}, None, None, 400, "INVALID_INPUT"),
    ("upload-missing-size", "client", "POST", "/v1/experiments/{id}/rounds/1/updates", {}, None, None, 400,
     "MISSING_FIELD"),
    ("upload-null-size", "client", "POST", "/v1/experiments/{id}/rounds/1/updates",
     {"size": None, "sha256": "0" * 64}, None, None, 400, "INVALID_INPUT"),
    ("eval-null-examples", "client", "POST", "/v1/experiments/{id}/rounds/0/evaluations",
     {"num_examples": None, "metrics": {}}, None, None, 400, "INVALID_INPUT"),
    ("upload-negative-size", "client", "POST", "/v1/experiments/{id}/rounds/1/updates",
     {"size": -5, "sha256": "0" * 64}, None, None,
     400, "INVALID_INPUT"),
    ("upload-missing-sha", "client", "POST", "/v1/experiments/{id}/rounds/1/updates", {"size": 10}, None, None,
     400, "MISSING_FIELD"),
    ("upload-bad-sha", "client", "POST", "/v1/experiments/{id}/rounds/1/updates", {"size": 10, "sha256": "zz"},
     None, None, 400, "INVALID_INPUT"),
    ("empty-update-body", "client", "PUT", "/v1/experiments/{id}/rounds/1/updates", b"", None, None, 400,
     "EMPTY_BODY"),
    ("eval-nan-metric", "client", "POST", "/v1/experiments/{id}/rounds/0/evaluations",
     b'{"num_examples": 3, "metrics": {"loss": NaN}}', None, None, 400, "NON_FINITE_NUMBER"),
    ("eval-zero-examples", "client", "POST", "/v1/experiments/{id}/rounds/0/evaluations",
     {"num_examples": 0, "metrics": {}}, None, None, 400, "INVALID_INPUT"),
    ("eval-future-model", "client", "POST", "/v1/experiments/{id}/rounds/7/evaluations",
     {"num_examples": 1, "metrics": {}}, None, None, 404, "MODEL_NOT_FOUND"),
    ("limit-not-number", "dev", "GET", "/v1/experiments", None, {"limit": "ten"}, None, 400, "INVALID_INPUT"),
    ("limit-too-large", "dev", "GET", "/v1/experiments", None, {"limit": "100000"}, None, 400, "INVALID_INPUT"),
    ("tampered-cursor", "dev", "GET", "/v1/experiments/{id}/rounds", None, {"cursor": "eyJwayI6IDF9"}, None, 400,
     "INVALID_CURSOR"),
    ("round-not-number", "dev", "GET", "/v1/experiments/{id}/rounds/one", None, None, None, 400, "INVALID_ROUND"),
    ("round-too-long", "dev", "GET", "/v1/experiments/{id}/rounds/1234567890", None, None, None, 400,
     "INVALID_ROUND"),
    ("path-traversal-id", "dev", "GET", "/v1/experiments/..%2F..%2Fetc", None, None, None, 404,
     "EXPERIMENT_NOT_FOUND"),
    ("basic-auth", None, "GET", "/v1/experiments", None, None, {"Authorization": "Basic YTpi"}, 401, "UNAUTHORIZED"),
    ("huge-bearer", None, "GET", "/v1/experiments", None, None, {"Authorization": "Bearer " + "a" * 600}, 401,
     "UNAUTHORIZED"),
    ("unknown-route", "dev", "DELETE", "/v1/experiments/{id}", None, None, None, 404, "ROUTE_NOT_FOUND"),
]


def snapshot(stack) -> tuple:
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = [i for page in ddb.get_paginator("scan").paginate(TableName=stack.deps.repo.table_name)
             for i in page["Items"]]
    objects = stack.s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
    return (sorted(json.dumps(i, sort_keys=True) for i in items),
            sorted((o["Key"], o["ETag"], o["VersionId"]) for o in objects))


@pytest.fixture(scope="function")
def world(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, {"w": np.zeros(2, np.float32)}, rounds={"min_updates": 2})
    [(_, client)] = stack.enroll(dev, exp_id, 1)
    return stack, {"dev": dev, "admin": stack.token(Role.ADMIN), "client": client, None: None}, exp_id


def test_at_least_thirty_distinct_cases():
    assert len({c[0] for c in CASES}) == len(CASES) >= 30


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_and_changes_nothing(world, case):
    stack, tokens, exp_id = world
    _, who, method, path, body, query, headers, status, code = case
    kwargs = {"query": query, "headers": dict(headers or {})}
    if isinstance(body, bytes):
        kwargs["body"] = body
        kwargs["headers"].setdefault("Content-Type", "application/json")
    elif body is not None:
        kwargs["json_body"] = body
    before = snapshot(stack)
    res = stack.api(method, path.replace("{id}", exp_id), tokens[who], **kwargs)
    assert res.status == status, res.body
    error = res.json()["error"]
    assert error["code"] == code and error["message"]
    assert snapshot(stack) == before
