"""Every role against every route: who may do what (DESIGN section 6, issue 6).

Roles: admin; developer (owner and another developer); analyst; client (of this experiment
and of another); enrollment token; revoked, expired and missing tokens.
"""

from __future__ import annotations

import numpy as np
import pytest
from harness import update_bytes

from fma.adapters.dynamo_models import TokenItem
from fma.domain.auth import Role, hash_token
from fma.domain.codec import encode

ROLES = ("admin", "owner", "other_dev", "analyst", "client", "other_client", "enrollment", "revoked", "expired",
         "none")
READERS = {"admin": 200, "owner": 200, "analyst": 200, "client": 200}
#: a client token naming another experiment hears 404 (issue 11); a revoked token 403 TOKEN_REVOKED.
DENIED = {"other_dev": 404, "other_client": 404, "enrollment": 403, "revoked": 403, "expired": 401, "none": 401}
UNSCOPED = {"other_client": 403}  # routes of no experiment: a client token's role is what is refused


def expect(allowed: dict[str, int], default: int = 403) -> dict[str, int]:
    out = {r: default for r in ROLES}
    out.update(DENIED)
    out.update(allowed)
    return out


def model() -> dict[str, np.ndarray]:
    return {"w": np.zeros(3, np.float32)}


# (name, method, path, json body or bytes, expected status per role)
ROUTES = [
    ("mint token", "POST", "/v1/tokens", {"role": "analyst"},
     expect({"admin": 201, "other_dev": 403} | UNSCOPED)),
    ("create experiment", "POST", "/v1/experiments", {"name": "x"},
     expect({"admin": 201, "owner": 201, "other_dev": 201} | UNSCOPED)),
    ("list experiments", "GET", "/v1/experiments", None,
     expect({"admin": 200, "owner": 200, "other_dev": 200, "analyst": 200} | UNSCOPED)),
    ("get experiment", "GET", "/v1/experiments/{id}", None, expect(READERS)),
    ("patch experiment", "PATCH", "/v1/experiments/{id}", {"status": "RUNNING"},
     expect({"admin": 200, "owner": 200})),
    ("put initial model", "PUT", "/v1/experiments/{id}/model", b"model",
     expect({"admin": 409, "owner": 409})),
    ("enrollment token", "POST", "/v1/experiments/{id}/enrollment-tokens", {},
     expect({"admin": 201, "owner": 201})),
    ("register", "POST", "/v1/experiments/{id}/clients", {},
     expect({"enrollment": 201}) | {"other_dev": 403} | UNSCOPED),
    ("get model", "GET", "/v1/experiments/{id}/model", None, expect({"admin": 200, "owner": 200, "client": 200})),
    ("request upload", "POST", "/v1/experiments/{id}/rounds/1/updates", {"size": 100, "sha256": "0" * 64},
     expect({"client": 201}) | {"other_dev": 403}),
    ("direct upload", "PUT", "/v1/experiments/{id}/rounds/1/updates", "update",
     expect({"client": 202}) | {"other_dev": 403}),
    ("list rounds", "GET", "/v1/experiments/{id}/rounds", None, expect(READERS)),
    ("get round", "GET", "/v1/experiments/{id}/rounds/1", None, expect(READERS)),
    ("post evaluation", "POST", "/v1/experiments/{id}/rounds/0/evaluations",
     {"num_examples": 3, "metrics": {"accuracy": 0.5}}, expect({"client": 201}) | {"other_dev": 403}),
    ("get published model", "GET", "/v1/experiments/{id}/models/0", None,
     expect({"admin": 200, "owner": 200, "analyst": 200} | UNSCOPED)),
    ("health", "GET", "/v1/health", None, dict.fromkeys(ROLES, 200)),
]


@pytest.fixture
def world(stack):
    owner = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(owner, model(), rounds={"min_updates": 5, "total_rounds": 2})
    other_exp = stack.create_experiment(owner, model())
    enroll = stack.api("POST", f"/v1/experiments/{exp_id}/enrollment-tokens", owner, json_body={"max_uses": 5})
    [(_, client)] = stack.enroll(owner, exp_id, 1)
    [(_, other_client)] = stack.enroll(owner, other_exp, 1)
    revoked = stack.token(Role.ANALYST)
    stack.deps.repo.revoke_token(hash_token(revoked))
    expired = stack.token(Role.ANALYST)
    TokenItem(f"TOKEN#{hash_token(expired)}", "TOKEN").update(actions=[TokenItem.expires_at.set(1.0)])
    tokens = {"admin": stack.token(Role.ADMIN), "owner": owner, "other_dev": stack.token(Role.DEVELOPER),
              "analyst": stack.token(Role.ANALYST), "client": client, "other_client": other_client,
              "enrollment": enroll.json()["token"], "revoked": revoked, "expired": expired, "none": None}
    return stack, exp_id, tokens


def test_authorization_matrix(world):
    stack, exp_id, tokens = world
    mismatches = []
    checked = 0
    for name, method, path, body, expected in ROUTES:
        for role in ROLES:
            url = path.replace("{id}", exp_id)
            kwargs = {}
            if isinstance(body, dict):
                kwargs["json_body"] = body
            elif body == "update":
                kwargs["body"] = update_bytes(model(), 1, 1)
            elif isinstance(body, bytes):
                kwargs["body"] = encode(model())
            res = stack.api(method, url, tokens[role], **kwargs)
            checked += 1
            if res.status != expected[role]:
                mismatches.append(f"{name} as {role}: {res.status} (expected {expected[role]}) {res.body[:120]!r}")
            if res.status >= 400:
                assert set(res.json()["error"]) == {"code", "message", "details"}
    assert not mismatches, "\n".join(mismatches)
    assert checked == len(ROUTES) * len(ROLES)


def test_tokens_are_stored_only_as_hashes(world):
    stack, _, tokens = world
    items = stack_dump(stack)
    for role, token in tokens.items():
        if token is None:
            continue
        assert token not in items, f"{role} token stored in clear"
        assert hash_token(token) in items


def stack_dump(stack) -> str:
    import boto3

    table = boto3.client("dynamodb", region_name="us-east-1")
    pages = table.get_paginator("scan").paginate(TableName=stack.deps.repo.table_name)
    return repr([page["Items"] for page in pages])
