"""Where each parameter lives: the flat parameter vector and its byte ranges in each update.

The engine sees the model as one flat vector, tensors in name order (the order of
`ModelSpec` and of Flower's list of arrays). A slice [s, e) of that vector (a chunk or a shard)
maps, in one update, to a few byte ranges of the safetensors object: usually one, since
writers lay tensors out contiguously. Reading those ranges is all the engine ever fetches, so
memory follows the slice, not the object.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass

import numpy as np

from fma.domain.aggregation.types import UpdateInput
from fma.domain.codec import NUMPY_DTYPES
from fma.domain.safetensors_header import SafetensorsHeader, header_length, parse_header

#: first ranged read of an update: enough for the header of any ordinary model.
HEADER_PROBE_BYTES = 64 << 10


@dataclass(frozen=True)
class FlatLayout:
    """The global model as a flat vector: tensor i covers [offsets[i], offsets[i] + sizes[i])."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    dtypes: tuple[np.dtype, ...]
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    acc_dtype: np.dtype

    @classmethod
    def from_model(cls, model: Mapping[str, np.ndarray]) -> FlatLayout:
        names = tuple(sorted(model))
        shapes = tuple(tuple(model[n].shape) for n in names)
        dtypes = tuple(np.dtype(model[n].dtype) for n in names)
        sizes = tuple(math.prod(s) for s in shapes)
        offsets = tuple(int(x) for x in np.cumsum((0, *sizes))[:-1])
        wide = any(d == np.float64 or d.kind in "iub" for d in dtypes)
        return cls(names, shapes, dtypes, offsets, sizes, np.dtype(np.float64 if wide else np.float32))

    @property
    def total(self) -> int:
        return (self.offsets[-1] + self.sizes[-1]) if self.names else 0

    def slices(self, elems: int) -> list[tuple[int, int]]:
        """[s, e) slices of at most `elems` elements covering the flat vector, in order."""
        step = max(1, int(elems))
        return [(s, min(self.total, s + step)) for s in range(0, self.total, step)]

    def nbytes(self, s: int, e: int) -> int:
        """Bytes of [s, e) of the flat vector in the model's own dtypes (an update's size)."""
        return sum((hi - lo) * self.dtypes[i].itemsize for i, lo, hi in self.overlaps(s, e))

    def overlaps(self, s: int, e: int) -> Iterator[tuple[int, int, int]]:
        """(tensor index, first, last) element ranges inside each tensor that [s, e) covers."""
        i = max(0, bisect.bisect_right(self.offsets, s) - 1)
        while i < len(self.names) and self.offsets[i] < e:
            lo, hi = max(s, self.offsets[i]), min(e, self.offsets[i] + self.sizes[i])
            if hi > lo:
                yield i, lo - self.offsets[i], hi - self.offsets[i]
            i += 1

    def split(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """The model dict from a flat vector: views where the dtype already matches.

        Integer and bool tensors (BatchNorm's `num_batches_tracked`, masks) were computed as
        floats by the strategy's rule; they are rounded to the nearest integer (ties to even)
        and clipped to the dtype's range, so a bool is the rounded mean (a majority vote).
        Float16 and bfloat16 are rounded from the float32 result (round to nearest even).
        """
        out = {}
        lazy = not isinstance(flat, np.ndarray) and hasattr(flat, "read")  # left in its pieces (lazy_result)
        for name, shape, dtype, off, size in zip(
            self.names, self.shapes, self.dtypes, self.offsets, self.sizes, strict=True
        ):
            if lazy:
                from fma.domain.aggregation.lazy_result import LazyOutput

                out[name] = LazyOutput(flat, off, shape, dtype, cast_to)  # type: ignore[arg-type]
            else:
                out[name] = cast_to(flat[off : off + size], dtype).reshape(shape)
        return out

    def integer_mask(self) -> np.ndarray | None:
        """True at the flat positions of integer and bool tensors, or None if there are none."""
        if not any(d.kind in "iub" for d in self.dtypes):
            return None
        mask = np.zeros(self.total, dtype=bool)
        for dtype, off, size in zip(self.dtypes, self.offsets, self.sizes, strict=True):
            mask[off : off + size] = dtype.kind in "iub"
        return mask

    def gather(self, model: Mapping[str, np.ndarray], s: int, e: int) -> np.ndarray:
        """Copy of model[s:e] as a flat vector in the accumulation dtype. A stored model opened
        lazily (ranged_model.py) is read at exactly those elements, never whole."""
        out = np.empty(e - s, dtype=self.acc_dtype)
        for i, lo, hi in self.overlaps(s, e):
            dst = self.offsets[i] + lo - s
            src = model[self.names[i]]
            if hasattr(src, "read_flat"):
                out[dst : dst + hi - lo] = src.read_flat(lo, hi)
            else:
                out[dst : dst + hi - lo] = np.asarray(src).reshape(-1)[lo:hi]
        return out

    def flatten(self, model: Mapping[str, np.ndarray]) -> np.ndarray:
        return self.gather(model, 0, self.total)


def cast_to(part: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Computed values in a tensor's dtype: integers and bools rounded (ties to even) and
    clipped, floats rounded to nearest (the one rule of `split`, elementwise)."""
    if dtype.kind in "iub":
        part = _to_integer_range(np.rint(part), dtype)
    return part.astype(dtype, copy=False)


def _to_integer_range(values: np.ndarray, dtype: np.dtype) -> np.ndarray:
    """Clip rounded floats into `dtype`'s range (a cast out of range is undefined in numpy)."""
    if dtype.kind == "b":
        return np.clip(values, 0, 1)
    info = np.iinfo(dtype)
    high = float(info.max)
    if high > 2.0**53:  # float(2**63 - 1) rounds up to 2**63, which int64 cannot hold
        high = float(np.nextafter(high, 0.0))
    return np.clip(values, float(info.min), high)


@dataclass(frozen=True)
class Piece:
    """`count` elements of `dtype` at byte `src` of a read buffer go to element `dst` of the slice."""

    dst: int
    count: int
    src: int
    dtype: np.dtype


@dataclass(frozen=True)
class RangeRead:
    """One ranged GET [start, end) of an object and where its bytes land."""

    start: int
    end: int
    pieces: tuple[Piece, ...]


@dataclass(frozen=True)
class UpdateLayout:
    """Absolute byte offset and dtype of each tensor of one update, in the global layout order."""

    starts: tuple[int, ...]
    dtypes: tuple[np.dtype, ...]

    def reads(self, layout: FlatLayout, s: int, e: int) -> list[RangeRead]:
        """The ranged reads that cover [s, e) of the flat vector, adjacent ranges merged."""
        out: list[RangeRead] = []
        for i, lo, hi in layout.overlaps(s, e):
            dtype = self.dtypes[i]
            a = self.starts[i] + lo * dtype.itemsize
            b = a + (hi - lo) * dtype.itemsize
            dst = layout.offsets[i] + lo - s
            if out and out[-1].end == a:
                last = out[-1]
                piece = Piece(dst, hi - lo, a - last.start, dtype)
                out[-1] = RangeRead(last.start, b, (*last.pieces, piece))
            else:
                out.append(RangeRead(a, b, (Piece(dst, hi - lo, 0, dtype),)))
        return out


def read_header(update: UpdateInput, fetch_range: Callable[[int, int], bytes | memoryview]) -> SafetensorsHeader:
    """Parse an update's header with one ranged read (two when the header is unusually big)."""
    head = fetch_range(0, min(update.size, HEADER_PROBE_BYTES))
    n = header_length(head)
    if 8 + n > len(head):
        head = fetch_range(0, 8 + n)
    return parse_header(head, total_size=update.size)


def update_layout(layout: FlatLayout, header: SafetensorsHeader, client_id: str) -> UpdateLayout:
    """Map the update's tensors onto the global layout; refuse one that does not match it."""
    infos = header.by_name()
    if set(infos) != set(layout.names):
        raise ValueError(f"update of {client_id} has tensors {sorted(infos)[:5]}..., not the model's")
    starts, dtypes = [], []
    for name, shape in zip(layout.names, layout.shapes, strict=True):
        info = infos[name]
        if tuple(info.shape) != tuple(shape) or info.dtype not in NUMPY_DTYPES:
            raise ValueError(f"update of {client_id}: tensor {name} has shape {info.shape}")
        starts.append(header.data_start + info.start)
        dtypes.append(NUMPY_DTYPES[info.dtype])
    return UpdateLayout(tuple(starts), tuple(dtypes))
