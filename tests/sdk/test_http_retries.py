"""Retries: backoff with jitter on 429, 5xx and connection errors only; never on other 4xx."""

from __future__ import annotations

import random

import pytest
import requests
import responses

from fma_client import BadRequest, FmaConnectionError, RetryPolicy, ServerError, TooManyRequests
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
    assert fake_time.sleeps == [3.0]


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
    assert policy.delay(0, Top(), retry_after=600.0) == 10.0


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
