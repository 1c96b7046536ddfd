"""The canonical safetensors encoder: readable by the safetensors library, byte-stable."""

from __future__ import annotations

import numpy as np
from safetensors.numpy import load

from fma.domain.codec import decode, encode


def sample() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(3)
    return {"z/kernel": rng.normal(size=(3, 5)).astype(np.float32), "a/bias": np.arange(7, dtype=np.float64),
            "m/int": np.arange(4, dtype=np.int64), "h/half": np.ones(3, np.float16), "scalar": np.float32(2.5)}


def test_safetensors_library_reads_what_we_write():
    data = encode(sample(), {"fma.round": "3", "b": "x", "a": "y"})
    loaded = load(data)
    for name, arr in sample().items():
        np.testing.assert_array_equal(loaded[name], np.asarray(arr))
        assert loaded[name].dtype == np.asarray(arr).dtype


def test_same_inputs_give_same_bytes_whatever_the_insertion_order():
    meta = {"fma.round": "1", "fma.experiment": "e", "fma.strategy": "fedavg"}
    first = encode(sample(), meta)
    reordered = dict(reversed(list(sample().items())))
    assert encode(reordered, dict(reversed(list(meta.items())))) == first
    assert len(first[8:8 + int.from_bytes(first[:8], "little")]) % 8 == 0


def test_decode_round_trips_and_is_zero_copy():
    data = encode(sample(), {"k": "v"})
    tensors, meta = decode(data)
    assert meta == {"k": "v"}
    assert not tensors["z/kernel"].flags.owndata
    np.testing.assert_array_equal(tensors["a/bias"], sample()["a/bias"])


def test_0d_tensors_keep_their_shape_and_the_library_agrees():
    tensors = {"bn/num_batches_tracked": np.array(7, np.int64), "scale": np.array(0.5, np.float32)}
    data = encode(tensors)
    back, _ = decode(data)
    assert back["bn/num_batches_tracked"].shape == () and int(back["bn/num_batches_tracked"]) == 7
    assert load(data)["scale"].shape == () and float(load(data)["scale"]) == 0.5


def test_bf16_and_f16_round_trip_bit_for_bit_with_their_safetensors_names():
    import json
    import struct

    import ml_dtypes

    bf16 = np.dtype(ml_dtypes.bfloat16)
    values = np.array([[1.5, -0.0078125, 3.0e38], [np.pi, 1e-30, -2.0]], np.float32)
    tensors = {"a": values.astype(bf16), "b": values[:, :2].astype(np.float16), "c": np.array(2.5, bf16)}
    data = encode(tensors)
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    assert [header[k]["dtype"] for k in "abc"] == ["BF16", "F16", "BF16"] and header["c"]["shape"] == []
    back, _ = decode(data)
    for k, v in tensors.items():
        assert back[k].dtype == v.dtype and back[k].shape == v.shape
        assert back[k].tobytes() == v.tobytes()


_DTYPES = ["<f4", "<f8", "<f2", "<i8", "<i4", "u1", "?", ">f4", ">i2"]


def _tensors():
    from hypothesis import strategies as st
    from hypothesis.extra.numpy import array_shapes, arrays

    names = st.text(alphabet="abz/_.0", min_size=1, max_size=8)
    tensor = st.sampled_from(_DTYPES).flatmap(
        lambda dt: arrays(np.dtype(dt), array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=5)))
    return st.dictionaries(names, tensor, max_size=5)


def test_the_stream_is_encode_byte_for_byte_for_any_tensors_metadata_and_chunk_size():
    """Given any tensors (0-d, empty, big-endian, bool, non-contiguous), metadata and chunk size,
    when streamed, the joined chunks are exactly `encode`'s bytes and no chunk exceeds its size."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from fma.domain.codec import encode_stream

    @settings(max_examples=150, deadline=None)
    @given(_tensors(), st.dictionaries(st.text(max_size=6), st.text(max_size=6), max_size=3),
           st.integers(min_value=1, max_value=64), st.booleans())
    def check(tensors, metadata, chunk, transpose):
        if transpose:
            tensors = {k: (v.T if v.ndim > 1 else v) for k, v in tensors.items()}
        chunks = list(encode_stream(tensors, metadata or None, chunk_bytes=chunk))
        assert b"".join(chunks) == encode(tensors, metadata or None)
        assert all(len(c) <= chunk for c in chunks[1:])

    check()


def test_encode_and_the_stream_share_one_header_builder():
    """The header is the one function both use (a second copy could drift): patching it changes both."""
    from unittest import mock

    from fma.domain import codec

    with mock.patch.object(codec, "canonical_header", return_value=b"HDR"):
        assert codec.encode(sample()).startswith(b"HDR")
        assert next(codec.encode_stream(sample())) == b"HDR"
