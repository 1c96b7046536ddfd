"""A pass's result left in its stored pieces, so the fanout reduce never holds the model.

The reduce of a strategy whose result is a pass's combined vector as it is (FedAvg, FedProx,
median, trimmed mean) gets a `PieceVector` instead of the vector: `read(s, e)` combines the
pieces covering [s, e) exactly as the pass's combine does (per range the tree of its partition
pieces, or the map piece itself), so its values are the materialized vector's, bit for bit.
`FlatLayout.split` turns it into `LazyOutput` tensors that the streaming encoder reads range by
range (codec.encode_stream): the model is written while it is combined, one range in memory.
Anything that needs the whole vector gets it through `np.asarray` (`__array__`).
"""

from __future__ import annotations

import bisect
from collections.abc import Callable

import numpy as np

from fma.domain.aggregation.passes import tree_sum


class PieceVector:
    """The combined flat vector of a pass, read from its pieces: piece `r * per_range + p` is
    partition p's value over `spans[r]` (a map pass: per_range 1)."""

    def __init__(self, total: int, dtype: np.dtype, spans: list[tuple[int, int]], per_range: int,
                 load: Callable[[int], np.ndarray], fanin: int,
                 finish: Callable[[int, int, np.ndarray], None] | None = None) -> None:
        self.size, self.dtype, self.shape, self.ndim = total, np.dtype(dtype), (total,), 1
        self.spans, self.per_range, self.load, self.fanin = spans, per_range, load, fanin
        #: applied in place to each range once combined, as the pass's combine does (DP's finish).
        self.finish = finish
        self._starts = [s for s, _ in spans]
        self._cached: tuple[int, np.ndarray] | None = None

    def _span(self, r: int) -> np.ndarray:
        """Range r combined (the last one asked for is kept: a reader in order loads each once)."""
        if self._cached is None or self._cached[0] != r:
            self._cached = None  # let the previous range go before combining the next
            first = r * self.per_range
            value = tree_sum((self.load(i) for i in range(first, first + self.per_range)), self.fanin)
            if self.finish is not None:
                self.finish(*self.spans[r], value)
            self._cached = (r, value)
        return self._cached[1]

    def read(self, s: int, e: int) -> np.ndarray:
        """Elements [s, e) of the combined vector."""
        out = np.empty(e - s, dtype=self.dtype)
        at, r = s, max(0, bisect.bisect_right(self._starts, s) - 1)
        while at < e:
            a, b = self.spans[r]
            hi = min(e, b)
            out[at - s : hi - s] = self._span(r)[at - a : hi - a]
            at, r = hi, r + 1
        return out

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self.read(0, self.size)
        return whole if dtype is None else whole.astype(dtype, copy=False)


class LazyOutput:
    """One tensor of the output model over a `PieceVector`: elements [offset, offset + size),
    cast to `dtype` the way `FlatLayout.split` casts them (integers rounded and clipped)."""

    def __init__(self, vector: PieceVector, offset: int, shape: tuple[int, ...], dtype: np.dtype,
                 cast: Callable[[np.ndarray, np.dtype], np.ndarray]) -> None:
        self.vector, self.offset, self.shape, self.dtype = vector, offset, tuple(shape), np.dtype(dtype)
        self.size = int(np.prod(self.shape, dtype=np.int64))
        self.ndim, self.nbytes = len(self.shape), self.size * self.dtype.itemsize
        self._cast = cast

    def read_flat(self, lo: int, hi: int) -> np.ndarray:
        """Elements [lo, hi) of the flattened tensor, in its dtype."""
        return self._cast(self.vector.read(self.offset + lo, self.offset + hi), self.dtype)

    def __array__(self, dtype: np.dtype | None = None, copy: bool | None = None) -> np.ndarray:
        whole = self.read_flat(0, self.size).reshape(self.shape)
        return whole if dtype is None else whole.astype(dtype, copy=False)
