"""The ranged validator: whatever the read size, the same verdict and sha256 as one in-memory
read, and nothing but UpdateRejected for any bytes a client can upload."""

from __future__ import annotations

import contextlib
import hashlib
import math

import ml_dtypes
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fma.domain.codec import encode
from fma.domain.errors import UpdateRejected
from fma.domain.model_spec import ModelSpec
from fma.domain.ranged import RangedObject
from fma.domain.safetensors_header import parse_header
from fma.domain.validation import (
    ValidationLimits,
    global_reader,
    validate_initial_model_stream,
    validate_update_stream,
)

DTYPES = [np.float32, np.float16, np.float64, ml_dtypes.bfloat16, np.int32, np.uint8]
GLOBAL = {"a": np.zeros(37, np.float32), "b": np.ones((5, 3), np.float16), "c": np.arange(11, dtype=np.int32)}
META = {"fma.num_examples": "3", "fma.round": "1"}


class CountingRead:
    """A read over bytes in memory that records the largest range asked for."""

    def __init__(self, data: bytes):
        self.data, self.largest = data, 0

    def __call__(self, start: int, end: int) -> bytes:
        self.largest = max(self.largest, end - start)
        out = self.data[start:end]
        if len(out) != end - start:
            raise ValueError("short read")
        return out


def ranged(data: bytes, chunk: int) -> RangedObject:
    return RangedObject(len(data), CountingRead(data), chunk)


def spec_of(tensors) -> ModelSpec:
    buf = encode(tensors)
    return ModelSpec.from_header(parse_header(buf, total_size=len(buf)))


def verdict(fn, *args, **kwargs):
    try:
        return fn(*args, **kwargs)
    except UpdateRejected as exc:
        return exc.code


def glob_reader():
    buf = encode(GLOBAL)
    obj = RangedObject.of_bytes(buf)
    return global_reader(obj.read_header()[0], obj.read)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunk=st.integers(min_value=1, max_value=400), delta=st.floats(-3, 3, width=32),
       poison=st.sampled_from([None, "nan", "inf"]), where=st.integers(0, 36), bound=st.floats(0.1, 50))
def test_every_read_size_gives_the_same_verdict_and_sha256(chunk, delta, poison, where, bound):
    # Given an update near the global model, maybe holding one NaN/Inf anywhere in tensor a
    a = GLOBAL["a"] + np.float32(delta)
    if poison:
        a[where] = np.float32(poison)
    data = encode({**GLOBAL, "a": a}, META)
    limits = ValidationLimits(max_update_bytes=1 << 20, max_update_norm=bound)
    # When it is checked through reads of `chunk` bytes and through one read of everything
    obj = ranged(data, chunk)
    small = verdict(validate_update_stream, obj, spec_of(GLOBAL), limits, expected_round=1,
                    global_model=glob_reader(), declared_sha256=hashlib.sha256(data).hexdigest())
    whole = verdict(validate_update_stream, RangedObject.of_bytes(data, 1 << 30), spec_of(GLOBAL), limits,
                    expected_round=1, global_model=glob_reader(), declared_sha256=hashlib.sha256(data).hexdigest())
    # Then the verdicts agree, no read but the header's exceeded the chunk (rounded to whole 8-byte
    # elements), and an accepted update carries the sha256 of its bytes and the norm of its distance
    assert obj.read.largest <= max(obj.piece_bytes, 8 + int.from_bytes(data[:8], "little"))
    if isinstance(small, str):
        assert small == whole
        expected = "NON_FINITE" if poison else "NORM_TOO_LARGE"
        assert small == expected
    else:
        assert whole.sha256 == small.sha256 == hashlib.sha256(data).hexdigest()
        assert math.isclose(small.norm, abs(float(delta)) * math.sqrt(37), rel_tol=1e-5, abs_tol=1e-6)


def test_a_declared_sha256_that_differs_wins_over_a_content_fault():
    bad = encode({**GLOBAL, "a": np.full(37, np.nan, np.float32)}, META)
    limits = ValidationLimits(max_update_bytes=1 << 20)
    assert verdict(validate_update_stream, ranged(bad, 64), spec_of(GLOBAL), limits,
                   declared_sha256="0" * 64) == "SHA256_MISMATCH"
    assert verdict(validate_update_stream, ranged(bad, 64), spec_of(GLOBAL), limits,
                   declared_sha256=hashlib.sha256(bad).hexdigest()) == "NON_FINITE"
    too_many = encode(GLOBAL, {"fma.num_examples": "9"})
    assert verdict(validate_update_stream, ranged(too_many, 64), spec_of(GLOBAL),
                   ValidationLimits(1 << 20, max_num_examples=5), declared_sha256="0" * 64) == "SHA256_MISMATCH"


@pytest.mark.parametrize("dtype", DTYPES)
def test_initial_models_of_every_dtype_stream_to_their_spec_and_sha256(dtype):
    tensors = {"x": np.arange(1001).astype(dtype), "y": np.zeros((3, 0), dtype)}
    data = encode(tensors)
    spec, sha = validate_initial_model_stream(ranged(data, 24))
    assert spec == spec_of(tensors) and sha == hashlib.sha256(data).hexdigest()


def test_a_header_length_beyond_the_object_reads_nothing_more():
    data = (1 << 19).to_bytes(8, "little") + b'{"w":'
    obj = ranged(data, 16)
    assert verdict(validate_initial_model_stream, obj) == "NOT_SAFETENSORS"
    assert obj.read.largest <= 9


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=600), st.integers(min_value=1, max_value=64))
def test_arbitrary_bytes_raise_only_update_rejected(data, chunk):
    for check in (lambda o: validate_initial_model_stream(o),
                  lambda o: validate_update_stream(o, spec_of(GLOBAL), ValidationLimits(1 << 20),
                                                   declared_sha256="0" * 64)):
        with contextlib.suppress(UpdateRejected):
            check(ranged(data, chunk))


@settings(max_examples=150, deadline=None)
@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=8), st.integers(1, 64))
def test_a_valid_update_with_bytes_overwritten_raises_only_update_rejected(at, junk, chunk):
    data = bytearray(encode(GLOBAL, META))
    data[at : at + len(junk)] = junk
    with contextlib.suppress(UpdateRejected):
        validate_update_stream(ranged(bytes(data), chunk), spec_of(GLOBAL), ValidationLimits(1 << 20),
                               declared_sha256=hashlib.sha256(bytes(data)).hexdigest())
