"""The engine's reads: ranged GETs of each update, planned from its header, with prefetch.

A mixin of `Engine` (engine.py), which sets `layout`, `options`, `stats` and the caches.
Reads never change the arithmetic: they bring bytes; the passes slice them.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from fma.domain.aggregation.layout import HEADER_PROBE_BYTES, RangeRead, UpdateLayout, read_header, update_layout
from fma.domain.aggregation.types import UpdateInput

Block = list[tuple[RangeRead, bytes | memoryview]]
#: reads faster than this on average are done inline rather than on the download threads.
INLINE_FETCH_SECONDS = 20e-6


class Reader:
    """Ranged reads of updates for the passes of `Engine`."""

    layout: Any
    options: Any
    stats: Any
    _layouts: dict[str, UpdateLayout]
    _plans: dict
    _pool: Any

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
        """The bytes of [s, e) of one update. An update first met here (a small one: see
        `blocks`) is read from its first byte, so one GET brings its header and the range."""
        head: bytes | memoryview = b""
        ulayout = self._layouts.get(update.client_id)
        if ulayout is None:
            first = self.layout.nbytes(0, e) if s == 0 else 0  # the range too, when it starts the vector
            head = self._read(update, 0, min(update.size, HEADER_PROBE_BYTES + first))
            header = read_header(update, lambda a, b: head[a:b] if b <= len(head) else self._read(update, a, b))
            ulayout = self._layouts[update.client_id] = update_layout(self.layout, header, update.client_id)
        reads = self._plans.get((ulayout, s, e))
        if reads is None:  # updates written alike share their plans
            reads = self._plans[(ulayout, s, e)] = ulayout.reads(self.layout, s, e)
        view = memoryview(head)
        return [(r, view[r.start : r.end] if r.end <= len(head) else self._read(update, r.start, r.end))
                for r in reads]

    def blocks(self, tasks: Sequence[tuple[UpdateInput, int, int]]) -> Iterator[Block]:
        """Fetch each (update, s, e) task's bytes, in task order, `prefetch` reads ahead.

        Headers of updates bigger than one read are read first (several of their reads may be
        in flight at once); the others come with their first read. The first task is fetched
        here: its timing tells whether a thread handoff is worth it (`_local_source`)."""
        read_bytes = max(self.options.chunk_bytes, HEADER_PROBE_BYTES)
        self.prepare([u for u in {t[0].client_id: t[0] for t in tasks}.values() if u.size > read_bytes])
        todo = iter(tasks)
        first = next(todo, None)
        if first is None:
            return
        yield self._fetch(*first)
        depth = 0 if self._local_source() else self.options.prefetch
        if depth <= 0:
            for u, s, e in todo:
                yield self._fetch(u, s, e)
            return
        pending: deque = deque()
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

    def slice_views(self, block: Block, gs: int, s: int, e: int) -> list[tuple[int, np.ndarray]]:
        """(offset in [s, e), zero-copy view) of each piece of a block read for [gs, ...) that
        falls in the slice [s, e): the same pieces a read of [s, e) alone would give."""
        t0 = time.perf_counter()
        out = []
        for r, data in block:
            for p in r.pieces:
                lo, hi = max(s, gs + p.dst), min(e, gs + p.dst + p.count)
                if hi > lo:
                    offset = p.src + (lo - gs - p.dst) * p.dtype.itemsize
                    out.append((lo - s, np.frombuffer(data, dtype=p.dtype, count=hi - lo, offset=offset)))
        self.stats.decode += time.perf_counter() - t0
        return out

