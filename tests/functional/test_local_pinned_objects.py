"""Issue 11, "a second POST through a still-valid presigned URL after acceptance never changes
what any model, manifest or listing shows", in local mode (sqlite_fs behind the gateway, HTTP).

The gateway's upload grants are not single-use: until it expires, a grant stores another version
at its key (for an update only the bytes of the declared sha256; for the initial model any bytes
of an allowed size). These tests prove that such a write is stored and then never read: every
read of version 0 is pinned to the version activation validated, every read of an update to the
version ingest accepted, and the later object's event changes no row of the database.
"""

from __future__ import annotations

import hashlib
import json
import os
import time

import numpy as np
import pytest
import requests
from harness import update_bytes

from fma.domain.codec import decode, encode
from fma.local.app import LocalStack

ROW_TABLES = ("tokens", "experiments", "clients", "rounds", "updates", "evaluations", "buffers", "links")


@pytest.fixture
def local(tmp_path):
    """`fma local up` in this process (sqlite_fs, no worker processes), its settings undone after."""
    saved_env, saved_umask = dict(os.environ), os.umask(0o077)
    stack = LocalStack(port=0, state_dir=tmp_path / "state", workers=0, sweep_seconds=3600).start()
    try:
        yield stack
    finally:
        stack.stop()
        os.environ.clear()
        os.environ.update(saved_env)
        os.umask(saved_umask)


def api(stack, method: str, path: str, token: str, body: dict | None = None) -> requests.Response:
    return requests.request(method, f"{stack.url}{path}", json=body, timeout=30,
                            headers={"Authorization": f"Bearer {token}"})


def post(upload: dict, data: bytes) -> int:
    return requests.post(upload["url"], data=upload["fields"], files={"file": ("f", data)}, timeout=30).status_code


def settled(stack, until=lambda: True) -> None:
    """Wait (bounded) until the pump has acknowledged every object-created event and `until()` holds."""
    deadline = time.monotonic() + 60
    while not (stack.connector.events.pending() == 0 and until()):
        assert time.monotonic() < deadline, "local mode did not settle"
        time.sleep(0.05)


def rows(stack) -> dict[str, list[str]]:
    """Every metadata row (objects and the outbox aside): equal dumps mean nothing changed."""
    with stack.connector.db.read() as tx:
        return {t: sorted(r[0] for r in tx.conn.execute(f"SELECT data FROM {t}")) for t in ROW_TABLES}


def versions(stack, key: str) -> int:
    with stack.connector.db.read() as tx:
        return int(tx.conn.execute("SELECT COUNT(*) FROM objects WHERE key = ?", (key,)).fetchone()[0])


def initial() -> dict[str, np.ndarray]:
    return {"w": np.linspace(-1, 1, 6, dtype=np.float32).reshape(2, 3)}


def test_a_second_upload_through_the_initial_models_grant_is_stored_but_never_read(local):
    token = local.admin_token
    # Given an experiment activated through its upload grant
    res = api(local, "POST", "/v1/experiments", token, {"name": "pinned", "rounds": {"min_updates": 2}})
    assert res.status_code == 201, res.text
    exp_id, upload = res.json()["experiment"]["id"], res.json()["upload"]
    good, key = encode(initial()), f"models/{res.json()['experiment']['id']}/00000000.safetensors"
    assert post(upload, good) == 204
    settled(local, lambda: api(local, "GET", f"/v1/experiments/{exp_id}", token).json()["status"] == "RUNNING")
    before, detail = rows(local), api(local, "GET", f"/v1/experiments/{exp_id}", token).json()
    # When the still-valid grant uploads other bytes: the gateway stores them (grants are reusable)
    assert post(upload, encode({"w": np.full((2, 3), 1000.0, np.float32)})) == 204
    settled(local)
    assert versions(local, key) == 2
    # Then no row changed, and GET /model and GET /models/0 serve the validated bytes
    assert rows(local) == before
    assert api(local, "GET", f"/v1/experiments/{exp_id}", token).json() == detail
    model = api(local, "GET", f"/v1/experiments/{exp_id}/model", token).json()
    assert requests.get(model["url"], timeout=30).content == good
    assert model["sha256"] == hashlib.sha256(good).hexdigest()
    model0 = api(local, "GET", f"/v1/experiments/{exp_id}/models/0", token).json()
    assert requests.get(model0["url"], timeout=30).content == good and model0["size"] == len(good)


def test_a_second_upload_through_an_update_grant_changes_no_listing_model_or_manifest(local):
    token = local.admin_token
    # Given a running experiment with two enrolled clients
    res = api(local, "POST", "/v1/experiments", token, {"name": "u", "rounds": {"min_updates": 2, "total_rounds": 2}})
    exp_id, upload = res.json()["experiment"]["id"], res.json()["upload"]
    assert post(upload, encode(initial())) == 204
    settled(local, lambda: api(local, "GET", f"/v1/experiments/{exp_id}", token).json()["status"] == "RUNNING")
    enroll = api(local, "POST", f"/v1/experiments/{exp_id}/enrollment-tokens", token, {"max_uses": 2}).json()["token"]
    clients = sorted((r["client_id"], r["token"]) for r in
                     (api(local, "POST", f"/v1/experiments/{exp_id}/clients", enroll, {}).json() for _ in range(2)))
    datas = [update_bytes({"w": np.full((2, 3), float(i + 1), np.float32)}, 2 + i, 1) for i in range(2)]
    grants = []
    for (_, ctoken), data in zip(clients, datas, strict=True):
        res = api(local, "POST", f"/v1/experiments/{exp_id}/rounds/1/updates", ctoken,
                  {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()})
        assert res.status_code == 201, res.text
        grants.append(res.json()["upload"])

    def round_1() -> dict:
        return api(local, "GET", f"/v1/experiments/{exp_id}/rounds/1", token).json()

    # When the first client's update is accepted and it posts through its grant again
    assert post(grants[0], datas[0]) == 204
    settled(local, lambda: round_1()["accepted"] == 1)
    listing, before = round_1(), rows(local)
    assert post(grants[0], datas[0]) == 204  # the same bytes: stored as another version
    other = update_bytes({"w": np.full((2, 3), 1000.0, np.float32)}, 10**6, 1)
    assert post(grants[0], other[:len(datas[0])]) == 403  # other bytes: the grant's sha256 refuses them
    settled(local)
    # Then the listing and every row are as they were
    assert round_1() == listing and rows(local) == before
    # And after the round publishes, a further POST changes neither the listing, the model nor the manifest
    assert post(grants[1], datas[1]) == 204
    settled(local, lambda: round_1()["state"] == "PUBLISHED")
    published, model_key = round_1(), f"models/{exp_id}/00000001.safetensors"
    model, manifest = local.connector.store.get(model_key), local.connector.store.get(
        f"models/{exp_id}/00000001.manifest.json")
    assert post(grants[0], datas[0]) == 204
    settled(local)
    assert round_1() == published
    assert local.connector.store.get(model_key) == model
    assert local.connector.store.get(f"models/{exp_id}/00000001.manifest.json") == manifest
    tensors, _ = decode(model)
    assert np.allclose(tensors["w"], (2 * 1.0 + 3 * 2.0) / 5)
    first = json.loads(manifest)["input_objects"][0]
    assert first["client_id"] == clients[0][0] and versions(local, first["key"]) == 3
