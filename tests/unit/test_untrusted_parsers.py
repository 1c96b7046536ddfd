"""Property tests of the parsers of client bytes: the safetensors header and the update's
metadata. Whatever the input (arbitrary bytes, JSON nested 100,000 deep, 400-digit integers,
NaN, other scripts' digits, duplicate keys, lone surrogates), nothing but UpdateRejected
escapes, and what is accepted obeys the documented rules."""

from __future__ import annotations

import json
import math
import struct

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fma.domain.errors import UpdateRejected
from fma.domain.safetensors_header import parse_header
from fma.domain.update_meta import check_metrics, parse_metrics, parse_num_examples, parse_update_meta

SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (st.none() | st.booleans() | st.integers(min_value=-(10**450), max_value=10**450)
           | st.floats(allow_nan=True, allow_infinity=True) | st.text(max_size=20))
json_values = st.recursive(scalars, lambda inner: st.lists(inner, max_size=4)
                           | st.dictionaries(st.text(max_size=8), inner, max_size=4), max_leaves=30)
digits_anywhere = st.text(alphabet=st.characters(categories=["Nd", "No", "Zs", "Pc", "Sm"]) | st.sampled_from(
    "0123456789+-_ \n\te.x"), max_size=24)


def framed(text: str | bytes, body: bytes = b"") -> bytes:
    raw = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    return struct.pack("<Q", len(raw)) + raw + body


def dumps_with_duplicates(pairs: list[tuple[str, object]]) -> str:
    """JSON object text that may repeat keys (json.dumps of a dict never can)."""
    return "{" + ",".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"


def parses_or_rejects(data: bytes) -> None:
    try:
        header = parse_header(data, total_size=len(data))
    except UpdateRejected as exc:
        assert exc.code and exc.message
        return
    for info in header.tensors:  # what is accepted is well-formed
        assert info.name and 0 <= info.start <= info.end <= len(data)
    json.dumps(header.metadata, ensure_ascii=False).encode("utf-8")


@SETTINGS
@given(st.binary(max_size=4096))
@example(b"")
@example(struct.pack("<Q", 2**64 - 1) + b"{")
def test_header_parser_on_arbitrary_bytes_raises_only_update_rejected(data):
    parses_or_rejects(data)


@SETTINGS
@given(json_values)
def test_header_parser_on_arbitrary_json_raises_only_update_rejected(value):
    parses_or_rejects(framed(json.dumps(value)))


