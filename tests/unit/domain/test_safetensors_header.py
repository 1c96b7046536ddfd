"""The bounded safetensors header parser: valid files parse, every malformed one is refused."""

from __future__ import annotations

import contextlib
import json
import struct

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from fma.domain.codec import encode
from fma.domain.errors import UpdateRejected
from fma.domain.safetensors_header import HeaderLimits, header_length, parse_header


def raw(header: dict, data: bytes = b"") -> bytes:
    body = json.dumps(header).encode()
    return struct.pack("<Q", len(body)) + body + data


def test_a_file_written_by_safetensors_parses_with_its_tensors_and_metadata():
    buf = encode({"b": np.zeros(2, np.float32), "a": np.ones((2, 3), np.float64)}, {"fma.num_examples": "4"})
    header = parse_header(buf, total_size=len(buf))
    assert {t.name: (t.dtype, t.shape) for t in header.tensors} == {"a": ("F64", (2, 3)), "b": ("F32", (2,))}
    assert header.metadata == {"fma.num_examples": "4"}
    assert header.total_size == len(buf)


@pytest.mark.parametrize("buf,code", [
    (b"\x01\x02", "NOT_SAFETENSORS"),
    (struct.pack("<Q", 0) + b"{}", "NOT_SAFETENSORS"),
    (struct.pack("<Q", 4) + b"PK\x03\x04", "NOT_SAFETENSORS"),
    (struct.pack("<Q", 10) + b"{", "NOT_SAFETENSORS"),
    (raw([1, 2]), "NOT_SAFETENSORS"),
    (raw({"t": {"dtype": "F99", "shape": [1], "data_offsets": [0, 4]}}, b"\0" * 4), "BAD_DTYPE"),
    (raw({"t": {"dtype": "F32", "shape": [-1], "data_offsets": [0, 4]}}, b"\0" * 4), "BAD_SHAPE"),
    (raw({"t": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}}, b"\0" * 4), "BAD_OFFSETS"),
    (raw({"t": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}}, b"\0" * 8), "BAD_OFFSETS"),
    (raw({"__metadata__": {"k": 1}}), "BAD_METADATA"),
])
def test_malformed_headers_are_refused_with_a_code(buf, code):
    with pytest.raises(UpdateRejected) as err:
        parse_header(buf, total_size=len(buf))
    assert err.value.code == code


def test_tensors_must_tile_the_whole_file():
    buf = encode({"w": np.zeros(4, np.float32)})
    with pytest.raises(UpdateRejected) as err:
        parse_header(buf + b"trailing", total_size=len(buf) + 8)
    assert err.value.code == "BAD_OFFSETS"


def test_limits_apply_before_anything_is_read():
    with pytest.raises(UpdateRejected) as err:
        header_length(struct.pack("<Q", 1 << 40) + b"{")
    assert err.value.code == "HEADER_TOO_LARGE"
    many = {f"t{i}": {"dtype": "U8", "shape": [1], "data_offsets": [i, i + 1]} for i in range(5)}
    with pytest.raises(UpdateRejected) as err:
        parse_header(raw(many, b"\0" * 5), limits=HeaderLimits(max_tensors=4))
    assert err.value.code == "TOO_MANY_TENSORS"


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_arbitrary_bytes_raise_nothing_but_update_rejected(data):
    with contextlib.suppress(UpdateRejected):
        parse_header(data, total_size=len(data))


@settings(max_examples=200, deadline=None)
@given(st.recursive(st.none() | st.booleans() | st.integers() | st.text(max_size=5),
                    lambda kids: st.lists(kids, max_size=3) | st.dictionaries(st.text(max_size=5), kids, max_size=3),
                    max_leaves=10))
def test_arbitrary_json_headers_raise_nothing_but_update_rejected(value):
    buf = raw(value)
    with contextlib.suppress(UpdateRejected):
        parse_header(buf, total_size=len(buf))
