"""Property tests of the strict request-body parser: whatever the bytes, only JsonRejected
escapes, and whatever it accepts is strict JSON that every other parser reads the same way."""

from __future__ import annotations

import json
import math

from hypothesis import given, settings
from hypothesis import strategies as st

from fma.domain import strict_json

SCALARS = (st.none() | st.booleans() | st.integers(min_value=-(10**450), max_value=10**450)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text()
           | st.sampled_from(["²", "¹", "\u0661\u0662", "\ud800", "\udfff", "\x00"]))
VALUES = st.recursive(SCALARS, lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                                            max_size=4), max_leaves=30)


def _encoded(value: object) -> bytes:
    return json.dumps(value, allow_nan=True).encode("utf-8", "surrogatepass")


NESTING = st.builds(lambda n, open_, close: open_ * n + close * n, st.integers(1, 3000),
                    st.sampled_from([b"[", b'{"a":[']), st.sampled_from([b"]", b"]}"]))
DUPLICATES = st.builds(lambda k, a, b: b'{"' + k.encode() + b'": ' + a + b', "' + k.encode() + b'": ' + b + b"}",
                       st.sampled_from(["a", "name", "x"]), st.sampled_from([b"1", b"null"]),
                       st.sampled_from([b"2", b'"y"']))
BODIES = st.binary(max_size=200) | VALUES.map(_encoded) | NESTING | DUPLICATES


def _finite_and_bounded(value: object, depth: int = 1) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return strict_json.INT_MIN <= value <= strict_json.INT_MAX
    if isinstance(value, str):
        return not any(0xD800 <= ord(c) <= 0xDFFF for c in value)
    if isinstance(value, list):
        return depth <= strict_json.MAX_DEPTH and all(_finite_and_bounded(v, depth + 1) for v in value)
    if isinstance(value, dict):
        return depth <= strict_json.MAX_DEPTH and all(
            _finite_and_bounded(k, depth) and _finite_and_bounded(v, depth + 1) for k, v in value.items())
    return True


@settings(max_examples=400, deadline=None)
@given(BODIES)
def test_only_json_rejected_escapes_and_what_is_accepted_is_strict(body):
    try:
        value = strict_json.loads(body)
    except strict_json.JsonRejected as exc:
        assert exc.code in {"MALFORMED_JSON", "INVALID_UTF8", "JSON_TOO_DEEP", "NON_FINITE_NUMBER",
                            "NUMBER_OUT_OF_RANGE", "DUPLICATE_KEY"}
        return
    assert _finite_and_bounded(value)
    text = strict_json.dumps(value)
    assert json.loads(text) == value  # strict output, read back unchanged
    text.encode("utf-8")


@given(VALUES)
def test_dumps_is_always_strict_json(value):
    text = strict_json.dumps(value)
    json.loads(text, parse_constant=lambda name: (_ for _ in ()).throw(AssertionError(name)))