@SETTINGS
@given(st.sampled_from(["dtype", "shape", "data_offsets"]), json_values, st.sampled_from(["b", "w"]))
def test_header_parser_on_a_tampered_valid_header_raises_only_update_rejected(field, value, tensor):
    header = {"b": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
              "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [12, 36]}}
    header[tensor][field] = value
    parses_or_rejects(framed(json.dumps(header), bytes(36)))


@SETTINGS
@given(st.integers(min_value=9, max_value=100_000), st.sampled_from(["[", "{\"a\":"]))
def test_header_nested_arbitrarily_deep_is_not_safetensors(depth, opener):
    closer = "]" if opener == "[" else "}"
    text = '{"w": ' + opener * depth + ("1" if opener != "[" else "") + closer * depth + "}"
    with pytest.raises(UpdateRejected) as err:
        parse_header(framed(text))
    assert err.value.code == "NOT_SAFETENSORS"


@SETTINGS
@given(st.lists(st.tuples(st.sampled_from(["__metadata__", "w", "b"]), json_values), min_size=2, max_size=6))
def test_header_with_duplicate_keys_is_not_safetensors(pairs):
    text = dumps_with_duplicates(pairs)
    with pytest.raises(UpdateRejected) as err:
        parse_header(framed(text))
    if len({k for k, _ in pairs}) < len(pairs):
        assert err.value.code == "NOT_SAFETENSORS"


@pytest.mark.parametrize("metadata", [
    '{"__metadata__": {"fma.num_examples": "1", "fma.num_examples": "9"}}',
    '{"w": {"dtype": "F32", "dtype": "F64", "shape": [0], "data_offsets": [0, 0]}}',
    '{"w": {"dtype": "F32", "shape": [NaN], "data_offsets": [0, 0]}}',
    '{"w": {"dtype": "F32", "shape": [1' + "0" * 5000 + '], "data_offsets": [0, 0]}}',
])
def test_header_edge_cases_are_not_safetensors_or_bad_fields(metadata):
    with pytest.raises(UpdateRejected) as err:
        parse_header(framed(metadata))
    assert err.value.code in {"NOT_SAFETENSORS", "BAD_SHAPE"}


def test_header_with_lone_surrogates_in_names_or_metadata_is_rejected():
    for text, code in (('{"\\ud800": {"dtype": "F32", "shape": [0], "data_offsets": [0, 0]}}', "BAD_TENSOR"),
                       ('{"__metadata__": {"k": "\\udfff"}}', "BAD_METADATA")):
        with pytest.raises(UpdateRejected) as err:
            parse_header(framed(text))
        assert err.value.code == code


# -- metadata ----------------------------------------------------------------------------------

@SETTINGS
@given(st.dictionaries(st.sampled_from(["fma.num_examples", "fma.round", "fma.metrics", "x"]) | st.text(max_size=5),
                       st.text(max_size=40) | digits_anywhere, max_size=5))
def test_metadata_parser_on_arbitrary_strings_raises_only_update_rejected(metadata):
    try:
        meta = parse_update_meta(metadata)
    except UpdateRejected as exc:
        assert exc.code
        return
    raw = metadata["fma.num_examples"]
    assert raw.isascii() and raw.isdigit() and 1 <= meta.num_examples <= 10**15
    assert all(math.isfinite(v) for v in meta.metrics.values())


@SETTINGS
@given(digits_anywhere)
@example("\u0661\u0662")  # Arabic-Indic digits: int() takes them
@example("1_000")
@example(" 12")
def test_num_examples_accepts_ascii_digits_only(raw):
    try:
        value = parse_num_examples(raw)
    except UpdateRejected as exc:
        assert exc.code == "BAD_NUM_EXAMPLES"
        assert not (raw.isascii() and raw.isdigit() and 1 <= int(raw) <= 10**15)
        return
    assert raw.isascii() and raw.isdigit() and value == int(raw) and 1 <= value <= 10**15


@pytest.mark.parametrize("raw", [" 12", "12 ", "1_000", "+5", "-5", "\u0661\u0662", "\uff11\uff12", "0", "00",
                                 "1e3", "12\n", "", str(10**15 + 1), "9" * 400, "\u00b2"])
def test_num_examples_spellings_that_int_would_take_are_bad_num_examples(raw):
    with pytest.raises(UpdateRejected) as err:
        parse_num_examples(raw)
    assert err.value.code == "BAD_NUM_EXAMPLES"


@pytest.mark.parametrize(("raw", "value"), [("1", 1), ("007", 7), (str(10**15), 10**15)])
def test_num_examples_in_range_are_accepted(raw, value):
    assert parse_num_examples(raw) == value


@SETTINGS
@given(json_values)
def test_metrics_parser_on_arbitrary_json_raises_only_update_rejected(value):
    for text in (json.dumps(value), json.dumps({"m": value})):
        try:
            metrics = parse_metrics(text)
        except UpdateRejected as exc:
            assert exc.code == "BAD_METRICS"
            continue
        assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())


@SETTINGS
@given(st.text(max_size=200))
@example('{"loss": ' + "[" * 100_000 + "]" * 100_000 + "}")
@example('{"loss": ' + "9" * 400 + "}")
@example('{"loss": 1e400}')
@example('{"loss": NaN}')
@example('{"loss": 1, "loss": 2}')
def test_metrics_parser_on_arbitrary_text_raises_only_update_rejected(text):
    try:
        metrics = parse_metrics(text)
    except UpdateRejected as exc:
        assert exc.code == "BAD_METRICS"
        return
    assert all(math.isfinite(v) for v in metrics.values())


@pytest.mark.parametrize("value", [10**400, -(10**400), float("nan"), float("inf"), True, "1", [1], {"a": 1}])
def test_metric_values_that_are_not_finite_numbers_are_bad_metrics(value):
    with pytest.raises(UpdateRejected) as err:
        check_metrics({"loss": value})
    assert err.value.code == "BAD_METRICS"
