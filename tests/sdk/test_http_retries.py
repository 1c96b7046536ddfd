"""Retries: backoff with jitter on 429, 5xx and connection errors only; never on other 4xx."""

from __future__ import annotations

import random

import pytest
import requests
import responses

from fma_client import BadRequest, FmaConnectionError, FmaHTTPError, RetryPolicy, ServerError, TooManyRequests
from fma_client._http import Transport, parse_retry_after

from .conftest import API, FakeTime, error_body

URL = f"{API}/v1/experiments/e"


@pytest.fixture
def transport(fake_time: FakeTime, http: responses.RequestsMock) -> Transport:
    return Transport(API, "tok", sleep=fake_time.sleep, rng=random.Random(1))


def test_429_then_200_succeeds_after_waiting_retry_after(transport, http, fake_time):
    http.get(URL, status=429, json=error_body("THROTTLED"), headers={"Retry-After": "3"})
    http.get(URL, json={"id": "e"})

    assert transport.call_json("GET", "experiments", "e") == {"id": "e"}
    assert len(http.calls) == 2
    [slept] = fake_time.sleeps
    assert 3.0 <= slept <= 3.3  # never sooner than asked, at most 10 % later


def test_503_then_200_succeeds_after_a_jittered_backoff(transport, http, fake_time):
    http.get(URL, status=503)
    http.get(URL, json={"id": "e"})

    assert transport.call_json("GET", "experiments", "e") == {"id": "e"}
    assert len(fake_time.sleeps) == 1
    assert 0.0 <= fake_time.sleeps[0] <= RetryPolicy().base


def test_400_is_not_retried(transport, http, fake_time):
    http.get(URL, status=400, json=error_body("INVALID_INPUT"))
    http.get(URL, json={"id": "e"})

    with pytest.raises(BadRequest):
        transport.call("GET", "experiments", "e")
    assert len(http.calls) == 1
    assert fake_time.sleeps == []


def test_connection_error_is_retried(transport, http, fake_time):
    http.get(URL, body=requests.ConnectionError("reset"))
    http.get(URL, json={"id": "e"})

    assert transport.call_json("GET", "experiments", "e") == {"id": "e"}
    assert len(fake_time.sleeps) == 1


def test_gives_up_after_the_configured_attempts_with_the_last_error(http, fake_time):
    transport = Transport(API, "tok", sleep=fake_time.sleep, retry=RetryPolicy(attempts=3))
    http.get(URL, status=503, json=error_body("UNAVAILABLE", "later"))

    with pytest.raises(ServerError) as err:
        transport.call("GET", "experiments", "e")
    assert len(http.calls) == 3
    assert len(fake_time.sleeps) == 2
    assert err.value.status == 503 and err.value.code == "UNAVAILABLE"


def test_429_raises_too_many_requests_when_retries_run_out(http, fake_time):
    transport = Transport(API, "tok", sleep=fake_time.sleep, retry=RetryPolicy(attempts=2))
    http.get(URL, status=429, json=error_body("THROTTLED"))

    with pytest.raises(TooManyRequests):
        transport.call("GET", "experiments", "e")
    assert len(http.calls) == 2


def test_connection_errors_on_every_attempt_raise_fma_connection_error(http, fake_time):
    transport = Transport(API, "tok", sleep=fake_time.sleep, retry=RetryPolicy(attempts=4))
    http.get(URL, body=requests.ConnectionError("refused"))

    with pytest.raises(FmaConnectionError):
        transport.call("GET", "experiments", "e")
    assert len(http.calls) == 4


def test_backoff_grows_exponentially_and_is_capped():
    policy = RetryPolicy(base=0.5, cap=4.0, max_retry_after=10.0)

    class Top(random.Random):
        def uniform(self, a: float, b: float) -> float:
            return b

    assert [policy.delay(i, Top()) for i in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]
    assert policy.delay(0, Top(), retry_after=600.0) == pytest.approx(11.0)  # capped, then spread


def test_a_retry_after_hint_is_never_shortened_and_spreads_the_clients_it_sent_away():
    policy = RetryPolicy()
    waits = [policy.delay(0, random.Random(seed), retry_after=10.0) for seed in range(200)]
    assert all(10.0 <= w <= 11.0 for w in waits)
    assert max(waits) - min(waits) > 0.8  # spread over (nearly) the whole second, not in lockstep
    assert len({round(w, 3) for w in waits}) > 150


POST_URL = f"{API}/v1/experiments/e/clients"


def test_a_post_still_running_on_the_server_is_sent_again_with_its_key_after_the_hint(transport, http, fake_time):
    http.post(POST_URL, status=409, json=error_body("IDEMPOTENCY_IN_PROGRESS", "running", retry_after_seconds=2))
    http.post(POST_URL, status=201, json={"client_id": "c1"})

    assert transport.call_json("POST", "experiments", "e", "clients", json={}) == {"client_id": "c1"}

    first, again = (c.request.headers["Idempotency-Key"] for c in http.calls)
    assert first == again
    [slept] = fake_time.sleeps
    assert 2.0 <= slept <= 2.2


@pytest.mark.parametrize("body", [error_body("ALREADY_SUBMITTED"), {"error": "x"}, ["no"], None])
def test_any_other_409_is_not_retried(transport, http, fake_time, body):
    if body is None:
        http.post(POST_URL, status=409, body="not json")
    else:
        http.post(POST_URL, status=409, json=body)

    with pytest.raises(FmaHTTPError) as err:
        transport.call("POST", "experiments", "e", "clients", json={})
    assert err.value.status == 409
    assert len(http.calls) == 1 and fake_time.sleeps == []


@pytest.mark.parametrize(("hint", "expected"), [(None, 1.0), ("soon", 1.0), (True, 1.0), (-3, 1.0), (0.5, 0.5)])
def test_an_in_progress_answer_without_a_usable_hint_waits_a_second(transport, http, fake_time, hint, expected):
    details = {} if hint is None else {"retry_after_seconds": hint}
    http.post(POST_URL, status=409, json=error_body("IDEMPOTENCY_IN_PROGRESS", "running", **details))
    http.post(POST_URL, status=201, json={"client_id": "c1"})

    transport.call("POST", "experiments", "e", "clients", json={})
    [slept] = fake_time.sleeps
    assert expected <= slept <= expected * 1.1


def test_retry_after_accepts_seconds_and_http_dates():
    assert parse_retry_after("2") == 2.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") < 0  # in the past: no wait


def test_every_call_carries_a_timeout_and_the_bearer_token(transport, http):
    http.get(URL, json={})

    transport.call("GET", "experiments", "e")
    request = http.calls[0].request
    assert request.req_kwargs["timeout"] == (5.0, 60.0)
    assert request.headers["Authorization"] == "Bearer tok"


def test_presigned_urls_never_receive_the_bearer_token(transport, http):
    http.get("http://s3.test/obj", body=b"data")

    assert transport.download("http://s3.test/obj") == b"data"
    request = http.calls[0].request
    assert "Authorization" not in request.headers
    assert request.req_kwargs["timeout"] == (5.0, 60.0)


def test_ids_are_percent_encoded_and_a_v1_suffix_on_the_url_is_tolerated():
    transport = Transport(f"{API}/v1/", "tok")
    assert transport.api_url("experiments", "a/b c") == f"{API}/v1/experiments/a%2Fb%20c"


def test_an_injected_session_is_used(http):
    session = requests.Session()
    session.headers["X-Trace"] = "t1"
    http.get(URL, json={})

    Transport(API, "tok", session=session).call("GET", "experiments", "e")
    assert http.calls[0].request.headers["X-Trace"] == "t1"
