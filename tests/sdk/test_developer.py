"""Developer: create (and upload the initial model), paginate, download, steer, tokens."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from safetensors.numpy import load

from fma_client import Developer, ExperimentFailed, IntegrityError, Timeout

from .conftest import API, S3, FakeTime, model_bytes

EXPS = f"{API}/v1/experiments"


def experiment(status: str = "PENDING_MODEL", **extra) -> dict:
    return {"id": "e1", "name": "digits", "status": status, "current_round": 1, **extra}


def created(**extra) -> dict:
    fields = {"key": "models/e1/00000000.safetensors", "policy": "p"}
    return {"experiment": experiment(**extra), "upload": {"url": f"{S3}/bucket", "fields": fields}}


WEIGHTS = {"w": np.ones((2, 3), np.float32)}


def test_create_experiment_puts_a_small_model_and_waits_until_running(developer, http):
    http.post(EXPS, status=201, json=created())
    http.put(f"{EXPS}/e1/model", status=202, json={"status": "UPLOADING", "key": "k"})
    http.get(f"{EXPS}/e1", json=experiment("PENDING_MODEL"))
    http.get(f"{EXPS}/e1", json=experiment("RUNNING"))

    exp = developer.create_experiment(
        "digits", WEIGHTS, rounds={"min_updates": 4, "total_rounds": 5},
        client_config={"epochs": 1}, max_update_bytes=1000,
    )  # fmt: skip
    assert exp["status"] == "RUNNING"
    body = json.loads(http.calls[0].request.body)
    assert body == {
        "name": "digits", "strategy": {"name": "fedavg", "params": {}},
        "rounds": {"min_updates": 4, "total_rounds": 5}, "client_config": {"epochs": 1},
        "max_update_bytes": 1000,
    }  # fmt: skip
    put = http.calls[1].request
    np.testing.assert_array_equal(load(put.body)["w"], WEIGHTS["w"])
    assert put.headers["Content-Type"] == "application/octet-stream"


def test_create_experiment_posts_a_large_model_to_the_presigned_url(http, fake_time):
    developer = Developer(API, "dtok", sleep=fake_time.sleep, direct_upload_limit=10)
    http.post(EXPS, status=201, json=created())
    http.post(f"{S3}/bucket", status=204)

    exp = developer.create_experiment("digits", WEIGHTS, strategy={"name": "fedprox",
                                                                   "params": {"mu": 0.1}},
                                      wait=False)  # fmt: skip
    assert exp["status"] == "PENDING_MODEL"
    assert json.loads(http.calls[0].request.body)["strategy"] == {
        "name": "fedprox", "params": {"mu": 0.1}}  # fmt: skip
    upload = http.calls[1].request
    assert upload.url == f"{S3}/bucket" and "Authorization" not in upload.headers
    assert b'name="policy"' in upload.body and b'name="file"' in upload.body


def test_a_413_on_the_model_put_falls_back_to_the_presigned_post(developer, http):
    http.post(EXPS, status=201, json=created())
    http.put(f"{EXPS}/e1/model", status=413, json={"error": {"code": "TOO_LARGE", "message": "x"}})
    http.post(f"{S3}/bucket", status=204)

    developer.create_experiment("digits", WEIGHTS, wait=False)
    assert http.calls[-1].request.url == f"{S3}/bucket"


def test_create_experiment_raises_when_the_model_is_refused(developer, http):
    http.post(EXPS, status=201, json=created())
    http.put(f"{EXPS}/e1/model", status=202, json={"status": "UPLOADING", "key": "k"})
    http.get(f"{EXPS}/e1", json=experiment("FAILED", reason="tensor w is not finite"))

    with pytest.raises(ExperimentFailed, match="not finite"):
        developer.create_experiment("digits", WEIGHTS)


def test_waiting_for_running_times_out(developer, http, fake_time: FakeTime):
    http.get(f"{EXPS}/e1", json=experiment("PENDING_MODEL"))

    with pytest.raises(Timeout):
        developer.wait_until_running("e1", timeout=30)
    assert 30 <= fake_time.now < 40


def test_experiments_and_rounds_follow_the_cursor_across_pages(developer, http):
    http.get(EXPS, json={"experiments": [{"id": "a"}], "next_cursor": "c2"})
    http.get(EXPS, json={"experiments": [{"id": "b"}], "next_cursor": None})
    http.get(f"{EXPS}/e1/rounds", json={"rounds": [{"round": 1}], "next_cursor": "x"})
    http.get(f"{EXPS}/e1/rounds", json={"rounds": [{"round": 2}], "next_cursor": None})

    assert [e["id"] for e in developer.experiments()] == ["a", "b"]
    assert [r["round"] for r in developer.rounds("e1")] == [1, 2]
    assert http.calls[1].request.params == {"limit": "100", "cursor": "c2"}


def test_download_model_verifies_the_sha256(developer, http):
    data = model_bytes(3.0)
    sha = hashlib.sha256(data).hexdigest()
    http.get(f"{EXPS}/e1/models/2", json={"round": 2, "sha256": sha, "size": len(data),
                                          "url": f"{S3}/m2"})  # fmt: skip
    http.get(f"{S3}/m2", body=data)

    weights = developer.download_model("e1", 2)
    np.testing.assert_array_equal(weights["w"], np.full((2, 3), 3.0, np.float32))

    http.get(f"{EXPS}/e1/models/3", json={"round": 3, "sha256": "0" * 64, "size": 1,
                                          "url": f"{S3}/m2"})  # fmt: skip
    with pytest.raises(IntegrityError):
        developer.download_model("e1", 3)


@pytest.mark.parametrize(("method", "status"), [("pause", "PAUSED"), ("resume", "RUNNING"), ("stop", "STOPPED")])
def test_pause_resume_stop_patch_the_status(developer, http, method, status):
    http.patch(f"{EXPS}/e1", json=experiment(status))

    assert getattr(developer, method)("e1")["status"] == status
    assert json.loads(http.calls[0].request.body) == {"status": status}


def test_enrollment_and_admin_tokens(developer, http):
    http.post(f"{EXPS}/e1/enrollment-tokens", status=201,
              json={"token": "enr", "expires_at": "t", "max_uses": 6})  # fmt: skip
    http.post(f"{API}/v1/tokens", status=201,
              json={"token": "dev", "role": "developer", "expires_at": None})  # fmt: skip

    assert developer.enrollment_token("e1", expires_in_seconds=60, max_uses=6)["token"] == "enr"
    assert json.loads(http.calls[0].request.body) == {"expires_in_seconds": 60, "max_uses": 6}
    assert developer.create_token("developer", name="alice")["token"] == "dev"
    assert json.loads(http.calls[1].request.body) == {"role": "developer", "name": "alice"}
