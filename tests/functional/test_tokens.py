"""Issue 11, "tokens cannot be taken back": no admin minting over HTTP, token ids, revocation of
tokens and clients, client-token expiry, and ENROLLMENT_EXHAUSTED also under concurrency."""

from __future__ import annotations

import hashlib
import threading
import time
from datetime import datetime

import numpy as np
import pytest
from harness import update_bytes

from fma.domain.auth import Role
from fma.local import dispatch
from fma.local.events import FakeContext, api_event


def model() -> dict[str, np.ndarray]:
    return {"w": np.zeros(3, np.float32)}


@pytest.fixture
def world(stack):
    dev = stack.token(Role.DEVELOPER, "dev-owner")
    exp_id = stack.create_experiment(dev, model(), rounds={"min_updates": "all", "total_rounds": 2})
    return stack, dev, exp_id


def enrollment(stack, dev: str, exp_id: str, **body) -> dict:
    res = stack.api("POST", f"/v1/experiments/{exp_id}/enrollment-tokens", dev, json_body=body)
    assert res.status == 201, res.body
    return res.json()


def register(stack, exp_id: str, enroll: str):
    return stack.api("POST", f"/v1/experiments/{exp_id}/clients", enroll, json_body={})


def error_code(res) -> str:
    return res.json()["error"]["code"]


def test_admin_token_cannot_be_minted_over_http(stack):
    admin = stack.token(Role.ADMIN)
    before = stack.snapshot()
    res = stack.api("POST", "/v1/tokens", admin, json_body={"role": "admin"})
    assert res.status == 400 and error_code(res) == "INVALID_INPUT"
    assert "analyst, developer" in res.json()["error"]["message"]
    assert stack.snapshot() == before


def test_every_token_response_carries_a_token_id_that_is_not_the_token(world):
    stack, dev, exp_id = world
    minted = stack.api("POST", "/v1/tokens", stack.token(Role.ADMIN), json_body={"role": "analyst"}).json()
    enroll = enrollment(stack, dev, exp_id, max_uses=1)
    client = register(stack, exp_id, enroll["token"]).json()
    for body in (minted, enroll, client):
        assert len(body["token_id"]) == 64 and body["token_id"] != body["token"]
        # The id is no credential: presenting it is refused.
        assert stack.api("GET", "/v1/experiments", body["token_id"]).status == 401


def test_admin_revokes_a_token_and_local_mode_refuses_it_at_once(world):
    stack, _, _ = world
    admin = stack.token(Role.ADMIN)
    minted = stack.api("POST", "/v1/tokens", admin, json_body={"role": "analyst"}).json()
    assert stack.api("GET", "/v1/experiments", minted["token"]).status == 200
    res = stack.api("DELETE", f"/v1/tokens/{minted['token_id']}", admin)
    assert res.status == 200 and res.json() == {"token_id": minted["token_id"], "role": "analyst", "revoked": True}
    refused = stack.api("GET", "/v1/experiments", minted["token"])
    assert refused.status == 403 and error_code(refused) == "TOKEN_REVOKED"
    assert stack.api("DELETE", f"/v1/tokens/{minted['token_id']}", admin).status == 200  # idempotent


def test_developer_revokes_the_tokens_it_minted_and_no_others(world):
    stack, dev, exp_id = world
    enroll = enrollment(stack, dev, exp_id, max_uses=5)
    other = stack.token(Role.DEVELOPER)
    analyst_token = stack.api("POST", "/v1/tokens", stack.token(Role.ADMIN), json_body={"role": "analyst"}).json()
    analyst = stack.token(Role.ANALYST)
    before = stack.snapshot()
    for who, token_id, status, code in ((other, enroll["token_id"], 404, "TOKEN_NOT_FOUND"),
                                        (dev, analyst_token["token_id"], 404, "TOKEN_NOT_FOUND"),
                                        (analyst, enroll["token_id"], 403, "FORBIDDEN_ROLE"),
                                        (dev, "not-a-token-id", 404, "TOKEN_NOT_FOUND")):
        res = stack.api("DELETE", f"/v1/tokens/{token_id}", who)
        assert res.status == status and error_code(res) == code
    assert stack.snapshot() == before
    assert register(stack, exp_id, enroll["token"]).status == 201
    assert stack.api("DELETE", f"/v1/tokens/{enroll['token_id']}", dev).status == 200
    res = register(stack, exp_id, enroll["token"])
    assert res.status == 403 and error_code(res) == "TOKEN_REVOKED"


