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
