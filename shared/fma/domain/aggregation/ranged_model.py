"""A stored model (or optimizer state) whose tensors are read by byte range, only where used.

A fanout child over one parameter range needs the global model at that range only (DP's
clipping, a clipped sum's rest); decoding the whole object would make every child O(model).
`open_model` reads the safetensors header and returns `LazyTensor`s: they carry the shape and
dtype the engine's layout needs, and `FlatLayout.gather` reads exactly the elements of a slice
through `read_flat` (ranged reads of at most `chunk_bytes`). Anything else that needs the whole
tensor gets it through `np.asarray` (`__array__`), read then. The values are the stored bytes,
so the arithmetic (and the published bytes) are those of a decoded model.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from fma.domain.codec import NUMPY_DTYPES
from fma.domain.safetensors_header import HeaderLimits, TensorInfo, header_length, parse_header

#: first read of a stored model: its header, for any ordinary model, in one GET.
HEADER_PROBE_BYTES = 64 << 10
#: the largest ranged read a lazy tensor makes (S3 serves 8-16 MiB ranges best).
READ_BYTES = 16 << 20

Read = Callable[[int, int], bytes | memoryview]


class LazyTensor:
    """One tensor of a stored safetensors object; its bytes are read when asked for."""

    def __init__(self, info: TensorInfo, data_start: int, read: Read, chunk_bytes: int = READ_BYTES) -> None:
        self.name = info.name
        self.shape = tuple(info.shape)
        self.dtype = NUMPY_DTYPES[info.dtype]
        self.size = info.numel
        self.ndim = len(self.shape)
        self.nbytes = info.nbytes
        self._start = data_start + info.start
        self._read = read
        self._chunk = max(self.dtype.itemsize, chunk_bytes - chunk_bytes % self.dtype.itemsize)

    def read_flat(self, lo: int, hi: int, out: np.ndarray | None = None) -> np.ndarray:
        """Elements [lo, hi) of the flattened tensor (into `out`, cast to its dtype, if given),
        in ranged reads of at most `chunk_bytes`; a short read raises ValueError."""
        if not 0 <= lo <= hi <= self.size:
            raise ValueError(f"elements [{lo}, {hi}) are outside tensor {self.name} of {self.size}")
        out = np.empty(hi - lo, dtype=self.dtype) if out is None else out
        item = self.dtype.itemsize
        a, end = self._start + lo * item, self._start + hi * item
        at = 0
        while a < end:
            b = min(end, a + self._chunk)
            data = self._read(a, b)
            if len(data) != b - a:
                raise ValueError(f"short read of tensor {self.name}: {len(data)} of {b - a} bytes")
            count = (b - a) // item
            out[at : at + count] = np.frombuffer(data, dtype=self.dtype, count=count)
            at, a = at + count, b
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self.read_flat(0, self.size).reshape(self.shape)
        return whole if dtype is None else whole.astype(dtype, copy=False)

    def __float__(self) -> float:
        return float(np.asarray(self).reshape(-1)[0])

    def __int__(self) -> int:
        return int(np.asarray(self).reshape(-1)[0])

    def __len__(self) -> int:
        if not self.shape:
            raise TypeError("len() of a 0-d tensor")
        return self.shape[0]


def open_model(size: int, read: Read, limits: HeaderLimits = HeaderLimits(),
               chunk_bytes: int = READ_BYTES) -> tuple[dict[str, LazyTensor], dict[str, str]]:
    """The tensors (lazy) and metadata of a stored safetensors object of `size` bytes, from its
    header alone: one ranged read (two when the header is unusually big)."""
    head = read(0, min(size, HEADER_PROBE_BYTES))
    n = header_length(head, limits)
    if 8 + n > len(head):
        head = read(0, 8 + n)
    header = parse_header(head, total_size=size, limits=limits)
    return {t.name: LazyTensor(t, header.data_start, read, chunk_bytes) for t in header.tensors}, header.metadata
