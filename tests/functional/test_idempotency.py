"""Issue 11, "retried POSTs create phantom clients": every creating POST honours Idempotency-Key."""

from __future__ import annotations

import numpy as np
import pytest

from fma.domain.auth import Role, hash_token


def model() -> dict[str, np.ndarray]:
    return {"w": np.zeros(3, np.float32)}


@pytest.fixture
def world(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, model(), rounds={"min_updates": 5, "total_rounds": 2})
    enroll = stack.api("POST", f"/v1/experiments/{exp_id}/enrollment-tokens", dev,
                       json_body={"max_uses": 3}).json()
    client = stack.api("POST", f"/v1/experiments/{exp_id}/clients", enroll["token"], json_body={}).json()
    tokens = {"dev": dev, "admin": stack.token(Role.ADMIN), "enroll": enroll["token"], "client": client["token"]}
    return stack, tokens, exp_id, enroll


#: every creating POST: (who, path, body, body that differs)
CREATING = [
    ("admin", "/v1/tokens", {"role": "analyst"}, {"role": "developer"}),
    ("dev", "/v1/experiments", {"name": "a"}, {"name": "b"}),
    ("dev", "/v1/experiments/{id}/enrollment-tokens", {"max_uses": 2}, {"max_uses": 3}),
    ("enroll", "/v1/experiments/{id}/clients", {}, {"name": "x"}),
    ("client", "/v1/experiments/{id}/rounds/1/updates", {"size": 100, "sha256": "0" * 64},
     {"size": 101, "sha256": "0" * 64}),
    ("client", "/v1/experiments/{id}/rounds/0/evaluations", {"num_examples": 3, "metrics": {"a": 0.5}},
     {"num_examples": 4, "metrics": {"a": 0.5}}),
]


@pytest.mark.parametrize("route", CREATING, ids=[r[1] for r in CREATING])
def test_retry_with_the_same_key_replays_the_first_response_and_creates_nothing_twice(world, route):
    stack, tokens, exp_id, _ = world
    who, path, body, other = route
    path = path.replace("{id}", exp_id)
    headers = {"Idempotency-Key": "5f0c7c9e-retry-key"}
    first = stack.api("POST", path, tokens[who], json_body=body, headers=headers)
    assert first.status == 201, first.body
    after_first = stack.snapshot()
    again = stack.api("POST", path, tokens[who], json_body=body, headers=headers)
    assert (again.status, again.json()) == (first.status, first.json())
    assert again.headers.get("Idempotency-Replayed") == "true"
    assert stack.snapshot() == after_first
    reused = stack.api("POST", path, tokens[who], json_body=other, headers=headers)
    assert reused.status == 422 and reused.json()["error"]["code"] == "IDEMPOTENCY_KEY_REUSED"
    assert stack.snapshot() == after_first
    # Another key is another request.
    fresh = stack.api("POST", path, tokens[who], json_body=body, headers={"Idempotency-Key": "another"})
    assert "Idempotency-Replayed" not in fresh.headers and fresh.status in (201, 409)  # 409: ALREADY_EVALUATED


def test_lost_registration_response_retried_returns_the_same_client_and_burns_one_use(world):
    stack, tokens, exp_id, enroll = world
    key = {"Idempotency-Key": "d6f0b7b2-6c1e-4a57-9f59-2a0c1b1f6a11"}
    first = stack.api("POST", f"/v1/experiments/{exp_id}/clients", tokens["enroll"], json_body={}, headers=key)
    assert first.status == 201
    # The response is lost; the SDK retries with the same key.
    retry = stack.api("POST", f"/v1/experiments/{exp_id}/clients", tokens["enroll"], json_body={}, headers=key)
    assert retry.json()["client_id"] == first.json()["client_id"] and retry.json()["token"] == first.json()["token"]
    assert stack.api("GET", f"/v1/experiments/{exp_id}/model", retry.json()["token"]).status == 200
    uses = stack.deps.repo.get_token(enroll["token_id"]).uses  # summed over its use shards (repo_enrollment)
    assert uses == 2  # the fixture's registration and this one: the retry burnt nothing
    assert stack.experiment(tokens["dev"], exp_id)["clients"] == 2
    # The saved response holds the client token, but never in clear.
    dump = repr(stack.snapshot())
    assert first.json()["token"] not in dump and hash_token(first.json()["token"]) in dump


def test_keys_are_scoped_per_caller(world):
    stack, tokens, _, _ = world
    key = {"Idempotency-Key": "same-key"}
    mine = stack.api("POST", "/v1/experiments", tokens["dev"], json_body={"name": "a"}, headers=key)
    theirs = stack.api("POST", "/v1/experiments", stack.token(Role.DEVELOPER), json_body={"name": "a"}, headers=key)
    assert mine.status == theirs.status == 201
    assert mine.json()["experiment"]["id"] != theirs.json()["experiment"]["id"]


def test_refused_request_is_not_saved_and_may_be_retried_fixed(world):
    stack, tokens, _, _ = world
    key = {"Idempotency-Key": "fix-me"}
    bad = stack.api("POST", "/v1/experiments", tokens["dev"], json_body={"name": ""}, headers=key)
    assert bad.status == 400
    same = stack.api("POST", "/v1/experiments", tokens["dev"], json_body={"name": ""}, headers=key)
    assert same.status == 400 and "Idempotency-Replayed" not in same.headers


def test_invalid_idempotency_key_is_400_and_changes_nothing(world):
    stack, tokens, _, _ = world
    before = stack.snapshot()
    for key in ("", "has space", "x" * 256, "ключ"):
        res = stack.api("POST", "/v1/experiments", tokens["dev"], json_body={"name": "a"},
                        headers={"Idempotency-Key": key})
        assert res.status == 400 and res.json()["error"]["code"] == "INVALID_IDEMPOTENCY_KEY", key
    assert stack.snapshot() == before
