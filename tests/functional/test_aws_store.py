"""The S3 adapter as AWS sees it: regional presigned endpoints, the checksum bound in the POST
policy, and no HEAD used as an existence test (optimizer state is read only when recorded)."""

from __future__ import annotations

import base64
import hashlib
import json

import boto3
import numpy as np
from harness import update_bytes

from fma.adapters.dynamo_models import configure_table, create_table
from fma.adapters.s3_store import S3ObjectStore
from fma.domain.auth import Role
from fma.local import dispatch


class CountingStore:
    """Wraps an object store and records (method, key) of every call under `prefix`."""

    def __init__(self, inner, prefix: str):
        self.inner, self.prefix, self.calls = inner, prefix, []

    def __getattr__(self, name):
        attr = getattr(self.inner, name)
        if not callable(attr):
            return attr

        def wrapped(key=None, *args, **kwargs):
            if isinstance(key, str) and key.startswith(self.prefix):
                self.calls.append((name, key))
            return attr(key, *args, **kwargs) if key is not None else attr(*args, **kwargs)

        return wrapped


def _policy(upload: dict) -> dict:
    return json.loads(base64.b64decode(upload["fields"]["policy"]))


def test_presigned_urls_use_the_regional_virtual_hosted_endpoint(stack, monkeypatch):
    # Given the functions run in eu-west-1 (Lambda sets AWS_REGION)
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    dispatch.reset_handler_caches()
    configure_table("fma-test", "eu-west-1")
    create_table()
    dev = stack.token(Role.DEVELOPER)
    # When a developer creates an experiment and a client asks for an upload and the model
    res = stack.api("POST", "/v1/experiments", dev, json_body={
        "name": "eu", "strategy": {"name": "fedavg"}, "rounds": {"min_updates": 1, "total_rounds": 2}})
    assert res.status == 201, res.body
    # Then the presigned POST names the bucket's regional endpoint, never s3.amazonaws.com
    url = res.json()["upload"]["url"]
    assert url == "https://fma-test-models.s3.eu-west-1.amazonaws.com/"
    store = S3ObjectStore("fma-test-models", region="eu-west-1")
    get = store.presigned_get("models/x/00000000.safetensors", 60)
    assert get.startswith("https://fma-test-models.s3.eu-west-1.amazonaws.com/models/x/00000000.safetensors?")
    assert "s3.amazonaws.com" not in url + get


def test_presigned_post_binds_the_declared_sha256(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, {"w": np.ones(2, np.float32)}, rounds={"min_updates": 1, "total_rounds": 1})
    [(_client_id, token)] = stack.enroll(dev, exp_id, 1)
    data = update_bytes({"w": np.ones(2, np.float32)}, 3, 1)
    sha = hashlib.sha256(data).hexdigest()
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", token,
                    json_body={"size": len(data), "sha256": sha})
    assert res.status == 201, res.body
    upload = res.json()["upload"]
    digest = base64.b64encode(hashlib.sha256(data).digest()).decode()
    # The form carries S3's checksum fields and the signed policy requires exactly them.
    assert upload["fields"]["x-amz-checksum-algorithm"] == "SHA256"
    assert upload["fields"]["x-amz-checksum-sha256"] == digest
    conditions = _policy(upload)["conditions"]
    assert {"x-amz-checksum-sha256": digest} in conditions
    assert {"x-amz-checksum-algorithm": "SHA256"} in conditions
    assert ["content-length-range", len(data), len(data)] in conditions
    # The sha256 is required (ingest accepts only the declared bytes): without it, 400.
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", token, json_body={"size": len(data)})
    assert res.status == 400 and res.json()["error"]["code"] == "MISSING_FIELD"


