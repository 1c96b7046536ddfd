"""One pass over a stored safetensors object: sha256 of every byte, finiteness of every float,
and the L2 distance from a global model, in bounded memory.

The object is read header first and then tensor by tensor in offset order; the tensors tile
the data section exactly (parse_header checked it), so those reads are the whole object in
order and feed the hash. Per piece (at most 16 MiB) the numeric checks run on slices of
NORM_CHUNK_ELEMENTS elements, so besides one piece the pass holds a few MiB of float64.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from fma.domain.errors import UpdateRejected
from fma.domain.ranged import RangedObject
from fma.domain.safetensors_header import FLOAT_DTYPES, SafetensorsHeader, TensorInfo

#: (tensor name, first element, element count) -> those elements of the global model as float64.
GlobalReader = Callable[[str, int, int], np.ndarray]
#: elements compared at a time by the finiteness and norm checks (8 MiB of float64).
NORM_CHUNK_ELEMENTS = 1 << 20


@dataclass
class ScanResult:
    """What the pass found: the object's sha256 (hex; None if the pass stopped early), the first
    content fault (NON_FINITE) and the norm of (object - global) when a global model was given."""

    sha256: str | None
    error: UpdateRejected | None = None
    norm: float | None = None


def scan_object(obj: RangedObject, header: SafetensorsHeader, raw_header: bytes, *,
                check_content: bool = True, global_model: GlobalReader | None = None,
                hash_all: bool = True) -> ScanResult:
    """Hash the object and check its floats; `check_content=False` only hashes.

    A fault stops the numeric checks; with `hash_all` the hashing goes on to the end (a caller
    that compares a declared sha256 reports a mismatch before a content fault), without it the
    pass stops at the fault and `sha256` is None."""
    hasher = hashlib.sha256(raw_header)
    result = ScanResult(None)
    squared = 0.0 if global_model is not None else None
    for info in header.tensors:
        for first, raw, elements in obj.tensor_pieces(header, info):
            hasher.update(raw)
            if check_content and result.error is None and info.dtype in FLOAT_DTYPES:
                try:
                    squared = _check_piece(info, first, elements, global_model, squared)
                except UpdateRejected as exc:
                    result.error = exc
            if result.error is not None and not hash_all:
                return result
    result.sha256 = hasher.hexdigest()
    if squared is not None and result.error is None:
        result.norm = math.sqrt(squared)
    return result


def _check_piece(info: TensorInfo, first: int, elements: np.ndarray, global_model: GlobalReader | None,
                 squared: float | None) -> float | None:
    """Finiteness of one piece and its share of the squared norm, slice by slice."""
    for start in range(0, elements.size, NORM_CHUNK_ELEMENTS):
        part = elements[start : start + NORM_CHUNK_ELEMENTS]
        if not np.isfinite(part).all():
            raise UpdateRejected("NON_FINITE", f"{info.name} holds NaN or Inf")
        if global_model is not None and squared is not None:
            delta = part.astype(np.float64)
            delta -= global_model(info.name, first + start, part.size)
            squared += float(np.dot(delta, delta))
    return squared
