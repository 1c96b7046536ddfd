"""get_model: download once, verify the sha256, reuse the bytes on 304; register()."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import responses

from fma_client import Client, Conflict, FmaError, Forbidden, IntegrityError

from .conftest import API, EXP, MODEL, S3, error_body, model_bytes, s3_calls, serve_model


def test_get_model_returns_arrays_round_and_config(client, http):
    serve_model(http, model_bytes(2.0), round=4)

    weights, round, config = client.get_model()
    assert round == 4
    assert config == {"lr": 0.1, "round": 4, "server-round": 4}
    np.testing.assert_array_equal(weights["w"], np.full((2, 3), 2.0, np.float32))
    assert weights["b"].dtype == np.float32


def test_second_get_model_sends_if_none_match_and_reuses_the_bytes_on_304(client, http):
    sha = serve_model(http, model_bytes(), round=1)
    first, _, _ = client.get_model()
    first["w"] += 100.0  # training in place must not poison the cache
    http.replace(responses.GET, MODEL, status=304)

    second, round, config = client.get_model()
    assert http.calls[-1].request.headers["If-None-Match"] == f'"{sha}"'
    assert s3_calls(http) == 1
    assert round == 1 and config["round"] == 1
    np.testing.assert_array_equal(second["w"], np.ones((2, 3), np.float32))


def test_a_200_with_the_cached_sha256_does_not_download_again(client, http):
    sha = serve_model(http, model_bytes(), round=1)
    client.get_model()
    body = {"round": 2, "version": 1, "sha256": sha, "url": f"{S3}/models/{sha}",
            "client_config": {}, "status": "RUNNING"}  # fmt: skip
    http.replace(responses.GET, MODEL, json=body)  # a server that ignores If-None-Match

    _, round, _ = client.get_model()
    assert round == 2 and s3_calls(http) == 1


def test_a_sha256_mismatch_is_detected(client, http):
    sha = hashlib.sha256(b"the real model").hexdigest()
    http.get(MODEL, json={"round": 1, "version": 0, "sha256": sha, "url": f"{S3}/m",
                          "client_config": {}, "status": "RUNNING"})  # fmt: skip
    http.get(f"{S3}/m", body=model_bytes())  # tampered or truncated

    with pytest.raises(IntegrityError):
        client.get_model()
    assert client.model is None


def test_a_paused_model_is_revalidated_in_full_next_time(client, http):
    serve_model(http, model_bytes(), status="PAUSED")
    client.get_model()

    client.get_model()
    assert "If-None-Match" not in http.calls[-1].request.headers


def test_a_finished_experiment_returns_round_none(client, http):
    serve_model(http, model_bytes(), round=None, status="COMPLETED")

    weights, round, config = client.get_model()
    assert round is None and "round" not in config and set(weights) == {"w", "b"}


def test_model_not_ready_is_a_conflict(client, http):
    http.get(MODEL, status=409, json=error_body("MODEL_NOT_READY"))

    with pytest.raises(Conflict) as err:
        client.get_model()
    assert err.value.code == "MODEL_NOT_READY"


def test_register_uses_the_enrollment_token_and_keeps_the_client_token(http):
    http.post(f"{API}/v1/experiments/{EXP}/clients", status=201,
              json={"client_id": "c9", "token": "client-token"})  # fmt: skip
    client = Client(API, EXP, enrollment_token="enroll", name="laptop")

    assert client.register() == "c9"
    request = http.calls[0].request
    assert request.headers["Authorization"] == "Bearer enroll"
    assert request.body == b'{"name": "laptop"}'
    assert (client.client_id, client.token) == ("c9", "client-token")


def test_a_client_with_only_an_enrollment_token_registers_on_first_use(http):
    http.post(f"{API}/v1/experiments/{EXP}/clients", status=201,
              json={"client_id": "c9", "token": "client-token"})  # fmt: skip
    serve_model(http, model_bytes())
    client = Client(API, EXP, enrollment_token="enroll")

    client.get_model()
    assert http.calls[1].request.headers["Authorization"] == "Bearer client-token"


def test_a_client_without_any_token_fails_clearly():
    with pytest.raises(FmaError, match="token"):
        Client(API, EXP).get_model()


def test_register_retries_a_registration_race_but_not_an_exhausted_token(http, fake_time):
    url = f"{API}/v1/experiments/{EXP}/clients"
    http.post(url, status=409, json=error_body("REGISTRATION_CONFLICT"))
    http.post(url, status=201, json={"client_id": "c9", "token": "t"})
    client = Client(API, EXP, enrollment_token="enroll", sleep=fake_time.sleep)

    assert client.register() == "c9" and len(fake_time.sleeps) == 1

    http.replace(responses.POST, url, status=403, json=error_body("ENROLLMENT_EXHAUSTED"))
    with pytest.raises(Forbidden):
        Client(API, EXP, enrollment_token="enroll", sleep=fake_time.sleep).register()
