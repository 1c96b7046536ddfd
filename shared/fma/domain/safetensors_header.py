"""Strict, bounded parsing of a safetensors header, without numpy.

Why our own parser: an update is untrusted input, so its header must be checked against hard
limits (header size, tensor count, metadata size, shapes and offsets) *before* anything is
allocated or the body is read. The safetensors library parses lazily but only after mapping the
whole buffer; this module needs only the first bytes of the object (a ranged read).
"""

from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass, field

from fma.domain.errors import UpdateRejected

#: bytes per element of every dtype FMA accepts (safetensors names).
DTYPE_SIZES: dict[str, int] = {
    "F64": 8, "F32": 4, "F16": 2, "BF16": 2,
    "I64": 8, "I32": 4, "I16": 2, "I8": 1,
    "U64": 8, "U32": 4, "U16": 2, "U8": 1, "BOOL": 1,
}
FLOAT_DTYPES = frozenset({"F64", "F32", "F16", "BF16"})


@dataclass(frozen=True)
class HeaderLimits:
    """Hard bounds applied before any allocation; defaults suit models up to a few GB."""

    max_header_bytes: int = 1 << 20
    max_tensors: int = 10_000
    max_metadata_bytes: int = 64 << 10
    max_rank: int = 8
    max_name_length: int = 512
    #: a header is an object of tensor entries holding lists: 3 levels; deeper is not safetensors.
    max_json_depth: int = 8


@dataclass(frozen=True)
class TensorInfo:
    name: str
    dtype: str
    shape: tuple[int, ...]
    start: int  # offset into the data section
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)

    @property
    def nbytes(self) -> int:
        return self.end - self.start


@dataclass(frozen=True)
class SafetensorsHeader:
    tensors: tuple[TensorInfo, ...]
    metadata: dict[str, str] = field(default_factory=dict)
    header_length: int = 0

    @property
    def data_start(self) -> int:
        """Absolute offset of the data section in the object."""
        return 8 + self.header_length

    @property
    def total_size(self) -> int:
        return self.data_start + (self.tensors[-1].end if self.tensors else 0)

    def by_name(self) -> dict[str, TensorInfo]:
        return {t.name: t for t in self.tensors}


def header_length(prefix: bytes | memoryview, limits: HeaderLimits = HeaderLimits()) -> int:
    """Length of the JSON header from the first 8 bytes; refuses oversized headers up front."""
    if len(prefix) < 8:
        raise UpdateRejected("NOT_SAFETENSORS", "file is shorter than the 8-byte safetensors prefix")
    (n,) = struct.unpack("<Q", bytes(prefix[:8]))
    if len(prefix) > 8 and bytes(prefix[8:9]) != b"{":
        raise UpdateRejected("NOT_SAFETENSORS", "no JSON header after the 8-byte length: not a safetensors file")
    if n == 0:
        raise UpdateRejected("NOT_SAFETENSORS", "empty safetensors header")
    if n > limits.max_header_bytes:
        raise UpdateRejected(
            "HEADER_TOO_LARGE", f"header of {n} bytes exceeds the limit of {limits.max_header_bytes}"
        )
    return n


def parse_header(
    buf: bytes | memoryview, *, total_size: int | None = None, limits: HeaderLimits = HeaderLimits()
) -> SafetensorsHeader:
    """Parse and check the header at the start of `buf` (which needs only hold the header).

    `total_size` is the size of the whole object when known: tensors must then tile the data
    section exactly, with no gap, overlap or byte beyond the end.
    """
    n = header_length(buf, limits)
    if len(buf) < 8 + n:
        raise UpdateRejected("NOT_SAFETENSORS", "file ends inside the safetensors header")
    raw = _load_json_object(bytes(buf[8 : 8 + n]), limits.max_json_depth)
    metadata = _parse_metadata(raw.pop("__metadata__", None), limits)
    if len(raw) > limits.max_tensors:
        raise UpdateRejected("TOO_MANY_TENSORS", f"{len(raw)} tensors exceed the limit of {limits.max_tensors}")
    tensors = sorted((_parse_tensor(name, entry, limits) for name, entry in raw.items()),
                     key=lambda t: (t.start, t.end))
    _check_tiling(tensors, None if total_size is None else total_size - 8 - n)
    return SafetensorsHeader(tuple(tensors), metadata, n)


