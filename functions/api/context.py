"""Request helpers: the caller resolved by the authorizer, JSON and binary bodies, path ints."""

from __future__ import annotations

import base64
import re
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayRestResolver

from fma.domain import strict_json
from fma.domain.auth import Principal, Role
from fma.domain.errors import InvalidInput, PayloadTooLarge, Unauthorized

MAX_JSON_BYTES = 256 << 10
#: ASCII digits only: `str.isdigit` accepts "²" (which `int` refuses) and Arabic-Indic digits.
ROUND = re.compile(r"[0-9]{1,8}")


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
    if not isinstance(body, str):
        return body
    try:
        return body.encode("utf-8")
    except UnicodeEncodeError:
        raise InvalidInput("body is not valid UTF-8", code="INVALID_UTF8") from None


def json_body(app: APIGatewayRestResolver) -> Any:
    """The request's JSON, parsed strictly (fma.domain.strict_json): every refusal is a 400."""
    data = raw_body(app)
    if len(data) > MAX_JSON_BYTES:
        raise PayloadTooLarge(f"JSON body exceeds {MAX_JSON_BYTES} bytes")
    if not data.strip():
        return None
    try:
        return strict_json.loads(data)
    except strict_json.JsonRejected as exc:
        raise InvalidInput(exc.message, code=exc.code) from None


def round_number(raw: str) -> int:
    if not ROUND.fullmatch(raw):
        raise InvalidInput("round must be a non-negative integer of at most 8 ASCII digits", code="INVALID_ROUND",
                           details={"field": "n"})
    return int(raw)
