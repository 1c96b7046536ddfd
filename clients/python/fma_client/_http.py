"""One HTTP layer for the API and for presigned S3 URLs.

Why here and not in each call: every request needs the same timeout, retry policy and error
mapping, and presigned URLs must never carry the bearer token (S3 refuses a request with two
authentication mechanisms, and the token must not leak to another host).
"""

from __future__ import annotations

import email.utils
import logging
import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import requests

from fma_client._version import __version__
from fma_client.errors import FmaConnectionError, from_response

log = logging.getLogger("fma_client")

TimeoutSpec = float | tuple[float, float]
DEFAULT_TIMEOUT: TimeoutSpec = (5.0, 60.0)
_RETRY_EXCEPTIONS = (
    requests.exceptions.ConnectionError,
    requests.exceptions.Timeout,
    requests.exceptions.ChunkedEncodingError,
)


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with full jitter on 429, 5xx and connection errors.

    `attempts` counts the first try: 5 means up to 4 retries. A `Retry-After` header wins over
    the computed delay but is capped by `max_retry_after` so a misbehaving proxy cannot park a
    client for an hour. 4xx other than 429 are never retried: the same request fails the same.
    """

    attempts: int = 5
    base: float = 0.5
    cap: float = 30.0
    max_retry_after: float = 60.0

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after)
        return rng.uniform(0.0, min(self.cap, self.base * 2**attempt))


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        return float(value)
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return when.timestamp() - time.time()


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
        rng: random.Random | None = None,
    ) -> None:
        base = url.rstrip("/")
        self.base_url = base[: -len("/v1")] if base.endswith("/v1") else base
        self.token = token
        self.session = session or requests.Session()
        self.timeout = timeout
        self.retry = retry or RetryPolicy()
        self.sleep = sleep
        self.rng = rng or random.Random()

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
        """Call the API with the bearer token (or `token`); raise unless the status is in `ok`."""
        auth = token or self.token
        hdrs = {"Accept": "application/json", **(headers or {})}
        if auth:
            hdrs["Authorization"] = f"Bearer {auth}"
        if data is not None:
            hdrs.setdefault("Content-Type", "application/octet-stream")
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
        """Multipart POST to S3: the policy fields first, the file last (S3 requires it)."""
        files = {"file": ("model.safetensors", data, "application/octet-stream")}
        self.send("POST", url, ok=(200, 201, 204), data=fields, files=files)

    def send(self, method: str, url: str, *, ok: tuple[int, ...], **kwargs: Any) -> requests.Response:
        """Send with the retry policy; raise the mapped FmaHTTPError or FmaConnectionError."""
        kwargs.setdefault("headers", {})
        kwargs["headers"].setdefault("User-Agent", f"fma-client/{__version__}")
        attempts = max(1, self.retry.attempts)
        for attempt in range(attempts):
            last = attempt == attempts - 1
            try:
                response = self.session.request(method, url, timeout=self.timeout, **kwargs)
            except _RETRY_EXCEPTIONS as exc:
                if last:
                    raise FmaConnectionError(f"{method} {url}: {exc}") from exc
                wait = self.retry.delay(attempt, self.rng)
                log.warning("%s %s failed (%s); retrying in %.2fs", method, url, exc, wait)
                self.sleep(wait)
                continue
            status = response.status_code
            if status in ok:
                return response
            if last or not (status == 429 or status >= 500):
                raise from_response(response)
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            wait = self.retry.delay(attempt, self.rng, retry_after)
            log.warning("%s %s -> %d; retrying in %.2fs", method, url, status, wait)
            self.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover
