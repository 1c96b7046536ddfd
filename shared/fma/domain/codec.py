"""Safetensors <-> numpy, zero-copy on decode.

Encoding writes a canonical layout (sorted names and metadata) so re-runs give equal bytes;
decoding views the caller's buffer with `np.frombuffer` so a 1 GB update costs no second GB.
Every dtype the header parser accepts has a numpy dtype here: BF16 is ml_dtypes' bfloat16
(the numpy extension JAX and TensorFlow use), so a BF16 tensor decodes, validates, aggregates
(in float32, see aggregation/layout.py) and is written back as BF16. A 0-d tensor stays 0-d.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator, Mapping

import ml_dtypes
import numpy as np

from fma.domain.safetensors_header import HeaderLimits, SafetensorsHeader, TensorInfo, parse_header

NUMPY_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype(ml_dtypes.bfloat16),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
#: dtypes computed with as floats (the safetensors names of FLOAT_DTYPES).
FLOAT_NUMPY = frozenset(NUMPY_DTYPES[n] for n in ("F64", "F32", "F16", "BF16"))


def is_float(dtype: np.dtype) -> bool:
    """True for the float dtypes, bfloat16 included (its numpy kind is "V", not "f")."""
    return np.dtype(dtype) in FLOAT_NUMPY or np.dtype(dtype).kind == "f"


#: bytes per chunk the streaming encoder yields of a tensor (a copy of this size at most).
STREAM_CHUNK_BYTES = 8 << 20


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize to safetensors with a canonical layout: same tensors and metadata -> same bytes.

    The safetensors library writes metadata in hash-map order, which differs between calls;
    the aggregate step must write identical bytes on a re-run, so the header is built here with
    sorted keys and tensors in name order (8-byte aligned, as the format recommends). The result
    is read back by the safetensors library in the tests. `encode_stream` yields the same bytes.
    """
    arrays = canonical_arrays(tensors)
    out = bytearray(canonical_header(arrays, metadata))
    for _, dtype, arr in arrays:
        out += _raw(np.asarray(arr).astype(NUMPY_DTYPES[dtype], copy=False)).tobytes() if arr.size else b""
    return bytes(out)


def encode_stream(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None,
                  chunk_bytes: int = STREAM_CHUNK_BYTES) -> Iterator[bytes]:
    """`encode`'s bytes as a stream: the header, then each tensor's bytes in chunks of at most
    `chunk_bytes`, so a model is written without a second copy of it in memory (b"".join of
    the stream is `encode(tensors, metadata)`, byte for byte)."""
    arrays = canonical_arrays(tensors)
    yield canonical_header(arrays, metadata)
    step = max(1, int(chunk_bytes))
    for _, dtype, arr in arrays:
        if not isinstance(arr, np.ndarray):  # a lazy tensor: read range by range as it streams
            per = max(1, step // arr.dtype.itemsize)
            for a in range(0, arr.size, per):
                yield _raw(arr.read_flat(a, min(arr.size, a + per)).astype(NUMPY_DTYPES[dtype], copy=False)).tobytes()
            continue
        raw = _raw(arr)
        for a in range(0, raw.size, step):
            yield raw[a : a + step].tobytes()


def canonical_arrays(tensors: Mapping[str, np.ndarray]) -> list[tuple[str, str, np.ndarray]]:
    """(name, safetensors dtype, C-ordered little-endian array) in name order: the layout."""
    inverse = {dt: name for name, dt in NUMPY_DTYPES.items()}
    out = []
    for name in sorted(tensors):
        value = tensors[name]
        if not isinstance(value, np.ndarray) and hasattr(value, "read_flat"):  # lazy: streamed by encode_stream
            dtype = inverse.get(np.dtype(value.dtype))
            if dtype is None:
                raise ValueError(f"tensor {name!r} has unsupported dtype {value.dtype}")
            out.append((name, dtype, value))
            continue
        arr = np.asarray(value)
        if not arr.flags.c_contiguous:  # np.ascontiguousarray would turn a 0-d array into shape (1,)
            arr = arr.copy(order="C")
        dtype = inverse.get(arr.dtype.newbyteorder("<") if arr.dtype.byteorder == ">" else arr.dtype)
        if dtype is None:
            raise ValueError(f"tensor {name!r} has unsupported dtype {arr.dtype}")
        out.append((name, dtype, arr.astype(NUMPY_DTYPES[dtype], copy=False)))
    return out


def canonical_header(arrays: list[tuple[str, str, np.ndarray]], metadata: Mapping[str, str] | None = None) -> bytes:
    """The length prefix and JSON header of `arrays` (from `canonical_arrays`): sorted metadata,
    tensors end to end in the given order, padded with spaces to a multiple of 8 bytes. The one
    header builder of `encode` and `encode_stream`."""
    header: dict[str, object] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    offset = 0
    for name, dtype, arr in arrays:
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [offset, offset + arr.nbytes]}
        offset += arr.nbytes
    raw = json.dumps(header, separators=(",", ":"), sort_keys=False).encode()
    raw += b" " * (-len(raw) % 8)
    return struct.pack("<Q", len(raw)) + raw


def _raw(arr: np.ndarray) -> np.ndarray:
    """The array's bytes as a flat uint8 view (no copy)."""
    return arr.reshape(-1).view(np.uint8)


def tensor_view(buf: bytes | memoryview, header: SafetensorsHeader, info: TensorInfo) -> np.ndarray:
    """A read-only numpy view of one tensor inside `buf` (no copy)."""
    dtype = NUMPY_DTYPES[info.dtype]
    arr = np.frombuffer(buf, dtype=dtype, count=info.numel, offset=header.data_start + info.start)
    return arr.reshape(info.shape)


def decode(
    buf: bytes | memoryview, limits: HeaderLimits = HeaderLimits()
) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """Parse a whole safetensors object into views over `buf` and its metadata."""
    header = parse_header(buf, total_size=len(buf), limits=limits)
    return {t.name: tensor_view(buf, header, t) for t in header.tensors}, header.metadata

