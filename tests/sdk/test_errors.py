"""Error mapping: each status becomes one class carrying method, URL, code and message."""

from __future__ import annotations

import pytest

from fma_client import (
    BadRequest,
    Conflict,
    FmaHTTPError,
    Forbidden,
    Gone,
    NotFound,
    PayloadTooLarge,
    RetryPolicy,
    ServerError,
    TooManyRequests,
    Unauthorized,
    Unprocessable,
)
from fma_client._http import Transport

from .conftest import API, error_body

URL = f"{API}/v1/experiments/e/rounds/3/updates"


@pytest.mark.parametrize(
    ("status", "cls"),
    [
        (400, BadRequest), (401, Unauthorized), (403, Forbidden), (404, NotFound),
        (409, Conflict), (410, Gone), (413, PayloadTooLarge), (422, Unprocessable),
        (429, TooManyRequests), (500, ServerError), (502, ServerError), (503, ServerError),
    ],
)  # fmt: skip
def test_each_status_maps_to_its_class_with_method_url_code_and_message(http, status, cls):
    http.put(URL, status=status, json=error_body("SOME_CODE", "why it failed", field="x"))
    transport = Transport(API, "tok", retry=RetryPolicy(attempts=1))

    with pytest.raises(cls) as err:
        transport.call("PUT", "experiments", "e", "rounds", 3, "updates", data=b"x")
    exc = err.value
    assert isinstance(exc, FmaHTTPError)
    assert (exc.method, exc.url, exc.status) == ("PUT", URL, status)
    assert (exc.code, exc.message, exc.details) == ("SOME_CODE", "why it failed", {"field": "x"})
    assert "PUT" in str(exc) and URL in str(exc) and "SOME_CODE" in str(exc)


def test_an_unlisted_status_falls_back_to_the_base_class(http):
    http.get(f"{API}/v1/tokens", status=405, json=error_body("METHOD_NOT_ALLOWED"))

    with pytest.raises(FmaHTTPError) as err:
        Transport(API, "tok").call("GET", "tokens")
    assert type(err.value) is FmaHTTPError and err.value.status == 405


def test_a_non_json_5xx_still_maps_with_no_code(http):
    http.get(f"{API}/v1/tokens", status=502, body="<html>Bad Gateway</html>")

    with pytest.raises(ServerError) as err:
        Transport(API, "tok", retry=RetryPolicy(attempts=1)).call("GET", "tokens")
    assert err.value.code is None and "Bad Gateway" in err.value.message


def test_api_gateway_message_bodies_and_request_ids_are_read(http):
    http.get(
        f"{API}/v1/tokens", status=403, json={"message": "Forbidden"},
        headers={"x-amzn-RequestId": "req-9"},
    )  # fmt: skip

    with pytest.raises(Forbidden) as err:
        Transport(API, "tok").call("GET", "tokens")
    assert (err.value.message, err.value.request_id) == ("Forbidden", "req-9")


def test_s3_xml_errors_on_presigned_urls_keep_the_s3_code(http):
    xml = "<Error><Code>EntityTooLarge</Code><Message>Your proposed upload is too big</Message></Error>"
    http.post("http://s3.test/bucket", status=400, body=xml)

    with pytest.raises(BadRequest) as err:
        Transport(API, "tok").presigned_post("http://s3.test/bucket", {"key": "k"}, b"x")
    assert err.value.code == "EntityTooLarge"
    assert err.value.message == "Your proposed upload is too big"
