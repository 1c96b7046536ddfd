"""The SDK writes updates in the server's canonical safetensors layout.

Why it matters: a killed client encodes its update again when it restarts, and a multipart
upload resumes only if the new bytes have the old sha256 (the parts already sent must be parts of
the same object). `safetensors.numpy.save` writes metadata in hash-map order, which changes from
call to call; the SDK's encoder must not.
"""

from __future__ import annotations

import ml_dtypes
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from safetensors.numpy import load

from fma.domain import codec
from fma_client import tensors

DTYPES = ["<f4", "<f8", "<f2", "<i8", "<i4", "<i2", "i1", "<u8", "<u4", "<u2", "u1", "?", ">f4", ">i8",
          ml_dtypes.bfloat16]
names = st.text(st.characters(blacklist_categories=("Cs",)), min_size=1, max_size=12).filter(
    lambda s: s != "__metadata__")
shapes = st.lists(st.integers(0, 4), max_size=3).map(tuple)


@st.composite
def weight_sets(draw):
    out = {}
    for name in draw(st.lists(names, min_size=1, max_size=5, unique=True)):
        shape, dtype = draw(shapes), np.dtype(draw(st.sampled_from(DTYPES)))
        raw = draw(st.binary(min_size=int(np.prod(shape)) * dtype.itemsize,
                             max_size=int(np.prod(shape)) * dtype.itemsize))
        arr = np.frombuffer(raw, dtype=np.uint8).view(dtype).reshape(shape) if dtype != np.bool_ else \
            (np.frombuffer(raw, dtype=np.uint8) % 2).astype(bool).reshape(shape)
        out[name] = arr.T if draw(st.booleans()) and arr.ndim > 1 else arr  # non-contiguous too
    return out


metadata = st.dictionaries(st.text(max_size=10), st.text(max_size=20), max_size=6)


@settings(max_examples=200, deadline=None)
@given(weights=weight_sets(), meta=metadata)
def test_the_sdk_encodes_byte_for_byte_as_the_server_does(weights, meta):
    assert tensors.encode(weights, meta) == codec.encode(weights, meta)


@settings(max_examples=100, deadline=None)
@given(weights=weight_sets(), meta=metadata)
def test_the_encoding_reads_back_exactly(weights, meta):
    decoded = tensors.decode(tensors.encode(weights, meta))
    assert sorted(decoded) == sorted(weights)
    for name, arr in weights.items():
        assert decoded[name].shape == arr.shape
        assert decoded[name].tobytes() == np.ascontiguousarray(arr).astype(arr.dtype.newbyteorder("<")).tobytes()


def test_an_update_encodes_to_the_same_bytes_every_time():
    """The bug this guards: with three metadata keys, safetensors' own writer changed the order."""
    weights = {"w": np.arange(10, dtype=np.float32), "b": np.zeros(2, np.float32)}
    meta = tensors.update_metadata(10, 1, {"loss": 0.5, "accuracy": 0.9})
    first = tensors.encode(weights, meta)
    assert all(tensors.encode(weights, dict(reversed(list(meta.items())))) == first for _ in range(50))
    assert load(first)["w"].tolist() == list(range(10))


def test_a_dtype_safetensors_cannot_hold_is_a_clear_error():
    with pytest.raises(ValueError, match=r"'x'.*complex128"):
        tensors.encode({"x": np.zeros(2, np.complex128)})