def test_owner_revokes_a_client_whose_later_uploads_are_refused(world):
    stack, dev, exp_id = world
    [(keep_id, keep), (gone_id, gone)] = stack.enroll(dev, exp_id, 2)
    assert stack.experiment(dev, exp_id)["clients"] == 2
    stranger = stack.token(Role.DEVELOPER)
    before = stack.snapshot()
    for who in (stranger, keep):
        res = stack.api("DELETE", f"/v1/experiments/{exp_id}/clients/{gone_id}", who)
        assert res.status in (403, 404) and stack.snapshot() == before
    res = stack.api("DELETE", f"/v1/experiments/{exp_id}/clients/{gone_id}", dev)
    assert res.status == 200 and res.json()["revoked"] is True and res.json()["client_id"] == gone_id
    assert stack.api("DELETE", f"/v1/experiments/{exp_id}/clients/c-nobody", dev).status == 404
    refused = stack.submit(exp_id, 1, gone, update_bytes(model(), 1, 1))
    assert refused.status == 403 and error_code(refused) == "TOKEN_REVOKED"
    # It no longer counts toward "all": the one remaining client's update seals the round.
    assert stack.experiment(dev, exp_id)["clients"] == 1
    assert stack.submit(exp_id, 1, keep, update_bytes(model(), 1, 1)).status == 202
    stack.deliver(f"updates/{exp_id}/00000001/{keep_id}.safetensors")
    assert stack.round(dev, exp_id, 1)["state"] in ("SEALED", "AGGREGATING", "PUBLISHED")


def test_upload_requested_before_revocation_is_rejected_by_ingest(world):
    """The presigned POST outlives the revocation (S3 honours it): ingest refuses the bytes."""
    stack, dev, exp_id = world
    [(gone_id, gone), _] = stack.enroll(dev, exp_id, 2)
    data = update_bytes(model(), 1, 1)
    asked = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", gone,
                      json_body={"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
    assert asked.status == 201, asked.body
    assert stack.api("DELETE", f"/v1/experiments/{exp_id}/clients/{gone_id}", dev).status == 200
    key = f"updates/{exp_id}/00000001/{gone_id}.safetensors"
    stack.put_object(key, data)  # what the presigned POST does
    stack.deliver(key)
    round_one = stack.round(dev, exp_id, 1)
    assert round_one["accepted"] == 0 and round_one["state"] == "OPEN"
    [update] = [u for u in round_one["updates"] if u["client_id"] == gone_id]
    assert update["status"] == "REJECTED" and update["reason"].startswith("CLIENT_REVOKED")


def test_revoked_client_is_refused_by_the_api_even_past_a_cached_authorizer(world):
    """On AWS the authorizer's answer is cached: the API itself refuses a revoked client's writes."""
    stack, dev, exp_id = world
    [(client_id, client)] = stack.enroll(dev, exp_id, 1)
    auth = dispatch.load_handler_module("authorizer").handler(
        {"type": "TOKEN", "authorizationToken": f"Bearer {client}", "methodArn": "arn:x/v1/GET/x"}, FakeContext())
    assert stack.api("DELETE", f"/v1/experiments/{exp_id}/clients/{client_id}", dev).status == 200
    cached = {**auth["context"], "principalId": auth["principalId"]}
    for method, path, body in (("PUT", "rounds/1/updates", update_bytes(model(), 1, 1)),
                               ("POST", "rounds/1/updates", b'{"size": 10, "sha256": "' + b"0" * 64 + b'"}'),
                               ("POST", "rounds/0/evaluations", b'{"num_examples": 1, "metrics": {}}')):
        ctype = "application/octet-stream" if method == "PUT" else "application/json"
        event = api_event(method, f"/v1/experiments/{exp_id}/{path}", headers={"Content-Type": ctype}, body=body,
                          authorizer=cached)
        response = dispatch.load_handler_module("api").handler(event, FakeContext("api"))
        assert response["statusCode"] == 403 and "CLIENT_REVOKED" in response["body"]


def test_client_token_expires_with_its_experiment_plus_grace(world):
    stack, dev, exp_id = world
    enroll = enrollment(stack, dev, exp_id, max_uses=1)
    reg = register(stack, exp_id, enroll["token"]).json()
    limits = stack.deps.limits
    lifetime = datetime.fromisoformat(reg["expires_at"]).timestamp() - time.time()
    assert abs(lifetime - limits.client_token_max_seconds - limits.client_token_grace_seconds) < 60
    assert stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "STOPPED"}).status == 200
    authorizer = dispatch.load_handler_module("authorizer").deps()
    assert stack.api("GET", f"/v1/experiments/{exp_id}/model", reg["token"]).status == 200  # within the grace
    authorizer.clock = lambda: time.time() + limits.client_token_grace_seconds + 10
    try:
        res = stack.api("GET", f"/v1/experiments/{exp_id}/model", reg["token"])
        assert res.status == 401 and error_code(res) == "UNAUTHORIZED"
        # The developer's own token is not a client token and still works.
        assert stack.api("GET", f"/v1/experiments/{exp_id}", dev).status == 200
    finally:
        authorizer.clock = time.time


