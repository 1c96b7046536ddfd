"""Helpers shared by the repository modules: cursors, transactions with contention retries."""

from __future__ import annotations

import base64
import functools
import json
from collections.abc import Callable, Mapping
from typing import Any

from pynamodb.connection import Connection
from pynamodb.exceptions import TransactWriteError
from pynamodb.transactions import TransactWrite

from fma.adapters import dynamo_retry
from fma.adapters.dynamo_models import TableSchema
from fma.adapters.dynamo_retry import WriteContended, cancellation_codes, contended, retry_contended
from fma.domain import strict_json
from fma.domain.errors import InvalidInput
from fma.domain.states import allowed

CONDITION_FAILED = "ConditionalCheckFailed"


def encode_cursor(key: dict[str, Any] | None) -> str | None:
    if not key:
        return None
    return base64.urlsafe_b64encode(json.dumps(key, sort_keys=True).encode()).decode()


MAX_CURSOR_CHARS = 4096
MAX_KEY_VALUE_BYTES = 1024


def decode_cursor(cursor: str | None, shape: Mapping[str, str]) -> dict[str, Any] | None:
    """Cursors are opaque to callers; anything but one this query could have written is a 400.

    `shape` names every key attribute the cursor must have and no other, each with the value it
    must equal or, ending in `*`, the prefix it must start with. So a cursor with unknown keys,
    another owner's or experiment's key, or values DynamoDB would refuse never reaches a query.
    """
    if not cursor:
        return None
    try:
        if len(cursor) > MAX_CURSOR_CHARS:
            raise ValueError("cursor too long")
        key = strict_json.loads(base64.urlsafe_b64decode(cursor.encode("ascii")))
    except (ValueError, TypeError):
        raise InvalidInput("cursor is not valid", code="INVALID_CURSOR", details={"field": "cursor"}) from None
    if not isinstance(key, dict) or set(key) != set(shape) or not all(
        _cursor_value_fits(key[name], expected) for name, expected in shape.items()
    ):
        raise InvalidInput("cursor is not valid", code="INVALID_CURSOR", details={"field": "cursor"})
    return key


def _cursor_value_fits(value: Any, expected: str) -> bool:
    if not isinstance(value, dict) or set(value) != {"S"} or not isinstance(value["S"], str):
        return False
    text = value["S"]
    if not 0 < len(text.encode("utf-8")) <= MAX_KEY_VALUE_BYTES:
        return False
    return text.startswith(expected[:-1]) if expected.endswith("*") else text == expected


def connection() -> Connection:
    """One connection per endpoint and process: building a botocore client costs milliseconds."""
    meta = TableSchema.Meta
    return _connection(meta.region, meta.host, meta.max_retry_attempts)


@functools.cache
def _connection(region: str, host: str | None, max_retry_attempts: int) -> Connection:
    return Connection(region=region, host=host, max_retry_attempts=max_retry_attempts)


def transact(build: Callable[[TransactWrite], None], raise_when_contended: bool = False) -> list[str | None]:
    """Run a transaction; one cancelled by contention alone is retried (dynamo_retry: bounded,
    jittered, inside this invocation).

    Returns [] on success, else the cancellation codes per item (None where that item was fine),
    so callers can tell *which* condition failed. When contention outlasts the retries: those
    codes, or with `raise_when_contended` a WriteContended (for a caller to whom a refusal must
    mean a failed condition, not a busy item: ingest's writes, whose record then goes back to SQS).
    """
    def attempt() -> None:
        with TransactWrite(connection=connection()) as t:
            build(t)

    try:
        retry_contended(attempt)
        return []
    except TransactWriteError as exc:
        codes = cancellation_codes(exc)
        if not codes:
            raise
        if raise_when_contended and contended(codes):
            raise WriteContended(codes, dynamo_retry.POLICY.attempts) from exc
        return codes


def failed(codes: list[str | None], index: int) -> bool:
    return len(codes) > index and codes[index] == CONDITION_FAILED


def state_in(attribute: Any, write: str) -> Any:
    """The pynamodb condition that `attribute` (a status or state) is one of the states the one
    state table allows for `write` (a key of fma.domain.states.WRITES)."""
    return attribute.is_in(*sorted(str(s) for s in allowed(write)))
