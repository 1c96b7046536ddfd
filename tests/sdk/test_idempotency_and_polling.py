"""Every POST carries an Idempotency-Key (one per logical call, kept across its retries) and only
such POSTs are retried; the default policy outlasts a restart; polls obey Retry-After."""

from __future__ import annotations

import itertools
import logging
import random
import uuid

import numpy as np
import pytest
import requests
import responses

from fma_client import Client, Developer, FmaConnectionError, RetryPolicy, ServerError
from fma_client._http import Transport

from .conftest import API, EXP, error_body, model_bytes, serve_model
from .fake_server import FakeServer

CLIENTS = f"{API}/v1/experiments/{EXP}/clients"
ROUND = f"{API}/v1/experiments/{EXP}/rounds/1"


def keys(http) -> list[str | None]:
    return [c.request.headers.get("Idempotency-Key") for c in http.calls if c.request.method == "POST"]


def test_a_retried_post_sends_the_same_key_and_a_new_call_a_new_one(http, fake_time):
    http.post(CLIENTS, status=503, json=error_body("UNAVAILABLE"))
    http.post(CLIENTS, status=201, json={"client_id": "c1", "token": "t1"})
    client = Client(API, EXP, enrollment_token="e", sleep=fake_time.sleep, clock=fake_time.clock)

    client.register()
    first, retry = keys(http)
    assert first == retry and uuid.UUID(first).version == 4

    http.replace(responses.POST, CLIENTS, status=201, json={"client_id": "c2", "token": "t2"})
    client.register()
    assert keys(http)[2] not in (first, None)


def test_every_sdk_post_carries_a_key(http, fake_time):
    dev = Developer(API, "d", sleep=fake_time.sleep, clock=fake_time.clock)
    http.post(f"{API}/v1/experiments/{EXP}/enrollment-tokens", status=201, json={"token": "e"})
    http.post(f"{API}/v1/tokens", status=201, json={"token": "x"})
    http.post(f"{ROUND}/evaluations", status=201, json={})
    http.post("http://s3.test/upload", status=204)

    dev.enrollment_token(EXP)
    dev.create_token("analyst")
    Client(API, EXP, token="t").evaluate(1, 5, {"loss": 1.0})
    dev.http.presigned_post("http://s3.test/upload", {"key": "k"}, b"data")
    assert len(keys(http)) == 4 and all(keys(http)) and len(set(keys(http))) == 4


def test_a_post_without_a_key_is_never_retried(http, fake_time):
    transport = Transport(API, "t", sleep=fake_time.sleep, clock=fake_time.clock)
    http.post(CLIENTS, status=503)

    with pytest.raises(ServerError):
        transport.send("POST", CLIENTS, ok=(201,), headers={})
    assert len(http.calls) == 1 and fake_time.sleeps == []


def test_the_default_policy_rides_out_a_restart_of_tens_of_seconds(http, fake_time, caplog):
    client = Client(API, EXP, token="t", sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(3))
    serve_model(http, model_bytes())
    client.get_model()  # the server was reached once: from now on an outage is ridden out
    http.replace(responses.GET, f"{API}/v1/experiments/{EXP}/model", body=requests.ConnectionError("refused"))
    outage = 0

    def down_for_45_seconds(request):
        nonlocal outage
        outage += 1
        if fake_time.now < 45.0:
            raise requests.ConnectionError("[Errno 111] Connection refused")
        return 304, {}, ""

    http.remove(responses.GET, f"{API}/v1/experiments/{EXP}/model")
    http.add_callback(responses.GET, f"{API}/v1/experiments/{EXP}/model", down_for_45_seconds)
    caplog.set_level(logging.WARNING, logger="fma_client")

    client.get_model()
    assert fake_time.now >= 45.0 and outage > 3
    waits = fake_time.sleeps
    assert all(b >= a * 0.5 for a, b in itertools.pairwise(waits)) and max(waits) <= 8.0  # backoff, capped
    assert len({round(w, 6) for w in waits}) == len(waits)  # jittered
    assert [r.getMessage() for r in caplog.records] == [
        f"FMA at {API}: connection refused; retrying for up to 90 s"
    ]  # one line per outage, not one per attempt


