"""Request helpers: the caller resolved by the authorizer, JSON and binary bodies, path ints."""

from __future__ import annotations

import base64
import json
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from fma.domain.auth import Principal, Role
from fma.domain.errors import InvalidInput, PayloadTooLarge, Unauthorized

MAX_JSON_BYTES = 256 << 10


def principal(app: APIGatewayRestResolver) -> Principal:
    ctx = (app.current_event.request_context.authorizer.raw_event or {}) if app.current_event else {}
    role, pid = ctx.get("role"), ctx.get("principal_id")
    if not role or not pid:
        raise Unauthorized("missing or invalid token", code="UNAUTHORIZED")
    try:
        role = Role(role)
    except ValueError:
        raise Unauthorized("token has an unknown role", code="UNAUTHORIZED") from None
    return Principal(role, pid, ctx.get("experiment_id") or None, ctx.get("token_hash") or None)


def raw_body(app: APIGatewayRestResolver) -> bytes:
    event = app.current_event
    body = event.body or ""
    if event.is_base64_encoded:
        try:
            return base64.b64decode(body, validate=True)
        except ValueError:
            raise InvalidInput("body is not valid base64", code="INVALID_BODY") from None
    return body.encode("utf-8") if isinstance(body, str) else body


def json_body(app: APIGatewayRestResolver) -> Any:
    data = raw_body(app)
    if len(data) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"JSON body exceeds {MAX_JSON_BYTES} bytes")
    if not data.strip():
        return None
    try:
        return json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise InvalidInput("body is not valid JSON", code="MALFORMED_JSON") from None


def round_number(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 8 or int(raw) < 0:
        raise InvalidInput("round must be a non-negative integer", code="INVALID_ROUND")
    return int(raw)