class HeadForbiddenClient:
    """An S3 client that answers every HEAD with 403, as S3 does without ListBucket."""

    def __init__(self, inner):
        self.inner = inner

    def __getattr__(self, name):
        if name == "head_object":
            from botocore.exceptions import ClientError

            def forbidden(**_kwargs):
                raise ClientError({"Error": {"Code": "403", "Message": "Forbidden"}}, "HeadObject")
            return forbidden
        return getattr(self.inner, name)


def test_exists_lists_instead_of_heading(stack):
    store = S3ObjectStore("fma-test-models", client=HeadForbiddenClient(boto3.client("s3", region_name="us-east-1")))
    stack.put_object("state/e/00000001.safetensors", b"x")
    assert store.exists("state/e/00000001.safetensors") is True
    assert store.exists("state/e/00000002.safetensors") is False
    assert store.exists("state/e/0000000") is False  # a prefix of a key is not the key


def _run_rounds(stack, strategy: dict, rounds: int) -> tuple[str, CountingStore]:
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, {"w": np.ones(3, np.float32)}, strategy=strategy,
                                     rounds={"min_updates": 2, "total_rounds": rounds})
    clients = stack.enroll(dev, exp_id, 2)
    deps = dispatch.load_handler_module("aggregate").deps()
    counting = CountingStore(deps.store, "state/")
    deps.store = counting
    for n in range(1, rounds + 1):
        for i, (client_id, token) in enumerate(clients):
            res = stack.submit(exp_id, n, token, update_bytes({"w": np.full(3, 1.0 + i + n, np.float32)}, 5, n))
            assert res.status == 202, res.body
            stack.deliver(f"updates/{exp_id}/{n:08d}/{client_id}.safetensors")
        assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    return exp_id, counting


def test_stateless_experiment_never_touches_state(stack):
    _exp_id, counting = _run_rounds(stack, {"name": "fedavg"}, 3)
    assert counting.calls == []  # neither HEAD, GET, LIST nor PUT of state/ in three rounds


def test_stateful_experiment_loads_the_state_it_recorded(stack):
    exp_id, counting = _run_rounds(stack, {"name": "fedadam"}, 3)
    reads = [c for c in counting.calls if c[0] in ("get", "get_versioned", "size", "exists", "get_range")]
    assert reads == [("get", f"state/{exp_id}/00000001.safetensors"), ("get", f"state/{exp_id}/00000002.safetensors")]
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000002.manifest.json"))
    state = stack.get_object(f"state/{exp_id}/00000002.safetensors")
    assert manifest["state"] == {"key": f"state/{exp_id}/00000002.safetensors",
                                 "sha256": hashlib.sha256(state).hexdigest()}


def test_polls_that_find_nothing_new_carry_a_retry_after_hint(stack, monkeypatch):
    monkeypatch.setenv("FMA_POLL_RETRY_AFTER_SECONDS", "7")
    dispatch.reset_handler_caches()
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, {"w": np.ones(2, np.float32)}, rounds={"min_updates": 1, "total_rounds": 1})
    [(client_id, token)] = stack.enroll(dev, exp_id, 1)
    first = stack.api("GET", f"/v1/experiments/{exp_id}/model", token)
    assert first.status == 200 and "Retry-After" not in first.headers  # something new: no hint
    again = stack.api("GET", f"/v1/experiments/{exp_id}/model", token, headers={"If-None-Match": first.headers["ETag"]})
    assert again.status == 304 and again.headers["Retry-After"] == "7"
    open_round = stack.api("GET", f"/v1/experiments/{exp_id}/rounds/1", token)
    assert open_round.status == 200 and open_round.headers["Retry-After"] == "7"
    assert open_round.json()["state"] == "OPEN"
    assert stack.submit(exp_id, 1, token, update_bytes({"w": np.ones(2, np.float32)}, 3, 1)).status == 202
    stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    stack.run_aggregations()
    published = stack.api("GET", f"/v1/experiments/{exp_id}/rounds/1", token)
    assert published.json()["state"] == "PUBLISHED" and "Retry-After" not in published.headers
