"""Weights <-> safetensors bytes, and the metadata an update must carry.

The wire format is safetensors only (no pickle): a file maps layer names to arrays, and an
update states its facts (`fma.num_examples`, `fma.round`, `fma.metrics`) in the metadata so
the server can validate it from the object alone.
"""

from __future__ import annotations

import hashlib
import json
import math
import numbers
import struct
from collections.abc import Mapping
from typing import Any

import numpy as np
from safetensors import deserialize
from safetensors.numpy import _TYPES as _NUMPY_TYPES
from safetensors.numpy import load

Weights = dict[str, np.ndarray]
MAX_METRICS = 64  # the server's limits on `fma.metrics`
MAX_METRIC_NAME = 64


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def encode(
    weights: Mapping[str, Any],
    metadata: Mapping[str, str] | None = None,
    dtypes: Mapping[str, np.dtype] | None = None,
) -> bytes:
    """Serialize `weights` (array-likes) to safetensors in the canonical layout: the same
    weights and metadata give the same bytes, in any process.

    Why not `safetensors.numpy.save`: it writes the metadata in hash-map order, which changes
    from call to call, so an update encoded again after a crash had another sha256 and a
    resumed multipart upload could not be matched to the parts already sent. The layout is the
    server's (`fma.domain.codec.encode`): sorted metadata, tensors in name order, the header
    padded to 8 bytes; the safetensors library reads it back.

    `dtypes` (the global model's) casts each tensor it names: training code often promotes
    float32 to float64, and the server rejects an update whose dtypes differ from the model's.
    Names and shapes are not checked here: the server is the authority and reports why.
    Shapes are kept exactly, 0-d included (a BatchNorm's `num_batches_tracked` has shape []):
    `np.ascontiguousarray` would turn shape () into (1,), so a copy is made only when needed.
    """
    header: dict[str, Any] = {}
    if metadata:
        header["__metadata__"] = {str(k): str(v) for k, v in sorted(metadata.items())}
    chunks: list[bytes] = []
    offset = 0
    for name in sorted(weights):
        arr = np.asarray(weights[name])
        if dtypes is not None and name in dtypes and arr.dtype != dtypes[name]:
            arr = arr.astype(dtypes[name])
        if not arr.flags.c_contiguous:
            arr = arr.copy(order="C")
        if arr.dtype.byteorder == ">":
            arr = arr.astype(arr.dtype.newbyteorder("<"))
        data = arr.reshape(-1).view(np.uint8).tobytes() if arr.size else b""
        header[name] = {"dtype": _safetensors_dtype(name, arr.dtype), "shape": list(arr.shape),
                        "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        chunks.append(data)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)
    return b"".join([struct.pack("<Q", len(raw)), raw, *chunks])


def _safetensors_dtype(name: str, dtype: np.dtype) -> str:
    if dtype.name == "bfloat16":  # ml_dtypes' extension type
        return "BF16"
    for tag, numpy_type in _NUMPY_TYPES.items():
        if np.dtype(numpy_type) == dtype:
            return tag
    raise ValueError(f"tensor {name!r} has a dtype safetensors cannot hold: {dtype}")


def decode(data: bytes) -> Weights:
    """Fresh, writable arrays: callers may train in place without touching any cached bytes.

    bfloat16 tensors (which numpy lacks) decode to ml_dtypes' `bfloat16`, the numpy extension
    the server uses too; it is imported only when a model has one (`fma-client[bf16]`).
    """
    try:
        return dict(load(data))
    except KeyError:  # a dtype safetensors.numpy does not map (BF16)
        return {name: _array(info) for name, info in deserialize(data)}


BF16_HINT = "this model has bfloat16 tensors; decoding them needs ml_dtypes: pip install 'fma-client[bf16]'"


def _array(info: Mapping[str, Any]) -> np.ndarray:
    name = info["dtype"]
    if name == "BF16":
        try:
            import ml_dtypes
        except ImportError as exc:
            raise ImportError(BF16_HINT) from exc
        dtype = np.dtype(ml_dtypes.bfloat16)
    else:
        dtype = np.dtype(_NUMPY_TYPES[name]).newbyteorder("<")
    return np.frombuffer(bytes(info["data"]), dtype=dtype).reshape(info["shape"]).copy()


def update_metadata(num_examples: int, round: int, metrics: Mapping[str, Any] | None = None) -> dict[str, str]:
    """The `fma.*` metadata of an update; raises ValueError for values the server would reject.

    Checked locally because a NaN loss or a zero count is a bug in the caller's training code
    and is cheaper to report before an upload than after a validation round trip.
    """
    if isinstance(num_examples, bool) or not isinstance(num_examples, numbers.Integral):
        raise ValueError(f"num_examples must be an integer, got {num_examples!r}")
    if num_examples <= 0:
        raise ValueError(f"num_examples must be positive, got {num_examples}")
    meta = {"fma.num_examples": str(int(num_examples)), "fma.round": str(int(round))}
    if metrics:
        meta["fma.metrics"] = json.dumps(clean_metrics(metrics), sort_keys=True)
    return meta


def clean_metrics(metrics: Mapping[str, Any]) -> dict[str, int | float]:
    """Metrics as plain JSON numbers (numpy scalars converted); ValueError if not finite."""
    if len(metrics) > MAX_METRICS:
        raise ValueError(f"at most {MAX_METRICS} metrics per update, got {len(metrics)}")
    out: dict[str, int | float] = {}
    for key, value in metrics.items():
        if not isinstance(key, str) or not 0 < len(key) <= MAX_METRIC_NAME:
            raise ValueError(f"metric names must be strings of 1..{MAX_METRIC_NAME} characters")
        if isinstance(value, np.ndarray) and value.ndim == 0:
            value = value.item()
        if isinstance(value, bool) or not isinstance(value, numbers.Real):
            raise ValueError(f"metric {key!r} must be a number, got {value!r}")
        number = int(value) if isinstance(value, numbers.Integral) else float(value)
        if not math.isfinite(number):
            raise ValueError(f"metric {key!r} must be finite, got {value!r}")
        out[key] = number
    return out
