"""The execution engine: ranged reads with prefetch, streaming sums and shard passes.

Strategies (built-in and user ones) receive an `Engine` and compose its three passes:
`weighted_sum` (decomposable, one client slice in memory at a time, fused axpy into one
accumulator), `shard_pass` (coordinate-wise: a clients x shard block at a time) and
`client_vector`. Every read goes through the optional per-client transform that the DP wrapper
sets (clipping), so a wrapper works around any strategy that uses the engine.

Determinism: tasks are issued and consumed in a fixed order (client-id order, then slice
order); a thread pool only overlaps the downloads with the arithmetic.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from fma.domain.aggregation.engine_options import PLANNED_IN_FLIGHT, EngineOptions, Stats
from fma.domain.aggregation.layout import (
    FlatLayout,
    RangeRead,
    UpdateLayout,
    read_header,
    update_layout,
)
from fma.domain.aggregation.math import axpy, single_threaded_blas
from fma.domain.aggregation.passes import (
    LocalPasses,
    Partitioning,
    PassOp,
    PassRunner,
    concat,
    partitions,
    tree_sum,
)
from fma.domain.aggregation.types import UpdateInput

Block = list[tuple[RangeRead, bytes | memoryview]]
#: below this a ranged read costs more in requests than it saves in memory.
MIN_CHUNK_BYTES = 256 << 10
#: smallest automatic shard (elements per client) when a small model is split in eighths.
MIN_SHARD_ELEMS = 4096
#: reads faster than this on average are done inline rather than on the download threads.
INLINE_FETCH_SECONDS = 20e-6


#: (client index, flat slice, rows of that slice) -> rows transformed in place.
Transform = Callable[[int, int, int, np.ndarray], None]


class Engine:
    """Reads and folds the updates of one round; create one per `aggregate` call."""

    def __init__(
        self,
        global_model: Mapping[str, np.ndarray],
        options: EngineOptions | None = None,
        *,
        round_number: int = 0,
        seed: int = 0,
        partitioning: Partitioning | None = None,
        passes: PassRunner | None = None,
    ) -> None:
        self.global_model = global_model
        #: the arithmetic's shape (partitions, ranges, reduce tree); `passes` where pieces run.
        self.partitioning = partitioning or Partitioning()
        self.passes = passes or LocalPasses()
        self.layout = FlatLayout.from_model(global_model)
        self.options = options or EngineOptions()
        self.round_number = round_number
        self.seed = seed
        self.stats = Stats()
        #: per-client scale applied to its delta from the global model (DP clipping).
        self.scales: dict[str, float] | None = None
        self._layouts: dict[str, UpdateLayout] = {}
        self._plans: dict[tuple[UpdateLayout, int, int], list[RangeRead]] = {}
        self._pool = ThreadPoolExecutor(max(1, self.options.prefetch), "fma-fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading -------------------------------------------------------------------------

    def prepare(self, updates: Sequence[UpdateInput]) -> None:
        """Read every missing header (concurrently) and check it against the model."""
        missing = [u for u in updates if u.client_id not in self._layouts]
        if missing and not self._local_source():  # the first read tells how far the bytes are
            self._layouts[missing[0].client_id] = self._layout_of(missing[0])
            missing = missing[1:]
        reader = map if self._local_source() else self._pool.map
        for u, layout in zip(missing, reader(self._layout_of, missing), strict=True):
            self._layouts[u.client_id] = layout

    def _layout_of(self, update: UpdateInput) -> UpdateLayout:
        header = read_header(update, lambda a, b: self._read(update, a, b))
        return update_layout(self.layout, header, update.client_id)

    def _read(self, update: UpdateInput, start: int, end: int) -> bytes | memoryview:
        """One ranged read, timed and counted; a short read is an error, never a silent zero."""
        t0 = time.perf_counter()
        data = update.fetch_range(start, end)
        self.stats.add_fetch(time.perf_counter() - t0, len(data))
        if len(data) != end - start:
            raise ValueError(f"short read of {update.client_id}: {len(data)} of {end - start} bytes")
        return data

    def _fetch(self, update: UpdateInput, s: int, e: int) -> Block:
        ulayout = self._layouts[update.client_id]
        reads = self._plans.get((ulayout, s, e))
        if reads is None:  # updates written alike share their plans
            reads = self._plans[(ulayout, s, e)] = ulayout.reads(self.layout, s, e)
        return [(r, self._read(update, r.start, r.end)) for r in reads]

    def blocks(self, tasks: Sequence[tuple[UpdateInput, int, int]]) -> Iterator[Block]:
        """Fetch each (update, s, e) task's bytes, in task order, `prefetch` reads ahead."""
        self.prepare(list({t[0].client_id: t[0] for t in tasks}.values()))
        depth = 0 if self._local_source() else self.options.prefetch
        if depth <= 0:
            for u, s, e in tasks:
                yield self._fetch(u, s, e)
            return
        pending: deque = deque()
        todo = iter(tasks)
        for task in todo:
            pending.append(self._pool.submit(self._fetch, *task))
            if len(pending) >= depth:
                break
        while pending:
            t0 = time.perf_counter()
            block = pending.popleft().result()
            self.stats.wait += time.perf_counter() - t0
            task = next(todo, None)
            if task is not None:
                pending.append(self._pool.submit(self._fetch, *task))
            yield block

    def _local_source(self) -> bool:
        """True when reads so far took microseconds (bytes already in memory): a thread
        handoff would then cost more than the read, so blocks are fetched inline."""
        with self.stats.lock:
            return self.stats.requests > 0 and self.stats.fetch / self.stats.requests < INLINE_FETCH_SECONDS

    def views(self, block: Block) -> list[tuple[int, np.ndarray]]:
        """(element offset in the slice, zero-copy view) for each piece of a fetched block."""
        t0 = time.perf_counter()
        out = [
            (p.dst, np.frombuffer(data, dtype=p.dtype, count=p.count, offset=p.src))
            for r, data in block
            for p in r.pieces
        ]
        self.stats.decode += time.perf_counter() - t0
        return out

    # -- passes --------------------------------------------------------------------------

    def weighted_sum(self, updates: Sequence[UpdateInput], weights: Sequence[float]) -> np.ndarray:
        """sum_k w_k x_k as a flat vector, one slice of one update in memory at a time.

        One partial sum per partition of `partition_updates` updates, combined by `tree_sum`
        (passes.py): the same arithmetic whether the partitions run here or fanned out."""
        alphas = [float(w) * self._scale(u) for u, w in zip(updates, weights, strict=True)]
        bounds = partitions(len(updates), self.partitioning.partition_updates)

        def describe(i: int) -> dict[str, Any]:
            a, b = bounds[i]
            return {"clients": [updates[a].client_id, updates[b - 1].client_id], "count": b - a,
                    "weight_total": float(sum(alphas[a:b]))}

        op = PassOp("sum", len(bounds),
                    lambda i: self.partial_sum(updates[bounds[i][0]:bounds[i][1]], alphas[bounds[i][0]:bounds[i][1]]),
                    lambda parts: tree_sum(parts, self.partitioning.reduce_fanin), describe, self.stats)
        acc = self.passes.run(op)
        if self.scales is not None:  # clipped: x' = g + c (x - g), so add sum w (1 - c) g
            rest = sum(float(w) * (1.0 - self._scale(u)) for u, w in zip(updates, weights, strict=True))
            for s, e in self.layout.slices(self.chunk_elems()):
                axpy(rest, self.layout.gather(self.global_model, s, e), acc[s:e], portable=self.options.portable)
        return acc

    def partial_sum(self, updates: Sequence[UpdateInput], alphas: Sequence[float]) -> np.ndarray:
        """sum_k alpha_k x_k from zero in the given order, slice by slice: one partition."""
        acc = np.zeros(self.layout.total, dtype=self.layout.acc_dtype)
        slices = self.layout.slices(self.chunk_elems())
        tasks = [(u, s, e) for u in updates for s, e in slices]
        with single_threaded_blas():
            for n, block in enumerate(self.blocks(tasks)):
                alpha, s = alphas[n // len(slices)], tasks[n][1]
                pieces = self.views(block)
                t0 = time.perf_counter()
                for dst, view in pieces:
                    axpy(alpha, view, acc[s + dst : s + dst + view.size], portable=self.options.portable)
                self.stats.compute += time.perf_counter() - t0
        return acc

    def chunk_elems(self) -> int:
        """Elements per streaming read: chunk_bytes, but small enough that the reads in flight
        stay within 1.5x the model (a small model is not read in one piece per client)."""
        itemsize = np.dtype(self.layout.acc_dtype).itemsize
        cap = max(MIN_CHUNK_BYTES, 3 * self.layout.total * itemsize // (2 * PLANNED_IN_FLIGHT))
        return max(1, min(self.options.chunk_bytes, cap) // itemsize)

    def _scale(self, update: UpdateInput) -> float:
        return 1.0 if self.scales is None else self.scales[update.client_id]

    def shard_elems(self) -> int:
        """Elements per client per shard: shard_bytes, and at most an eighth of a small model
        (so that even then a block is a fraction of clients x model)."""
        per_client = max(16, self.options.shard_bytes // np.dtype(self.layout.acc_dtype).itemsize)
        return min(per_client, max(MIN_SHARD_ELEMS, -(-self.layout.total // 8)))

    def shard_pass(
        self,
        updates: Sequence[UpdateInput],
        visit: Callable[[int, int, np.ndarray], None],
        *,
        transform: bool = True,
        span: tuple[int, int] | None = None,
    ) -> None:
        """Call visit(s, e, rows) for each shard [s, e) (of `span` only, when given: a
        parameter range of whole shards): rows[k] is update k's values there."""
        step = self.shard_elems()
        slices = self.layout.slices(step)
        if span is not None:
            slices = [(s, e) for s, e in slices if span[0] <= s < span[1]]
        buf = np.empty((len(updates), min(step, self.layout.total)), dtype=self.layout.acc_dtype)
        tasks = [(u, s, e) for s, e in slices for u in updates]
        for n, block in enumerate(self.blocks(tasks)):
            k = n % len(updates)
            s, e = tasks[n][1], tasks[n][2]
            row = buf[k, : e - s]
            for dst, view in self.views(block):
                row[dst : dst + view.size] = view
            if k == len(updates) - 1:
                rows = buf[:, : e - s]
                t0 = time.perf_counter()
                if transform and self.scales is not None:
                    self._clip_rows(updates, s, e, rows)
                visit(s, e, rows)
                self.stats.compute += time.perf_counter() - t0

    def _clip_rows(self, updates: Sequence[UpdateInput], s: int, e: int, rows: np.ndarray) -> None:
        g = self.layout.gather(self.global_model, s, e)
        for k, u in enumerate(updates):
            c = self._scale(u)
            if c != 1.0:
                rows[k] -= g
                rows[k] *= c
                rows[k] += g

    def ranges(self) -> list[tuple[int, int]]:
        """Parameter ranges of `shard_bytes` (whole shards): the pieces of map and fold passes."""
        step = self.shard_elems()
        per = max(1, self.partitioning.shard_bytes // np.dtype(self.layout.acc_dtype).itemsize // step)
        return self.layout.slices(per * step)

    def map_shards(
        self, updates: Sequence[UpdateInput], fn: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Flat vector whose shard [s, e) is fn(rows of that shard): a coordinate-wise rule."""
        spans = self.ranges()

        def piece(i: int) -> np.ndarray:
            a, b = spans[i]
            out = np.empty(b - a, dtype=self.layout.acc_dtype)

            def visit(s: int, e: int, rows: np.ndarray) -> None:
                out[s - a : e - a] = fn(rows)

            self.shard_pass(updates, visit, span=spans[i])
            return out

        return self.passes.run(PassOp("map", len(spans), piece,
                                      lambda parts: concat(parts, self.layout.total, self.layout.acc_dtype),
                                      lambda i: {"range": list(spans[i])}, self.stats))

    def sum_shards(
        self, updates: Sequence[UpdateInput], fn: Callable[[int, int, np.ndarray], np.ndarray],
        *, transform: bool = True,
    ) -> np.ndarray:
        """The sum over shards of fn(s, e, rows) (arrays of one shape, such as a clients x
        clients matrix): per parameter range folded from zero in shard order, ranges combined
        by `tree_sum`. Krum's distances and DP's norms are such sums."""
        spans = self.ranges()

        def piece(i: int) -> np.ndarray:
            acc: list[np.ndarray] = []

            def visit(s: int, e: int, rows: np.ndarray) -> None:
                value = fn(s, e, rows)
                if acc:
                    acc[0] += value
                else:
                    acc.append(np.zeros_like(value) + value)

            self.shard_pass(updates, visit, transform=transform, span=spans[i])
            return acc[0]

        return self.passes.run(PassOp("fold", len(spans), piece,
                                      lambda parts: tree_sum(parts, self.partitioning.reduce_fanin),
                                      lambda i: {"range": list(spans[i])}, self.stats))

    def client_vector(self, update: UpdateInput) -> np.ndarray:
        """One update as a flat vector (with the transform applied), streamed in slices."""
        return self.weighted_sum([update], [1.0])

    def model(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """The output model dict in the global model's dtypes (views when they match)."""
        return self.layout.split(flat)