def test_an_outage_longer_than_the_budget_ends_with_the_one_line_error(http, fake_time):
    client = Client(API, EXP, token="t", sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(3))
    serve_model(http, model_bytes())
    client.get_model()
    http.replace(responses.GET, f"{API}/v1/experiments/{EXP}/model", body=requests.ConnectionError("refused"))

    with pytest.raises(FmaConnectionError, match=r"connection lost after \d+ attempts"):
        client.get_model()
    assert 60.0 < sum(fake_time.sleeps) <= RetryPolicy().max_elapsed


def test_round_polling_obeys_the_servers_retry_after_hint(http, fake_time):
    client = Client(API, EXP, token="t", client_id="c1", sleep=fake_time.sleep, clock=fake_time.clock)
    for _ in range(3):
        http.get(ROUND, json={"round": 1, "state": "OPEN", "updates": []}, headers={"Retry-After": "7"})
    http.get(ROUND, json={"round": 1, "state": "PUBLISHED", "updates": []})

    assert client.wait_for_round(1)["state"] == "PUBLISHED"
    assert len(fake_time.sleeps) == 3 and all(7.0 <= s <= 7.7 for s in fake_time.sleeps)


def test_without_a_hint_polls_back_off_with_jitter(http, fake_time):
    client = Client(API, EXP, token="t", client_id="c1", sleep=fake_time.sleep, clock=fake_time.clock,
                    rng=random.Random(5))  # fmt: skip
    for _ in range(8):
        http.get(ROUND, json={"round": 1, "state": "OPEN", "updates": []})
    http.get(ROUND, json={"round": 1, "state": "PUBLISHED", "updates": []})

    client.wait_for_round(1)
    waits = fake_time.sleeps
    ceilings = [min(0.5 * 1.5**i, 5.0) for i in range(len(waits))]
    assert all(c / 2 <= w <= c for w, c in zip(waits, ceilings, strict=True))
    assert waits[-1] > waits[0] and len(set(waits)) == len(waits)


def test_a_paused_experiment_is_polled_with_a_growing_interval(http, fake_time):
    client = Client(API, EXP, token="t", client_id="c1", sleep=fake_time.sleep, clock=fake_time.clock,
                    poll_interval=1.0)  # fmt: skip
    server = FakeServer(http, {"w": np.zeros(2, np.float32)}, total_rounds=1)
    server.paused_polls = 8

    client.run(lambda w, c: (w, 1, {}))
    pause_waits = fake_time.sleeps[:7]
    assert max(pause_waits) > 2.0 and max(pause_waits) <= 5.0


@pytest.mark.parametrize("suffix", ["", "/", "/v1", "/v1/"])
def test_the_base_url_may_end_in_v1_or_not(http, suffix, fake_time):
    serve_model(http, model_bytes())
    http.post(CLIENTS, status=201, json={"client_id": "c1", "token": "t1"})

    client = Client(API + suffix, EXP, enrollment_token="e", sleep=fake_time.sleep)
    client.get_model()
    assert client.http.base_url == API
    assert [c.request.url for c in http.calls][:2] == [CLIENTS, f"{API}/v1/experiments/{EXP}/model"]
    assert Developer(API + suffix, "d").http.api_url("experiments") == f"{API}/v1/experiments"


def test_waiting_for_the_own_update_polls_on_its_own_short_backoff(http, fake_time):
    client = Client(API, EXP, token="t", client_id="c1", sleep=fake_time.sleep, clock=fake_time.clock)
    http.get(ROUND, json={"round": 1, "state": "OPEN", "updates": [{"client_id": "c1", "status": "UPLOADING"}]},
             headers={"Retry-After": "10"})  # fmt: skip
    http.get(ROUND, json={"round": 1, "state": "OPEN", "updates": [{"client_id": "c1", "status": "ACCEPTED"}]},
             headers={"Retry-After": "10"})  # fmt: skip

    assert client.wait_for_update(1)["status"] == "ACCEPTED"
    assert len(fake_time.sleeps) == 1 and fake_time.sleeps[0] <= 0.5  # the round's hint is not about the update


def test_an_update_the_server_failed_to_ingest_is_sent_again(client: Client, http):
    server = FakeServer(http, {"w": np.zeros(2, np.float32)}, total_rounds=1)
    server.fail_ingest = 2

    history = client.run(lambda w, c: ({"w": w["w"] + 1}, 3, {}))
    assert [h["status"] for h in history] == ["APPLIED"] and len(server.submitted) == 3