def test_exhausted_enrollment_token_says_so(world):
    stack, dev, exp_id = world
    enroll = enrollment(stack, dev, exp_id, max_uses=1)
    assert register(stack, exp_id, enroll["token"]).status == 201
    before = stack.snapshot()
    res = register(stack, exp_id, enroll["token"])
    assert res.status == 403 and error_code(res) == "ENROLLMENT_EXHAUSTED"
    assert "max_uses" in res.json()["error"]["message"]
    assert res.json()["error"]["details"] == {"reason": "max_uses", "max_uses": 1}
    assert stack.snapshot() == before


def test_racing_registrations_past_max_uses_all_hear_enrollment_exhausted(world):
    stack, dev, exp_id = world
    enroll = enrollment(stack, dev, exp_id, max_uses=3)["token"]
    results: list = []
    barrier = threading.Barrier(10)

    def race() -> None:
        barrier.wait()
        results.append(register(stack, exp_id, enroll))

    threads = [threading.Thread(target=race) for _ in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    statuses = sorted((r.status, r.json().get("error", {}).get("code")) for r in results)
    assert statuses == [(201, None)] * 3 + [(403, "ENROLLMENT_EXHAUSTED")] * 7, statuses
    assert stack.experiment(dev, exp_id)["clients"] == 3


def test_token_of_another_experiment_hears_not_found(world):
    stack, dev, exp_id = world
    other = stack.create_experiment(dev, model())
    [(_, client)] = stack.enroll(dev, exp_id, 1)
    enroll = enrollment(stack, dev, exp_id, max_uses=1)["token"]
    for token, method, path in ((client, "GET", f"/v1/experiments/{other}"),
                                (client, "GET", f"/v1/experiments/{other}/model"),
                                (client, "GET", "/v1/experiments/does-not-exist/model"),
                                (client, "PUT", f"/v1/experiments/{other}/rounds/1/updates"),
                                (enroll, "POST", f"/v1/experiments/{other}/clients")):
        res = stack.api(method, path, token, body=b"{}", headers={"Content-Type": "application/json"})
        assert res.status == 404 and error_code(res) == "EXPERIMENT_NOT_FOUND", (path, res.body)
