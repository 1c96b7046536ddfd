"""Checks every update against the experiment's model spec before it may reach a model.

Objects are checked through a RangedObject (fma.domain.ranged): reads of at most 16 MiB,
memory O(chunk) whatever the update's size. `validate_update` / `validate_initial_model` take
bytes already in memory and run the same checks over them.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from fma.domain.codec import NUMPY_DTYPES
from fma.domain.content_scan import NORM_CHUNK_ELEMENTS, GlobalReader, scan_object
from fma.domain.errors import UpdateRejected
from fma.domain.model_spec import ModelSpec
from fma.domain.ranged import RangedObject
from fma.domain.safetensors_header import HeaderLimits, SafetensorsHeader
from fma.domain.update_meta import MAX_NUM_EXAMPLES, UpdateMeta, parse_update_meta

__all__ = [
    "NORM_CHUNK_ELEMENTS",
    "GlobalReader",
    "ValidUpdate",
    "ValidationLimits",
    "check_decodable",
    "global_reader",
    "validate_initial_model",
    "validate_initial_model_stream",
    "validate_update",
    "validate_update_stream",
]


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
    #: hex sha256 of the whole object (computed by the same pass that checked it).
    sha256: str | None = None


def validate_update(
    buf: bytes | memoryview,
    spec: ModelSpec,
    limits: ValidationLimits,
    *,
    expected_round: int | None = None,
    global_model: GlobalReader | None = None,
) -> ValidUpdate:
    """validate_update_stream over bytes in memory."""
    return validate_update_stream(RangedObject.of_bytes(buf), spec, limits, expected_round=expected_round,
                                  global_model=global_model)


def validate_update_stream(
    obj: RangedObject,
    spec: ModelSpec,
    limits: ValidationLimits,
    *,
    expected_round: int | None = None,
    global_model: GlobalReader | None = None,
    declared_sha256: str | None = None,
) -> ValidUpdate:
    """Raise UpdateRejected with a client-readable reason, or return the update's facts.

    Size, header, metadata and the spec are checked before the body is read. Then one pass
    hashes every byte and checks every float; a `declared_sha256` that differs is reported as
    SHA256_MISMATCH before any fault of the contents (the bytes are not the ones the client
    meant to send). With `limits.max_update_norm`, `global_model` must read the round's global
    model: the L2 norm of (update - global) over the float tensors is computed slice by slice.
    """
    if obj.size > limits.max_update_bytes:
        raise UpdateRejected("TOO_LARGE", f"{obj.size} bytes exceed max_update_bytes={limits.max_update_bytes}")
    header, raw = obj.read_header(limits.header)
    meta = parse_update_meta(header.metadata)
    spec.check(header)
    if limits.max_update_norm is not None and global_model is None:
        raise ValueError("max_update_norm needs the round's global model")
    refused = _refused_by_meta(meta, header, limits, expected_round)
    if refused is not None and declared_sha256 is None:
        raise refused
    scan = scan_object(obj, header, raw, check_content=refused is None, hash_all=declared_sha256 is not None,
                       global_model=global_model if limits.max_update_norm is not None else None)
    if declared_sha256 is not None and scan.sha256 != declared_sha256:
        raise UpdateRejected("SHA256_MISMATCH", "the uploaded bytes do not have the sha256 declared when "
                             "the upload was requested")
    if refused is not None or scan.error is not None:
        raise refused or scan.error  # type: ignore[misc]
    if scan.norm is not None and limits.max_update_norm is not None and scan.norm > limits.max_update_norm:
        raise UpdateRejected("NORM_TOO_LARGE",
                             f"update norm {scan.norm:.6g} exceeds max_update_norm={limits.max_update_norm:g}")
    return ValidUpdate(meta, obj.size, scan.norm, scan.sha256)


def _refused_by_meta(meta: UpdateMeta, header: SafetensorsHeader, limits: ValidationLimits,
                     expected_round: int | None) -> UpdateRejected | None:
    """The first fault the header's facts show (reported after a sha256 mismatch)."""
    if meta.num_examples > limits.max_num_examples:
        return UpdateRejected("TOO_MANY_EXAMPLES", f"fma.num_examples={meta.num_examples} exceeds the "
                              f"experiment's max_num_examples={limits.max_num_examples}")
    if expected_round is not None and meta.round is not None and meta.round != expected_round:
        return UpdateRejected("WRONG_ROUND", f"file says round {meta.round}, uploaded for round {expected_round}")
    try:
        check_decodable(header)
    except UpdateRejected as exc:
        return exc
    return None


def check_decodable(header: SafetensorsHeader) -> None:
    """Refuse a dtype the header format allows but the codec cannot turn into numpy."""
    for info in header.tensors:
        if info.dtype not in NUMPY_DTYPES:
            raise UpdateRejected("UNSUPPORTED_DTYPE", f"tensor {info.name!r} has dtype {info.dtype}, "
                                 "which FMA cannot aggregate")


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
    """validate_initial_model_stream over bytes in memory: the spec only."""
    return validate_initial_model_stream(RangedObject.of_bytes(buf), limits)[0]


def validate_initial_model_stream(obj: RangedObject, limits: HeaderLimits = HeaderLimits(),
                                  ) -> tuple[ModelSpec, str]:
    """The spec every update must match and the model's sha256, or UpdateRejected (shown as the
    experiment's model_error); one pass of bounded reads, like an update's."""
    header, raw = obj.read_header(limits)
    spec = ModelSpec.from_header(header)
    if not spec.tensors:
        raise UpdateRejected("EMPTY_MODEL", "the model has no tensors")
    size = len(json.dumps(spec.to_json()))
    if size > MAX_SPEC_JSON_BYTES:
        raise UpdateRejected("MODEL_SPEC_TOO_LARGE", f"the model's tensor list takes {size} bytes as JSON; "
                             f"at most {MAX_SPEC_JSON_BYTES} fit (fewer or shorter tensor names)")
    check_decodable(header)
    scan = scan_object(obj, header, raw, hash_all=False)
    if scan.error is not None:
        raise scan.error
    return spec, scan.sha256 or ""
