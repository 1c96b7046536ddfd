"""Request-body checks shared by the use cases: unknown fields and wrong types are 400s."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from fma.domain.errors import InvalidInput


def listing(values: Iterable[object]) -> str:
    """Values for a message, as a user reads them ("developer, analyst"), never a Python repr
    such as `[<Role.ADMIN: 'admin'>]`."""
    return ", ".join(sorted(str(v) for v in values))


def require_object(body: object, allowed: Iterable[str], required: Iterable[str] = ()) -> dict[str, Any]:
    if body is None:
        body = {}
    if not isinstance(body, Mapping):
        raise InvalidInput("request body must be a JSON object", code="INVALID_BODY")
    unknown = sorted(set(body) - set(allowed))
    if unknown:
        raise InvalidInput(f"unknown field(s): {listing(unknown)}", code="UNKNOWN_FIELD", details={"unknown": unknown})
    missing = [k for k in required if k not in body]
    if missing:
        raise InvalidInput(f"missing field(s): {listing(missing)}", code="MISSING_FIELD", details={"missing": missing})
    return dict(body)


def optional_int(body: Mapping[str, Any], key: str, default: int | None, low: int, high: int) -> int | None:
    """An integer field; absent or null means `default` (so `"max_update_bytes": null` is no 500)."""
    value = body.get(key)
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{key} must be an integer from {low} to {high}", details={"field": key})
    return value


def required_int(body: Mapping[str, Any], key: str, low: int, high: int) -> int:
    """An integer field that must be present and not null."""
    value = optional_int(body, key, None, low, high)
    if value is None:
        raise InvalidInput(f"{key} must be an integer from {low} to {high}", details={"field": key})
    return value


def parse_limit(raw: str | None, default: int = 50, maximum: int = 100) -> int:
    if raw is None:
        return default
    if not (raw.isascii() and raw.isdigit() and len(raw) <= 6):  # int() would also read " 1_0" and non-ASCII digits
        raise InvalidInput("limit must be an integer of ASCII digits", details={"field": "limit"})
    value = int(raw)
    if not 1 <= value <= maximum:
        raise InvalidInput(f"limit must be from 1 to {maximum}", details={"field": "limit"})
    return value


def parse_flag(raw: str | None, name: str) -> bool:
    """A boolean query parameter: `true` or `false` (absent: false)."""
    if raw is None or raw == "false":
        return False
    if raw == "true":
        return True
    raise InvalidInput(f"{name} must be true or false", details={"field": name})
