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