class _DuplicateKey(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    """json's object hook that refuses duplicate keys: with them, two readers of one file could
    see different tensors (the last or the first `w`), so such a file is not a safetensors file."""
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _DuplicateKey("duplicate key")
    return out


def _no_constant(name: str) -> object:
    raise ValueError(f"{name} is not JSON")


_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?')  # an unterminated string runs to the end: linear
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def json_too_deep(text: str, limit: int) -> bool:
    """True when JSON text nests arrays/objects more than `limit` deep (strings are skipped).

    Checked before json.loads so a nesting bomb costs one linear scan that stops at the limit,
    and the verdict does not depend on the interpreter's recursion limit or stack depth."""
    depth = 0
    for ch in _NOT_BRACKET.sub("", _JSON_STRING.sub("", text)):
        depth += 1 if ch in "[{" else -1
        if depth > limit:
            return True
    return False


def _load_json_object(raw: bytes, max_depth: int) -> dict[str, object]:
    """The header as a dict; any malformed, duplicated, non-standard or deeply nested JSON is
    NOT_SAFETENSORS."""
    try:
        text = raw.decode("utf-8")
        if json_too_deep(text, max_depth):
            raise UpdateRejected("NOT_SAFETENSORS", f"header JSON nests deeper than {max_depth} levels")
        data = json.loads(text, object_pairs_hook=_unique_pairs, parse_constant=_no_constant)
    except _DuplicateKey:
        raise UpdateRejected("NOT_SAFETENSORS", "header has a duplicate key") from None
    except RecursionError:
        raise UpdateRejected("NOT_SAFETENSORS", "header JSON is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UpdateRejected("NOT_SAFETENSORS", f"header is not valid JSON ({exc.__class__.__name__})") from None
    if not isinstance(data, dict):
        raise UpdateRejected("NOT_SAFETENSORS", "header is not a JSON object")
    return data


def is_utf8(text: str) -> bool:
    """False for strings holding lone surrogates (JSON can escape them, UTF-8 cannot encode them,
    so they could be neither stored nor shown)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _parse_metadata(meta: object, limits: HeaderLimits) -> dict[str, str]:
    if meta is None:
        return {}
    if not isinstance(meta, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in meta.items()):
        raise UpdateRejected("BAD_METADATA", "__metadata__ must map strings to strings")
    if not all(is_utf8(k) and is_utf8(v) for k, v in meta.items()):
        raise UpdateRejected("BAD_METADATA", "__metadata__ holds a string that is not valid Unicode")
    size = sum(len(k) + len(v) for k, v in meta.items())
    if size > limits.max_metadata_bytes:
        raise UpdateRejected("METADATA_TOO_LARGE", f"metadata of {size} bytes exceeds {limits.max_metadata_bytes}")
    return dict(meta)


def _parse_tensor(name: str, entry: object, limits: HeaderLimits) -> TensorInfo:
    if not name or len(name) > limits.max_name_length or not is_utf8(name):
        raise UpdateRejected("BAD_TENSOR", f"tensor names must be 1 to {limits.max_name_length} Unicode characters")
    if not isinstance(entry, dict):
        raise UpdateRejected("BAD_TENSOR", f"entry for {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise UpdateRejected("BAD_DTYPE", f"tensor {name!r} has an unsupported dtype")
    if (not isinstance(shape, list) or len(shape) > limits.max_rank
            or not all(type(d) is int and 0 <= d < 1 << 40 for d in shape)):
        raise UpdateRejected("BAD_SHAPE", f"tensor {name!r} has an invalid shape")
    if (not isinstance(offsets, list) or len(offsets) != 2
            or not all(type(o) is int and o >= 0 for o in offsets) or offsets[0] > offsets[1]):
        raise UpdateRejected("BAD_OFFSETS", f"tensor {name!r} has invalid data_offsets")
    info = TensorInfo(name, dtype, tuple(shape), offsets[0], offsets[1])
    if info.numel * DTYPE_SIZES[dtype] != info.nbytes:
        raise UpdateRejected("BAD_OFFSETS", f"tensor {name!r}: byte range does not match shape and dtype")
    return info


def _check_tiling(tensors: list[TensorInfo], data_size: int | None) -> None:
    cursor = 0
    for t in tensors:
        if t.start != cursor:
            raise UpdateRejected("BAD_OFFSETS", f"tensor {t.name!r} overlaps another or leaves a gap")
        cursor = t.end
    if data_size is not None and cursor != data_size:
        raise UpdateRejected("BAD_OFFSETS", "tensor data does not match the file size")
