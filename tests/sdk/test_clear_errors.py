"""Errors a user meets first, each one line that says what to do: an unreachable server, https
against plain http, a used-up enrollment token, a wrong experiment id."""

from __future__ import annotations

import logging
import random
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from fma_client import Client, EnrollmentExhausted, FmaConnectionError, Forbidden, NotFound, Unauthorized

from .conftest import API, EXP, FakeTime, error_body


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class _Counting(ThreadingHTTPServer):
    daemon_threads = True
    connections = 0

    def process_request(self, request, client_address):
        self.connections += 1
        super().process_request(request, client_address)


class _Plain(BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def plain_http_server():
    server = _Counting(("127.0.0.1", 0), _Plain)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def real_client(url: str, fake_time: FakeTime, **kwargs) -> Client:
    return Client(url, EXP, token="t", sleep=fake_time.sleep, clock=fake_time.clock, rng=random.Random(0), **kwargs)


def test_connection_refused_is_one_line_naming_local_mode_without_urllib3_noise(fake_time, caplog, capfd):
    url = f"http://127.0.0.1:{closed_port()}"
    caplog.set_level(logging.WARNING)

    with pytest.raises(FmaConnectionError) as err:
        real_client(url, fake_time).get_model()
    message = str(err.value)
    assert message.startswith(f"cannot reach FMA at {url} (connection refused after ")
    assert message.endswith(f"is `fma local up` running at {url}?")
    assert "\n" not in message and "urllib3" not in message and "HTTPConnectionPool" not in message
    assert err.value.reason == "connection refused" and err.value.original is not None
    assert err.value.__cause__ is None and err.value.__suppress_context__  # no chained urllib3 traceback
    assert caplog.records == [] and capfd.readouterr().err == ""  # nothing printed while it retried
    assert 0 < sum(fake_time.sleeps) <= 5.0  # a server never reached fails within seconds


def test_a_remote_url_that_refuses_asks_whether_it_is_the_right_url():
    from fma_client._retry import unreachable_message

    message = unreachable_message("GET", "https://api.example/v1/x", "https://api.example", "connection refused", 3,
                                  False)  # fmt: skip
    assert message == ("cannot reach FMA at https://api.example (connection refused after 3 attempts; "
                       "GET https://api.example/v1/x): is https://api.example the FMA API's URL, and is it "
                       "reachable from here?")  # fmt: skip


def test_https_against_a_plain_http_server_fails_at_once_and_says_use_http(plain_http_server, fake_time):
    port = plain_http_server.server_address[1]

    with pytest.raises(FmaConnectionError) as err:
        real_client(f"https://127.0.0.1:{port}", fake_time).get_model()
    assert str(err.value) == (
        f"cannot reach FMA at https://127.0.0.1:{port} (TLS handshake failed: the server answered in plain HTTP, "
        f"not HTTPS): use http://127.0.0.1:{port} (local mode serves plain HTTP)"
    )
    assert plain_http_server.connections == 1 and fake_time.sleeps == []  # no pointless retries


def test_an_exhausted_enrollment_token_says_max_uses_reached(http, fake_time):
    http.post(f"{API}/v1/experiments/{EXP}/clients", status=403,
              json=error_body("ENROLLMENT_EXHAUSTED", "enrollment token is used up"))  # fmt: skip

    with pytest.raises(EnrollmentExhausted) as err:
        Client(API, EXP, enrollment_token="enroll", sleep=fake_time.sleep).get_model()
    assert isinstance(err.value, Forbidden)
    assert str(err.value) == (
        f"POST {API}/v1/experiments/{EXP}/clients -> 403 ENROLLMENT_EXHAUSTED: enrollment token is used up "
        "(max_uses reached: this enrollment token has registered all the clients it allows; ask the "
        "experiment's developer for a new one (Developer.enrollment_token))"
    )
    assert len(http.calls) == 1


def test_an_enrollment_token_refused_by_the_authorizer_explains_the_possible_reasons(http, fake_time):
    http.post(f"{API}/v1/experiments/{EXP}/clients", status=401, json={"message": "Unauthorized"})

    with pytest.raises(Unauthorized, match=r"401: Unauthorized \(the enrollment token was refused: it may have "
                                           r"expired, been revoked, reached its max_uses"):  # fmt: skip
        Client(API, EXP, enrollment_token="enroll", sleep=fake_time.sleep).register()


def test_a_wrong_experiment_id_is_not_found_with_a_hint(http, fake_time):
    http.get(f"{API}/v1/experiments/nope/model", status=404,
             json=error_body("EXPERIMENT_NOT_FOUND", "experiment nope not found"))  # fmt: skip

    with pytest.raises(NotFound) as err:
        Client(API, "nope", token="t", sleep=fake_time.sleep).get_model()
    assert str(err.value) == (
        f"GET {API}/v1/experiments/nope/model -> 404 EXPERIMENT_NOT_FOUND: experiment nope not found "
        "(check the experiment id: no experiment with this id is visible to this token)"
    )


def test_a_non_string_error_code_from_a_proxy_does_not_break_the_mapping(http):
    http.get(f"{API}/v1/experiments/{EXP}/model", status=403, json={"error": {"code": ["x"], "message": "m"}})

    with pytest.raises(Forbidden) as err:
        Client(API, EXP, token="t").get_model()
    assert err.value.code is None


def test_a_client_token_used_with_another_experiment_id_says_check_the_id(http):
    http.get(f"{API}/v1/experiments/nope/model", status=403,
             json=error_body("WRONG_EXPERIMENT", "this token belongs to another experiment"))  # fmt: skip

    with pytest.raises(Forbidden, match=r"another experiment \(check the experiment id: this token was issued for"):
        Client(API, "nope", token="t").get_model()
