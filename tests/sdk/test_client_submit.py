"""submit: direct PUT vs presigned POST by size, update metadata, waiting for validation."""

from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.numpy import load

from fma_client import Client, ExperimentEnded, RoundFailed, Timeout, UpdateRejected

from .conftest import API, EXP, S3, FakeTime, model_bytes, serve_model

UPDATES = f"{API}/v1/experiments/{EXP}/rounds/1/updates"
ROUND = f"{API}/v1/experiments/{EXP}/rounds/1"


def round_body(state="OPEN", *updates: dict) -> dict:
    return {"round": 1, "state": state, "accepted": 0, "rejected": 0, "late": 0,
            "min_updates": 2, "metrics": {}, "updates": list(updates)}  # fmt: skip


def own(status: str, reason: str | None = None) -> dict:
    return {"client_id": "c1", "status": status, "reason": reason, "num_examples": 10,
            "metrics": {}}  # fmt: skip


def metadata_of(body: bytes) -> dict[str, str]:
    """The `__metadata__` of a safetensors file: 8-byte LE header length, then JSON."""
    size = int.from_bytes(body[:8], "little")
    return json.loads(body[8 : 8 + size])["__metadata__"]


@pytest.fixture
def ready(client: Client, http) -> Client:
    """A client that has fetched the round-1 model (float32 tensors)."""
    serve_model(http, model_bytes(), round=1)
    client.get_model()
    return client


def test_a_small_update_is_put_directly_with_metadata_and_the_models_dtypes(ready, http):
    http.put(UPDATES, status=202, json={"update_id": "u1", "status": "UPLOADING"})
    weights = {"w": np.zeros((2, 3)), "b": np.ones(3)}  # float64, as numpy training makes them

    result = ready.submit(weights, 10, {"loss": np.float32(0.5), "n": 3}, wait=False)
    assert result == {"update_id": "u1", "round": 1, "status": "UPLOADING"}
    request = http.calls[-1].request
    assert request.method == "PUT"
    assert request.headers["Content-Type"] == "application/octet-stream"
    sent = load(request.body)
    assert {k: v.dtype for k, v in sent.items()} == {"w": np.float32, "b": np.float32}
    meta = metadata_of(request.body)
    assert meta["fma.num_examples"] == "10" and meta["fma.round"] == "1"
    assert json.loads(meta["fma.metrics"]) == {"loss": 0.5, "n": 3}


def test_a_large_update_goes_through_a_presigned_post_with_its_checksum(ready, http):
    ready.direct_upload_limit = 100
    http.post(
        UPDATES,
        status=201,
        json={
            "update_id": "u1",
            "upload": {"url": f"{S3}/bucket", "fields": {"key": "updates/exp-1/00000001/c1.safetensors"}},
        },
    )
    http.post(f"{S3}/bucket", status=204)

    ready.submit({"w": np.zeros((2, 3)), "b": np.ones(3)}, 10, wait=False)
    ask, upload = http.calls[-2].request, http.calls[-1].request
    asked = json.loads(ask.body)
    assert asked["size"] > 100 and len(asked["sha256"]) == 64
    assert "Authorization" not in upload.headers
    body = upload.body
    assert body.index(b'name="key"') < body.index(b'name="file"')  # S3 wants the file last
    assert not any(c.request.method == "PUT" for c in http.calls)


def test_a_413_on_the_direct_put_falls_back_to_the_presigned_post(ready, http):
    http.put(UPDATES, status=413, json={"error": {"code": "TOO_LARGE", "message": "x"}})
    http.post(UPDATES, status=201, json={"update_id": "u1", "upload": {"url": f"{S3}/b", "fields": {}}})
    http.post(f"{S3}/b", status=204)

    assert ready.submit({"w": np.zeros((2, 3)), "b": np.ones(3)}, 1, wait=False)["update_id"]
    assert http.calls[-1].request.url == f"{S3}/b"


def test_submit_waits_until_its_update_is_accepted(ready, http):
    http.put(UPDATES, status=202, json={"update_id": "u1", "status": "UPLOADING"})
    http.get(ROUND, json=round_body("OPEN", own("UPLOADING")))
    http.get(ROUND, json=round_body("OPEN", {**own("ACCEPTED"), "client_id": "other"}))
    http.get(ROUND, json=round_body("OPEN", own("ACCEPTED")))

    result = ready.submit({"w": np.zeros((2, 3)), "b": np.ones(3)}, 10)
    assert result["status"] == "ACCEPTED" and result["update_id"] == "u1"


@pytest.mark.parametrize("status", ["REJECTED", "LATE"])
def test_a_refused_update_raises_with_the_servers_reason(ready, http, status):
    http.put(UPDATES, status=202, json={"update_id": "u1", "status": "UPLOADING"})
    http.get(ROUND, json=round_body("OPEN", own(status, "tensor w: shape (3, 2) != (2, 3)")))

    with pytest.raises(UpdateRejected) as err:
        ready.submit({"w": np.zeros((3, 2)), "b": np.ones(3)}, 10)
    assert err.value.status == status and err.value.round == 1
    assert err.value.reason == "tensor w: shape (3, 2) != (2, 3)"
    assert "shape (3, 2)" in str(err.value)


def test_waiting_for_an_update_times_out(ready, http, fake_time: FakeTime):
    http.get(ROUND, json=round_body("OPEN", own("UPLOADING")))

    with pytest.raises(Timeout):
        ready.wait_for_update(1, timeout=10)
    assert fake_time.now >= 10


@pytest.mark.parametrize(
    ("num_examples", "metrics"),
    [
        (0, None),
        (2.5, None),
        (True, None),
        (5, {"loss": float("nan")}),
        (5, {"acc": "high"}),
        (5, {f"m{i}": 1 for i in range(65)}),
        (5, {"x" * 65: 1}),
    ],
)
def test_invalid_counts_or_metrics_fail_before_any_upload(ready, http, num_examples, metrics):
    calls = len(http.calls)
    with pytest.raises(ValueError):
        ready.submit({"w": np.zeros((2, 3))}, num_examples, metrics)
    assert len(http.calls) == calls


def test_submit_before_any_model_needs_an_explicit_round(client):
    with pytest.raises(Exception, match="round"):
        client.submit({"w": np.zeros(1)}, 1)


def test_wait_for_round_returns_the_published_round(client, http):
    http.get(ROUND, json=round_body("AGGREGATING"))
    http.get(ROUND, json={**round_body("PUBLISHED"), "metrics": {"loss": 0.1}})

    assert client.wait_for_round(1, timeout=60)["metrics"] == {"loss": 0.1}


def test_wait_for_round_raises_when_the_round_failed(client, http):
    http.get(ROUND, json={**round_body("FAILED"), "reason": "deadline passed with 1 of 2"})

    with pytest.raises(RoundFailed, match="deadline passed"):
        client.wait_for_round(1, timeout=60)


def test_wait_for_round_notices_a_stopped_experiment(client, http):
    http.get(ROUND, json=round_body("OPEN"))
    http.get(f"{API}/v1/experiments/{EXP}/model",
             json={"round": None, "status": "STOPPED", "sha256": None, "url": None})  # fmt: skip

    with pytest.raises(ExperimentEnded):
        client.wait_for_round(1, timeout=3600)


def test_evaluate_posts_clean_metrics(client, http):
    http.post(f"{ROUND}/evaluations", status=201, json={"round": 1, "client_id": "c1"})

    client.evaluate(1, 20, {"accuracy": np.float64(0.9)})
    assert json.loads(http.calls[0].request.body) == {"num_examples": 20, "metrics": {"accuracy": 0.9}}
