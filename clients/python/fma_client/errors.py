"""Exceptions raised by the SDK.

HTTP failures map from status to one class (the hvac pattern), so callers catch the case they
can handle (`except Conflict`) and still reach method, URL, server code and message for logs.
Everything the SDK raises on purpose derives from `FmaError`.
"""

from __future__ import annotations

import json
import re
from typing import Any

import requests


class FmaError(Exception):
    """Base class of every error raised by the SDK on purpose."""


class FmaHTTPError(FmaError):
    """A response with a status the call did not expect.

    `code` is the server's machine-readable code (`ROUND_CLOSED`, S3's `AccessDenied`), or None
    when the body carried none (a proxy's HTML page, an empty 502).
    """

    def __init__(
        self,
        method: str,
        url: str,
        status: int,
        code: str | None,
        message: str,
        details: dict[str, Any] | None = None,
        request_id: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.method = method
        self.url = url
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.request_id = request_id
        self.hint = hint
        label = f"{status} {code}" if code else str(status)
        super().__init__(f"{method} {url} -> {label}: {message}" + (f" ({hint})" if hint else ""))

    def with_hint(self, hint: str) -> FmaHTTPError:
        """The same error (same class and fields) with `hint` telling the user what to do."""
        return type(self)(self.method, self.url, self.status, self.code, self.message, self.details,
                          self.request_id, hint)  # fmt: skip


class BadRequest(FmaHTTPError):
    """400: the request is malformed; retrying the same request cannot succeed."""


class Unauthorized(FmaHTTPError):
    """401: the token is missing, unknown, expired or revoked."""


class Forbidden(FmaHTTPError):
    """403: the token is valid but its role or experiment scope does not allow the call."""


class EnrollmentExhausted(Forbidden):
    """403 ENROLLMENT_EXHAUSTED: the enrollment token registered `max_uses` clients already."""


class NotFound(FmaHTTPError):
    """404: no such experiment, round or model (or not visible to this token)."""


class Conflict(FmaHTTPError):
    """409: the resource is in the wrong state (`ROUND_CLOSED`, `MODEL_NOT_READY` ...)."""


class Gone(FmaHTTPError):
    """410: the resource existed but is no longer usable (an expired enrollment token)."""


class PayloadTooLarge(FmaHTTPError):
    """413: the body exceeds a size limit (direct upload limit or `max_update_bytes`)."""


class Unprocessable(FmaHTTPError):
    """422: the request is well formed but its content is invalid."""


class TooManyRequests(FmaHTTPError):
    """429: throttled; raised only after the retries ran out."""


class ServerError(FmaHTTPError):
    """5xx: the server failed; raised only after the retries ran out."""


class FmaConnectionError(FmaError):
    """The server could not be reached (or timed out) on every attempt.

    `reason` is a short phrase (`connection refused`, `TLS handshake failed`); the message is
    one line that says what to check. The low-level exception is kept in `original` rather
    than chained, so an uncaught error does not print urllib3's internals.
    """

    def __init__(self, message: str, *, method: str = "", url: str = "", reason: str = "",
                 original: BaseException | None = None) -> None:  # fmt: skip
        self.method, self.url, self.reason, self.original = method, url, reason, original
        super().__init__(message)


class TrainResultError(FmaError, TypeError, ValueError):
    """The training function returned something other than `(weights, num_examples, metrics)`.

    A TypeError and a ValueError at once, so code that caught either before keeps working.
    """


class Timeout(FmaError, TimeoutError):
    """A wait (round published, update validated, experiment running) exceeded its timeout."""


class IntegrityError(FmaError):
    """Downloaded bytes do not match the sha256 the server announced."""


class UpdateRejected(FmaError):
    """The server refused an update: `status` is REJECTED (invalid), LATE (after the seal) or
    FAILED (the server could not ingest it, a fault on its side; it may be sent again)."""

    def __init__(self, round: int, status: str, reason: str | None, update: dict[str, Any]):
        self.round = round
        self.status = status
        self.reason = reason
        self.update = update
        super().__init__(f"update for round {round} is {status}: {reason or 'no reason given'}")


class RoundFailed(FmaError):
    """The round ended in state FAILED (aggregation retries ran out, or its deadline failed)."""

    def __init__(self, round: int, reason: str | None, detail: dict[str, Any]):
        self.round = round
        self.reason = reason
        self.detail = detail
        super().__init__(f"round {round} FAILED: {reason or 'no reason given'}")


class ExperimentFailed(FmaError):
    """The experiment reached FAILED (for instance, its initial model was invalid)."""

    def __init__(self, experiment: dict[str, Any]):
        self.experiment = experiment
        reason = experiment.get("reason") or "no reason given"
        super().__init__(f"experiment {experiment.get('id')} FAILED: {reason}")


_BY_STATUS: dict[int, type[FmaHTTPError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    410: Gone,
    413: PayloadTooLarge,
    422: Unprocessable,
    429: TooManyRequests,
}

#: Codes that have a class of their own (a subclass of the status's class).
_BY_CODE: dict[str, type[FmaHTTPError]] = {"ENROLLMENT_EXHAUSTED": EnrollmentExhausted}

#: What a user should do about a code, appended to the message.
HINTS: dict[str, str] = {
    "ENROLLMENT_EXHAUSTED": "max_uses reached: this enrollment token has registered all the clients it allows; "
    "ask the experiment's developer for a new one (Developer.enrollment_token)",
    "EXPERIMENT_NOT_FOUND": "check the experiment id: no experiment with this id is visible to this token",
    "WRONG_EXPERIMENT": "check the experiment id: this token was issued for another experiment",
    "TOKEN_REVOKED": "this client was revoked by the experiment's developer; it does not register again by itself",
    "CLIENT_REVOKED": "this client was revoked by the experiment's developer; it does not register again by itself",
}

_XML_CODE = re.compile(r"<Code>([^<]*)</Code>")
_XML_MESSAGE = re.compile(r"<Message>([^<]*)</Message>")


def error_class(status: int) -> type[FmaHTTPError]:
    """The exception class for an HTTP status (FmaHTTPError for statuses without their own)."""
    if status >= 500:
        return ServerError
    return _BY_STATUS.get(status, FmaHTTPError)


def from_response(response: requests.Response) -> FmaHTTPError:
    """Build the exception for a failed response, reading FMA's JSON, API Gateway's or S3's."""
    code, message, details = _parse_body(response)
    request = response.request
    cls = _BY_CODE.get(code or "", error_class(response.status_code))
    if not issubclass(cls, error_class(response.status_code)):  # a code under an unexpected status
        cls = error_class(response.status_code)
    return cls(
        method=(request.method or "?") if request is not None else "?",
        url=response.url or (request.url if request is not None else "") or "",
        status=response.status_code,
        code=code,
        message=message or response.reason or "no message",
        details=details,
        request_id=response.headers.get("x-amzn-RequestId") or response.headers.get("x-amz-request-id"),
        hint=HINTS.get(code or ""),
    )


def _parse_body(response: requests.Response) -> tuple[str | None, str, dict[str, Any]]:
    text = response.text or ""
    try:
        body = json.loads(text)
    except ValueError:
        body = None
    if isinstance(body, dict):
        error = body.get("error")
        if isinstance(error, dict):  # FMA: {"error": {"code", "message", "details"}}
            details, code = error.get("details"), error.get("code")
            return (code if isinstance(code, str) else None, str(error.get("message", "")),
                    details if isinstance(details, dict) else {})  # fmt: skip
        if "message" in body:  # API Gateway: {"message": "Unauthorized"}
            return None, str(body["message"]), {}
    code = _XML_CODE.search(text)  # S3 (presigned URLs)
    if code:
        message = _XML_MESSAGE.search(text)
        return code.group(1), message.group(1) if message else "", {}
    return None, text.strip()[:200], {}


class ExperimentEnded(FmaError):
    """The experiment was STOPPED, FAILED or COMPLETED while the caller waited on a round."""

    def __init__(self, experiment_id: str, status: str):
        self.experiment_id = experiment_id
        self.status = status
        super().__init__(f"experiment {experiment_id} is {status}")
