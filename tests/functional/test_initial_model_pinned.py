"""Issue 11, "a second POST through a still-valid presigned URL after acceptance never changes
what any model, manifest or listing shows", for the initial model on the aws connector (moto):
the developer's presigned POST stays valid after activation, and S3 stores a second POST through
it as a new version of models/{id}/00000000.safetensors. Activation pins the version it validated;
every read of version 0 (GET /model, GET /models/0, the round artifacts, ingest's norm check,
aggregation, forks, `fma verify`) reads that version, and the later object's event changes nothing.
"""

from __future__ import annotations

import hashlib
import json
import os
from urllib.parse import parse_qs, urlsplit

import numpy as np
import requests
from harness import BUCKET, update_bytes
from hostile import bucket_objects, changed, table_items

from fma.cli import main
from fma.domain.auth import Role
from fma.domain.codec import decode, encode

MODEL0 = "models/{}/00000000.safetensors"


def initial() -> dict[str, np.ndarray]:
    return {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3), "b": np.zeros(3, np.float32)}


def evil() -> dict[str, np.ndarray]:
    return {k: np.full_like(v, 1000.0) for k, v in initial().items()}


def post(upload: dict, data: bytes) -> int:
    """A POST through the presigned form, as the developer's SDK sends it."""
    return requests.post(upload["url"], data=upload["fields"], files={"file": ("model", data)}, timeout=10).status_code


def created(stack, dev: str, **body) -> tuple[str, dict]:
    payload = {"name": "pinned", "strategy": {"name": "fedadam"}, "rounds": {"min_updates": 2, "total_rounds": 2},
               "update_limits": {"max_update_norm": 50.0}} | body
    res = stack.api("POST", "/v1/experiments", dev, json_body=payload)
    assert res.status == 201, res.body
    return res.json()["experiment"]["id"], res.json()["upload"]


def activated(stack, dev: str, **body) -> tuple[str, dict, bytes]:
    exp_id, upload = created(stack, dev, **body)
    good = encode(initial())
    assert post(upload, good) == 204
    assert stack.deliver(MODEL0.format(exp_id)) == {"batchItemFailures": []}
    assert stack.experiment(dev, exp_id)["status"] == "RUNNING"
    return exp_id, upload, good


def fetched(url: str) -> bytes:
    got = requests.get(url, timeout=10)
    assert got.status_code == 200, got.text
    return got.content


def run_round(stack, dev: str, exp_id: str, n: int = 1) -> dict:
    for i, (client_id, token) in enumerate(stack.enroll(dev, exp_id, 2) if n == 1 else []):
        tensors = {k: v + 0.5 * (i + 1) for k, v in initial().items()}
        assert stack.submit(exp_id, n, token, update_bytes(tensors, 3 + i, n)).status == 202
        assert stack.deliver(f"updates/{exp_id}/{n:08d}/{client_id}.safetensors") == {"batchItemFailures": []}
    assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    return stack.round(dev, exp_id, n)


def test_activation_pins_the_validated_version_and_a_second_post_changes_nothing(stack):
    # Given an experiment activated from the developer's presigned POST
    dev = stack.token(Role.DEVELOPER)
    exp_id, upload, good = activated(stack, dev)
    before = stack.experiment(dev, exp_id)
    pinned = before["initial_version_id"]
    assert pinned and before["initial_sha256"] == hashlib.sha256(good).hexdigest()
    table, models = table_items(stack), bucket_objects(stack, "models/")
    # When the still-valid presigned POST writes other bytes over the key, and its event arrives
    assert post(upload, encode(evil())) == 204
    assert len(bucket_objects(stack, "models/")) == len(models) + 1  # S3 keeps it as a new version
    assert stack.deliver(MODEL0.format(exp_id)) == {"batchItemFailures": []}
    # Then nothing in the table changed, and every read of version 0 serves the validated bytes
    assert changed(table, table_items(stack)) == set()
    assert stack.experiment(dev, exp_id) == before
    model = stack.api("GET", f"/v1/experiments/{exp_id}/model", dev).json()
    assert parse_qs(urlsplit(model["url"]).query)["versionId"] == [pinned]
    assert fetched(model["url"]) == good and model["sha256"] == before["initial_sha256"]
    model0 = stack.api("GET", f"/v1/experiments/{exp_id}/models/0", dev).json()
    assert fetched(model0["url"]) == good and model0["size"] == len(good)
    [obj] = stack.api("GET", f"/v1/experiments/{exp_id}/rounds/0/artifacts", dev).json()["objects"]
    assert obj["version_id"] == pinned and fetched(obj["url"]) == good
    # And a PUT of another initial model is refused, changing nothing
    objects = bucket_objects(stack)
    res = stack.api("PUT", f"/v1/experiments/{exp_id}/model", dev, body=encode(evil()))
    assert (res.status, res.json()["error"]["code"]) == (409, "MODEL_ALREADY_SET")
    assert bucket_objects(stack) == objects and changed(table, table_items(stack)) == set()


