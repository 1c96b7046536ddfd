"""Reading one stored safetensors object through ranged reads of bounded size.

Why: an update may be 50 GB and an ingest function has a few hundred MB, so nothing may hold
an object whole. `RangedObject` pairs an object's size with a `read(start, end)` of its bytes
(a store's `get_range` pinned to one version) and hands out the header and each tensor's
elements in pieces of at most `chunk_bytes` (16 MiB by default). Ingest validates with it;
any other reader of big objects (aggregation) can reuse `tensor_pieces`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from fma.domain.codec import NUMPY_DTYPES
from fma.domain.errors import UpdateRejected
from fma.domain.safetensors_header import HeaderLimits, SafetensorsHeader, TensorInfo, header_length, parse_header

#: the largest ranged read FMA makes of an object (issue 13: at most 16 MiB each).
MAX_RANGE_BYTES = 16 << 20
#: bytes [start, end) of the object; a short read raises ValueError (a store's get_range).
ReadRange = Callable[[int, int], bytes]


@dataclass(frozen=True)
class RangedObject:
    """An object of `size` bytes read through `read`; every read spans at most `chunk_bytes`."""

    size: int
    read: ReadRange
    chunk_bytes: int = MAX_RANGE_BYTES

    @classmethod
    def of_bytes(cls, buf: bytes | memoryview, chunk_bytes: int = MAX_RANGE_BYTES) -> RangedObject:
        """An object already in memory (direct uploads, tests): the same checks, no copy of `buf`."""
        view = memoryview(buf).cast("B")
        return cls(len(view), lambda a, b: view[a:b], chunk_bytes)

    @property
    def piece_bytes(self) -> int:
        """`chunk_bytes` rounded down to whole elements of the widest dtype (8 bytes)."""
        return max(8, self.chunk_bytes - self.chunk_bytes % 8)

    def read_header(self, limits: HeaderLimits = HeaderLimits()) -> tuple[SafetensorsHeader, bytes]:
        """The parsed header (tensors tiling the rest of the object exactly) and its raw bytes.

        The length prefix is read first and bounded by `limits.max_header_bytes` before the
        header itself is read, so a crafted length costs neither memory nor a download."""
        n = header_length(self.read(0, min(self.size, 9)), limits)
        if 8 + n > self.size:
            raise UpdateRejected("NOT_SAFETENSORS", "the header is longer than the file")
        raw = bytes(self.read(0, 8 + n))
        return parse_header(raw, total_size=self.size, limits=limits), raw

    def pieces(self, start: int, end: int) -> Iterator[tuple[int, bytes | memoryview]]:
        """(offset, bytes) of [start, end) in reads of at most `piece_bytes` each."""
        step = self.piece_bytes
        for first in range(start, end, step):
            yield first, self.read(first, min(end, first + step))

    def tensor_pieces(self, header: SafetensorsHeader, info: TensorInfo,
                      ) -> Iterator[tuple[int, bytes | memoryview, np.ndarray]]:
        """(first element, raw bytes, elements) of one tensor, piece by piece.

        Pieces hold whole elements because `piece_bytes` is a multiple of every item size;
        the array is a view of the raw bytes (no copy)."""
        dtype = NUMPY_DTYPES[info.dtype]
        begin = header.data_start + info.start
        for offset, raw in self.pieces(begin, header.data_start + info.end):
            yield (offset - begin) // dtype.itemsize, raw, np.frombuffer(raw, dtype=dtype)
