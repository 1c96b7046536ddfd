"""The retry policy, and one-line explanations of why a server could not be reached.

The default policy is sized to ride out a restart of local mode (it takes tens of seconds to
come back with its state): up to `max_elapsed` = 90 s of retrying per call, backing off
exponentially from 0.5 s to 8 s with jitter. A server that never answered once gets only
`first_contact_elapsed` = 5 s: a wrong URL or a server that is not running is then reported
within seconds instead of after a minute and a half.
"""

from __future__ import annotations

import email.utils
import errno
import random
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter on 429, 5xx and connection errors (never other 4xx).

    `attempts` counts the first try and `max_elapsed` bounds the seconds spent retrying one
    call; the first to run out ends it. Each wait is drawn from [d/2, d] where d doubles from
    `base` up to `cap` ("equal jitter": clients spread out, yet the waits add up to enough
    time to outlast a restart). A `Retry-After` header wins over the computed wait, capped by
    `max_retry_after` so a misbehaving proxy cannot park a client for an hour, and is never
    shortened: each client waits the hint plus up to `hint_spread` of it, so the clients one
    throttle sent away together do not all come back in the same second. Connection errors
    before the server's first answer are retried for `first_contact_elapsed` seconds.
    """

    attempts: int = 30
    base: float = 0.5
    cap: float = 8.0
    max_elapsed: float = 90.0
    first_contact_elapsed: float = 5.0
    max_retry_after: float = 60.0
    hint_spread: float = 0.1

    def delay(self, attempt: int, rng: random.Random, retry_after: float | None = None) -> float:
        """Seconds to wait before retry number `attempt` (0 for the first retry)."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.max_retry_after) * rng.uniform(1.0, 1.0 + self.hint_spread)
        ceiling = min(self.cap, self.base * 2**attempt)
        return ceiling / 2 + rng.uniform(0.0, ceiling / 2)


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or HTTP date); None if absent or bad."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        pass
    else:
        return seconds if seconds == seconds and seconds != float("inf") else None  # NaN, inf: ignored
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    return when.timestamp() - time.time()


def in_progress_hint(response: requests.Response) -> float | None:
    """Seconds to wait before repeating a request whose first copy the server is still running
    (409 `IDEMPOTENCY_IN_PROGRESS`, hint in `details.retry_after_seconds`, default 1); None for
    any other answer. Repeating it with the same Idempotency-Key then gets the first one's result."""
    if response.status_code != 409:
        return None
    try:
        error = response.json().get("error", {})
    except (ValueError, AttributeError):
        return None
    if not isinstance(error, dict) or error.get("code") != "IDEMPOTENCY_IN_PROGRESS":
        return None
    details = error.get("details")
    hint = details.get("retry_after_seconds") if isinstance(details, dict) else None
    if isinstance(hint, bool) or not isinstance(hint, int | float) or not 0 <= hint < float("inf"):
        return 1.0
    return float(hint)


def describe_connection_error(exc: BaseException, timeout: Any = None) -> tuple[str, bool]:
    """`(short reason, permanent)` for a requests exception; permanent ones are not retried.

    A TLS failure is permanent: the same handshake with the same server fails the same way
    (typically `https://` against a plain-http server such as local mode).
    """
    if isinstance(exc, requests.exceptions.SSLError):
        text = str(exc).lower()
        if "wrong version number" in text or "record layer" in text or "unknown protocol" in text:
            return "TLS handshake failed: the server answered in plain HTTP, not HTTPS", True
        if "certificate" in text:
            return "TLS certificate verification failed", True
        return "TLS handshake failed", True
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connecting timed out", False
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return f"no response within the read timeout ({_read_timeout(timeout)} s)", False
    if _has_errno(exc, errno.ECONNREFUSED) or "connection refused" in str(exc).lower():
        return "connection refused", False
    text = str(exc).lower()
    if "name or service not known" in text or "nodename nor servname" in text or "failed to resolve" in text:
        return "host name not found", False
    return "connection lost", False


def unreachable_message(method: str, url: str, base: str, reason: str, attempts: int, permanent: bool) -> str:
    """One line that says what failed and what to check."""
    tried = "" if permanent else f" after {attempts} attempt{'s' if attempts != 1 else ''}"
    parts = urlsplit(base)
    if permanent and "plain HTTP" in reason:
        plain = "http://" + parts.netloc + parts.path
        return f"cannot reach FMA at {base} ({reason}): use {plain} (local mode serves plain HTTP)"
    if parts.hostname in ("127.0.0.1", "localhost", "::1") or (parts.hostname or "").startswith("127."):
        check = f"is `fma local up` running at {base}?"
    else:
        check = f"is {base} the FMA API's URL, and is it reachable from here?"
    return f"cannot reach FMA at {base} ({reason}{tried}; {method} {url}): {check}"


def _has_errno(exc: BaseException | None, code: int) -> bool:
    """Whether `code` appears on any exception in the cause/context chain or in its args."""
    seen: set[int] = set()
    stack: list[Any] = [exc]
    while stack:
        item = stack.pop()
        if not isinstance(item, BaseException) or id(item) in seen:
            continue
        seen.add(id(item))
        if getattr(item, "errno", None) == code:
            return True
        stack.extend([item.__cause__, item.__context__, getattr(item, "reason", None), *item.args])
    return False


def _read_timeout(timeout: Any) -> str:
    value = timeout[1] if isinstance(timeout, tuple) else timeout
    return f"{value:g}" if isinstance(value, int | float) else "?"
