"""The domain's error tree; one handler per base class maps it to HTTP (functions/api/errors.py)."""

from __future__ import annotations

from typing import Any


class FmaError(Exception):
    """Base of every error a caller can act on: a stable machine code plus a human message."""

    status = 400
    default_code = "BAD_REQUEST"

    def __init__(self, message: str, *, code: str | None = None, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.message = message
        self.code = code or self.default_code
        self.details = details or {}


class InvalidInput(FmaError):
    status = 400
    default_code = "INVALID_INPUT"


class Unprocessable(FmaError):
    status = 422
    default_code = "UNPROCESSABLE"


class Unauthorized(FmaError):
    status = 401
    default_code = "UNAUTHORIZED"


class Forbidden(FmaError):
    status = 403
    default_code = "FORBIDDEN"


class NotFound(FmaError):
    status = 404
    default_code = "NOT_FOUND"


class Conflict(FmaError):
    status = 409
    default_code = "CONFLICT"


class Gone(FmaError):
    status = 410
    default_code = "GONE"


class PayloadTooLarge(FmaError):
    status = 413
    default_code = "PAYLOAD_TOO_LARGE"


class UpdateRejected(Exception):
    """An update file failed validation; `code` and `message` are shown to its client."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

    @property
    def reason(self) -> str:
        return f"{self.code}: {self.message}"
