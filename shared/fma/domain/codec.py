"""Safetensors <-> numpy, zero-copy on decode.

Encoding goes through the safetensors library (deterministic layout for the same inputs);
decoding views the caller's buffer with `np.frombuffer` so a 1 GB update costs no second GB.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from safetensors.numpy import save

from fma.domain.safetensors_header import HeaderLimits, SafetensorsHeader, TensorInfo, parse_header

NUMPY_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"), "F32": np.dtype("<f4"), "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"), "I32": np.dtype("<i4"), "I16": np.dtype("<i2"), "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"), "U32": np.dtype("<u4"), "U16": np.dtype("<u2"), "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}


def encode(tensors: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> bytes:
    """Serialize tensors (C-contiguous copies only where needed) with string metadata."""
    arrays = {name: np.ascontiguousarray(arr) for name, arr in sorted(tensors.items())}
    return save(arrays, metadata=dict(metadata) if metadata else None)


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


def decode_with_header(
    buf: bytes | memoryview, limits: HeaderLimits = HeaderLimits()
) -> tuple[SafetensorsHeader, dict[str, np.ndarray]]:
    header = parse_header(buf, total_size=len(buf), limits=limits)
    return header, {t.name: tensor_view(buf, header, t) for t in header.tensors}