def test_round_one_builds_on_the_validated_initial_model_after_an_overwrite(stack, capsys):
    # Given two identical experiments, one of whose initial model key is overwritten after activation
    dev = stack.token(Role.DEVELOPER)
    control, _, _ = activated(stack, dev)
    exp_id, upload, good = activated(stack, dev)
    assert post(upload, encode(evil())) == 204
    assert stack.deliver(MODEL0.format(exp_id)) == {"batchItemFailures": []}
    # When a round runs (ingest checks each update's norm against version 0; FedAdam steps from it)
    control_round, published = run_round(stack, dev, control), run_round(stack, dev, exp_id)
    # Then no update was refused as too far from the written-over bytes, and the model is the control's
    assert [u["status"] for u in published["updates"]] == ["APPLIED", "APPLIED"]
    ours, _ = decode(stack.get_object(f"models/{exp_id}/00000001.safetensors"))
    theirs, _ = decode(stack.get_object(f"models/{control}/00000001.safetensors"))
    assert ours.keys() == theirs.keys() and all(np.array_equal(ours[k], theirs[k]) for k in ours)
    assert control_round["model_sha256"] != published["model_sha256"]  # (metadata names the experiment)
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    pinned = stack.experiment(dev, exp_id)["initial_version_id"]
    assert manifest["global_model"] == {"key": MODEL0.format(exp_id), "sha256": hashlib.sha256(good).hexdigest(),
                                        "version_id": pinned}
    # And `fma verify` checks the pinned initial model and re-runs round 1 to the published bytes
    code = main(["verify", exp_id, "--bucket", BUCKET, "--table", os.environ["FMA_TABLE_NAME"], "--rerun-all"])
    out = capsys.readouterr().out
    assert code == 0, out


def test_a_fork_of_round_zero_copies_the_validated_initial_model(stack):
    # Given a parent whose initial model key was written over after activation
    dev = stack.token(Role.DEVELOPER)
    parent, upload, good = activated(stack, dev)
    assert post(upload, encode(evil())) == 204
    # When a developer forks its round 0
    res = stack.api("POST", "/v1/experiments", dev, json_body={
        "name": "fork", "rounds": {"min_updates": 2, "total_rounds": 1}, "from": {"experiment_id": parent, "round": 0}})
    assert res.status == 201, res.body
    child = res.json()["experiment"]
    # Then the fork's version 0 is the parent's validated bytes, pinned in the fork too
    assert child["model_sha256"] == hashlib.sha256(good).hexdigest()
    assert child["initial_version_id"]
    model = stack.api("GET", f"/v1/experiments/{child['id']}/model", dev).json()
    assert fetched(model["url"]) == good


def test_async_versions_read_the_validated_initial_model(stack):
    # Given an async experiment whose initial model key was written over after activation
    dev = stack.token(Role.DEVELOPER)
    exp_id, upload, good = activated(stack, dev, strategy={"name": "fedavg"}, update_limits={},
                                     rounds={"mode": "async", "buffer_size": 2, "total_rounds": 1})
    assert post(upload, encode(evil())) == 204
    assert stack.deliver(MODEL0.format(exp_id)) == {"batchItemFailures": []}
    # When version 1 publishes from a buffer of two updates
    run_round(stack, dev, exp_id)
    # Then its manifest names the pinned initial model as the one it built on
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    assert manifest["global_model"]["sha256"] == hashlib.sha256(good).hexdigest()
    assert manifest["global_model"]["version_id"] == stack.experiment(dev, exp_id)["initial_version_id"]
    assert {b["sha256"] for b in manifest["base_models"]} == {hashlib.sha256(good).hexdigest()}
