"""Checks every update against the experiment's model spec before it may reach a model."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fma.domain.codec import NUMPY_DTYPES, tensor_view
from fma.domain.errors import UpdateRejected
from fma.domain.model_spec import ModelSpec
from fma.domain.safetensors_header import FLOAT_DTYPES, HeaderLimits, SafetensorsHeader, parse_header
from fma.domain.update_meta import MAX_NUM_EXAMPLES, UpdateMeta, parse_update_meta

#: (tensor name, first element, element count) -> those elements of the global model as float64.
GlobalReader = Callable[[str, int, int], np.ndarray]
#: elements compared at a time by the norm check: bounds its memory whatever a tensor's size.
NORM_CHUNK_ELEMENTS = 1 << 20


@dataclass(frozen=True)
class ValidationLimits:
    """What one update may be: bytes, declared examples, distance from the global model."""

    max_update_bytes: int
    max_num_examples: int = MAX_NUM_EXAMPLES
    max_update_norm: float | None = None
    header: HeaderLimits = field(default_factory=HeaderLimits)


@dataclass(frozen=True)
class ValidUpdate:
    meta: UpdateMeta
    size: int
    norm: float | None = None


def validate_update(
    buf: bytes | memoryview,
    spec: ModelSpec,
    limits: ValidationLimits,
    *,
    expected_round: int | None = None,
    global_model: GlobalReader | None = None,
) -> ValidUpdate:
    """Raise UpdateRejected with a client-readable reason, or return the update's facts.

    With `limits.max_update_norm`, `global_model` must read the round's global model: the L2
    norm of (update - global) over the floating-point tensors is computed chunk by chunk, so
    besides the update itself it holds about NORM_CHUNK_ELEMENTS float64 values at a time.
    """
    if len(buf) > limits.max_update_bytes:
        raise UpdateRejected("TOO_LARGE", f"{len(buf)} bytes exceed max_update_bytes={limits.max_update_bytes}")
    header = parse_header(buf, total_size=len(buf), limits=limits.header)
    meta = parse_update_meta(header.metadata)
    if meta.num_examples > limits.max_num_examples:
        raise UpdateRejected("TOO_MANY_EXAMPLES", f"fma.num_examples={meta.num_examples} exceeds the "
                             f"experiment's max_num_examples={limits.max_num_examples}")
    if expected_round is not None and meta.round is not None and meta.round != expected_round:
        raise UpdateRejected("WRONG_ROUND", f"file says round {meta.round}, uploaded for round {expected_round}")
    spec.check(header)
    check_decodable(header)
    for info in header.tensors:
        if info.dtype in FLOAT_DTYPES and not np.isfinite(tensor_view(buf, header, info)).all():
            raise UpdateRejected("NON_FINITE", f"{info.name} holds NaN or Inf")
    norm = None
    if limits.max_update_norm is not None:
        if global_model is None:
            raise ValueError("max_update_norm needs the round's global model")
        norm = update_norm(buf, header, global_model)
        if norm > limits.max_update_norm:
            raise UpdateRejected(
                "NORM_TOO_LARGE", f"update norm {norm:.6g} exceeds max_update_norm={limits.max_update_norm:g}"
            )
    return ValidUpdate(meta, len(buf), norm)


def check_decodable(header: SafetensorsHeader) -> None:
    """Refuse a dtype the header format allows but the codec cannot turn into numpy."""
    for info in header.tensors:
        if info.dtype not in NUMPY_DTYPES:
            raise UpdateRejected("UNSUPPORTED_DTYPE", f"tensor {info.name!r} has dtype {info.dtype}, "
                                 "which FMA cannot aggregate")


def update_norm(buf: bytes | memoryview, header: SafetensorsHeader, global_model: GlobalReader) -> float:
    """L2 norm of (update - global) over the floating-point tensors, in float64, chunk by chunk."""
    squared = 0.0
    for info in header.tensors:
        if info.dtype not in FLOAT_DTYPES:
            continue
        flat = tensor_view(buf, header, info).reshape(-1)
        for start in range(0, info.numel, NORM_CHUNK_ELEMENTS):
            count = min(NORM_CHUNK_ELEMENTS, info.numel - start)
            delta = flat[start : start + count].astype(np.float64) - global_model(info.name, start, count)
            squared += float(np.dot(delta, delta))
    return math.sqrt(squared)


def global_reader(header: SafetensorsHeader, read_range: Callable[[int, int], bytes]) -> GlobalReader:
    """A GlobalReader over a stored model: `read_range(a, b)` returns bytes [a, b) of its object."""
    tensors = header.by_name()

    def read(name: str, start: int, count: int) -> np.ndarray:
        info = tensors[name]
        dtype = NUMPY_DTYPES[info.dtype]
        first = header.data_start + info.start + start * dtype.itemsize
        raw = read_range(first, first + count * dtype.itemsize)
        if len(raw) != count * dtype.itemsize:
            raise ValueError(f"short read of the global model's {name}")
        return np.frombuffer(raw, dtype=dtype).astype(np.float64)

    return read


#: the model spec lives in the experiment's item (DynamoDB items hold at most 400 KB).
MAX_SPEC_JSON_BYTES = 256 << 10


def validate_initial_model(buf: bytes | memoryview, limits: HeaderLimits = HeaderLimits()) -> ModelSpec:
    """The spec every update must match, or UpdateRejected (shown as the experiment's model_error)."""
    header = parse_header(buf, total_size=len(buf), limits=limits)
    spec = ModelSpec.from_header(header)
    if not spec.tensors:
        raise UpdateRejected("EMPTY_MODEL", "the model has no tensors")
    size = len(json.dumps(spec.to_json()))
    if size > MAX_SPEC_JSON_BYTES:
        raise UpdateRejected("MODEL_SPEC_TOO_LARGE", f"the model's tensor list takes {size} bytes as JSON; "
                             f"at most {MAX_SPEC_JSON_BYTES} fit (fewer or shorter tensor names)")
    check_decodable(header)
    for info in header.tensors:
        if info.dtype in FLOAT_DTYPES and not np.isfinite(tensor_view(buf, header, info)).all():
            raise UpdateRejected("NON_FINITE", f"{info.name} holds NaN or Inf")
    return spec
