"""One HTTP layer for the API and for presigned S3 URLs.

Why here and not in each call: every request needs the same timeout, retry policy and error
mapping, and presigned URLs must never carry the bearer token (S3 refuses a request with two
authentication mechanisms, and the token must not leak to another host).

Retries are safe because of what is retried: GET, PUT and PATCH are idempotent, and every POST
carries an `Idempotency-Key` (one fresh UUID per logical call, the same on each of its
retries) that the server uses to answer a repeat with the first result. A POST without a key
is never retried.
"""

from __future__ import annotations

import logging
import random
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import quote

import requests

from fma_client._retry import (
    RetryPolicy,
    describe_connection_error,
    in_progress_hint,
    parse_retry_after,
    unreachable_message,
)
from fma_client._version import __version__
from fma_client.errors import FmaConnectionError, from_response

__all__ = ["DEFAULT_TIMEOUT", "RetryPolicy", "TimeoutSpec", "Transport", "base_url", "parse_retry_after"]

log = logging.getLogger("fma_client")

TimeoutSpec = float | tuple[float, float]
DEFAULT_TIMEOUT: TimeoutSpec = (5.0, 60.0)
IDEMPOTENCY_HEADER = "Idempotency-Key"
_RETRY_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


def base_url(url: str) -> str:
    """The server root: `http://host:port`, `http://host:port/` and `http://host:port/v1` are one."""
    base = url.strip().rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


class Transport:
    """Authenticated calls to `{url}/v1/...` plus unauthenticated calls to presigned URLs."""

    def __init__(
        self,
        url: str,
        token: str | None = None,
        *,
        session: requests.Session | None = None,
        timeout: TimeoutSpec = DEFAULT_TIMEOUT,
        retry: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
    ) -> None:
        self.base_url = base_url(url)
        self.token = token
        self.session = session or requests.Session()
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.clock = clock
        self.rng = rng or random.Random()
        self.contacted = False  # set by the first response: before it, unreachable fails fast
        self.poll_hint: float | None = None  # the last response's Retry-After, in seconds

    def api_url(self, *segments: str | int) -> str:
        """`{base}/v1/a/b` with each segment percent-encoded (ids cannot inject paths)."""
        return "/".join([self.base_url, "v1", *(quote(str(s), safe="") for s in segments)])

    def call(
        self,
        method: str,
        *segments: str | int,
        json: Any = None,
        data: bytes | None = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        token: str | None = None,
        ok: tuple[int, ...] = (200, 201, 202, 204),
    ) -> requests.Response:
        """Call the API with the bearer token (or `token`); raise unless the status is in `ok`.

        A POST gets a fresh `Idempotency-Key` unless `headers` brings one (a caller that
        repeats a logical call itself passes the same key again).
        """
        auth = token or self.token
        hdrs = {"Accept": "application/json", **(headers or {})}
        if auth:
            hdrs["Authorization"] = f"Bearer {auth}"
        if data is not None:
            hdrs.setdefault("Content-Type", "application/octet-stream")
        if method.upper() == "POST":
            hdrs.setdefault(IDEMPOTENCY_HEADER, str(uuid.uuid4()))
        return self.send(
            method, self.api_url(*segments), ok=ok,
            json=json, data=data, params=params, headers=hdrs,
        )  # fmt: skip

    def call_json(self, method: str, *segments: str | int, **kwargs: Any) -> Any:
        """`call` and decode the JSON body (None for an empty body such as a 304)."""
        response = self.call(method, *segments, **kwargs)
        return response.json() if response.content else None

    def pages(self, key: str, *segments: str | int, limit: int = 100) -> Iterator[dict[str, Any]]:
        """Every item of a cursor-paginated list, following `next_cursor` until it is null."""
        cursor: str | None = None
        while True:
            params: dict[str, Any] = {"limit": limit}
            if cursor:
                params["cursor"] = cursor
            body = self.call_json("GET", *segments, params=params)
            yield from body.get(key, [])
            cursor = body.get("next_cursor")
            if not cursor:
                return

    def download(self, url: str) -> bytes:
        """GET a presigned URL (no bearer token) and return the body."""
        return self.send("GET", url, ok=(200,)).content

    def presigned_post(self, url: str, fields: dict[str, str], data: bytes) -> None:
        """Multipart POST to S3: the policy fields first, the file last (S3 requires it).

        It carries an Idempotency-Key like every POST: the grant names one object and size,
        so writing it twice stores the same bytes, and the retry rule stays one rule.
        """
        files = {"file": ("model.safetensors", data, "application/octet-stream")}
        headers = {IDEMPOTENCY_HEADER: str(uuid.uuid4())}
        self.send("POST", url, ok=(200, 201, 204), data=fields, files=files, headers=headers)

    def send(self, method: str, url: str, *, ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        """Send with the retry policy; raise the mapped FmaHTTPError or FmaConnectionError."""
        kwargs.setdefault("headers", {})
        kwargs["headers"].setdefault("User-Agent", f"fma-client/{__version__}")
        retryable = method.upper() != "POST" or IDEMPOTENCY_HEADER in kwargs["headers"]
        started, attempt, warned = self.clock(), 0, False
        while True:
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except _RETRY_EXCEPTIONS as exc:
                reason, permanent = describe_connection_error(exc, self.timeout)
                wait = self._next_wait(attempt, started, None, connection=True)
                if permanent or not retryable or wait is None:
                    message = unreachable_message(method, url, self.base_url, reason, attempt + 1, permanent)
                    raise FmaConnectionError(message, method=method, url=url, reason=reason, original=exc) from None
                if self.contacted and not warned:  # an outage of a server we reached: say so once
                    log.warning("FMA at %s: %s; retrying for up to %.0f s", self.base_url, reason,
                                self.retry.max_elapsed)  # fmt: skip
                    warned = True
                log.info("%s %s: %s; retry %d in %.2f s", method, url, reason, attempt + 1, wait)
            else:
                self.contacted = True
                status = response.status_code
                self.poll_hint = parse_retry_after(response.headers.get("Retry-After"))
                if status in ok:
                    return response
                transient = status == 429 or status >= 500
                hint = self.poll_hint
                if status == 409 and retryable and (in_progress := in_progress_hint(response)) is not None:
                    transient, hint = True, self.poll_hint if self.poll_hint is not None else in_progress
                wait = self._next_wait(attempt, started, hint) if transient and retryable else None
                if wait is None:
                    raise from_response(response)
                log.info("%s %s -> %d; retry %d in %.2f s", method, url, status, attempt + 1, wait)
            self.sleep(wait)
            attempt += 1

    def _next_wait(self, attempt: int, started: float, retry_after: float | None,
                   connection: bool = False) -> float | None:  # fmt: skip
        """Seconds before retry `attempt + 1`, or None when the policy's budget is spent."""
        if attempt + 1 >= max(1, self.retry.attempts):
            return None
        wait = self.retry.delay(attempt, self.rng, retry_after)
        budget = self.retry.max_elapsed
        if connection and not self.contacted:
            budget = min(budget, self.retry.first_contact_elapsed)
        if self.clock() - started + wait > budget:
            return None
        return wait
