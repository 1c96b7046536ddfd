"""Strict, bounded JSON for untrusted request bodies, and strict JSON out.

`json.loads` alone accepts what a hostile client sends to make a handler raise or to poison
what others read: NaN and Infinity (invalid JSON for every other reader), `1e400` (a float
that overflows to inf), 400-digit integers (DynamoDB and numpy cannot hold them), 100,000
nested arrays (RecursionError), duplicate keys (two parsers may keep different values) and
lone surrogates (`"\\ud800"`, which no UTF-8 encoder accepts when the value is stored).
`loads` refuses each of these with a `JsonRejected` carrying a stable code; it never raises
anything else. `dumps` writes strict JSON only: a non-finite float becomes null.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_DEPTH = 32
#: integers must fit a signed 64-bit value: what DynamoDB, numpy and every JSON reader can hold.
INT_MIN, INT_MAX = -(2**63), 2**63 - 1
MAX_INT_DIGITS = 19


class JsonRejected(ValueError):
    """A request body that is not strict JSON; `code` names the rule it broke."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message


class _OutOfRange:
    """Stands in for a number json cannot hold while parsing: the parser's hooks do not know
    where in the document they are, the walk afterwards does, so the error names the field."""

    __slots__ = ("reason",)

    def __init__(self, reason: str):
        self.reason = reason


def _parse_int(text: str) -> int | _OutOfRange:
    if len(text.lstrip("-")) > MAX_INT_DIGITS:
        return _OutOfRange(f"integer of {len(text)} characters is out of range (signed 64-bit)")
    value = int(text)
    if not INT_MIN <= value <= INT_MAX:
        return _OutOfRange("integer is outside the signed 64-bit range")
    return value


def _parse_float(text: str) -> float | _OutOfRange:
    value = float(text)
    if not math.isfinite(value):
        return _OutOfRange("number overflows a 64-bit float")
    return value


def _parse_constant(name: str) -> Any:
    raise JsonRejected("NON_FINITE_NUMBER", f"{name} is not valid JSON (numbers must be finite)")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise JsonRejected("DUPLICATE_KEY", "an object has a duplicate key")
        out[key] = value
    return out


def _check_strings_and_depth(value: Any) -> None:
    """Iterative walk (no recursion to exhaust): depth bound, UTF-8-encodable strings and
    numbers in range, naming the path of an out-of-range number (`strategy.params.x`)."""
    stack: list[tuple[Any, int, str]] = [(value, 1, "")]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, str):
            _check_text(node)
            continue
        if isinstance(node, _OutOfRange):
            raise JsonRejected("NUMBER_OUT_OF_RANGE", f"{path or 'body'}: {node.reason}")
        if not isinstance(node, (dict, list)):
            continue
        if depth > MAX_DEPTH:
            raise JsonRejected("JSON_TOO_DEEP", f"JSON nests deeper than {MAX_DEPTH} levels")
        if isinstance(node, dict):
            for key, item in node.items():
                _check_text(key)
                stack.append((item, depth + 1, f"{path}.{key}" if path else key))
        else:
            stack.extend((item, depth + 1, f"{path}[{i}]") for i, item in enumerate(node))


def _check_text(text: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise JsonRejected("INVALID_UTF8", "a string holds a lone surrogate escape") from None


def loads(data: bytes | str) -> Any:
    """Parse a request body; raises only `JsonRejected` (codes: MALFORMED_JSON, INVALID_UTF8,
    JSON_TOO_DEEP, NON_FINITE_NUMBER, NUMBER_OUT_OF_RANGE, DUPLICATE_KEY)."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            raise JsonRejected("INVALID_UTF8", "body is not valid UTF-8") from None
    else:
        text = data
    try:
        value = json.loads(text, parse_int=_parse_int, parse_float=_parse_float,
                           parse_constant=_parse_constant, object_pairs_hook=_object)
    except JsonRejected:
        raise
    except RecursionError:
        raise JsonRejected("JSON_TOO_DEEP", f"JSON nests deeper than {MAX_DEPTH} levels") from None
    except (ValueError, TypeError):
        raise JsonRejected("MALFORMED_JSON", "body is not valid JSON") from None
    _check_strings_and_depth(value)
    return value


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


def dumps(value: Any, **kwargs: Any) -> str:
    """Strict JSON (allow_nan=False); a non-finite float left in stored data is written as null
    rather than as NaN, which would make the whole response unreadable to every JSON parser."""
    kwargs.setdefault("separators", (",", ":"))
    try:
        return json.dumps(value, allow_nan=False, **kwargs)
    except ValueError:
        return json.dumps(_finite(value), allow_nan=False, **kwargs)
