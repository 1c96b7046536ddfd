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

import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from fma.domain.aggregation.layout import (
    FlatLayout,
    RangeRead,
    UpdateLayout,
    read_header,
    update_layout,
)
from fma.domain.aggregation.math import axpy, single_threaded_blas
from fma.domain.aggregation.types import UpdateInput

Block = list[tuple[RangeRead, bytes | memoryview]]
#: below this a ranged read costs more in requests than it saves in memory.
MIN_CHUNK_BYTES = 256 << 10
#: smallest automatic shard (elements per client) when a small model is split in eighths.
MIN_SHARD_ELEMS = 4096
#: reads faster than this on average are done inline rather than on the download threads.
INLINE_FETCH_SECONDS = 20e-6


@dataclass(frozen=True)
class EngineOptions:
    """Tuning knobs; none changes the result's bytes.

    chunk_bytes: size of one ranged read in streaming passes (S3 serves 8-16 MiB parts best).
    shard_bytes: one client's slice of a shard in coordinate-wise passes (one ranged read);
        a pass holds about two clients x shard blocks (three for Krum's float64 Gram) plus
        the output vector. Raise it (and prefetch) where memory allows, to cut S3 requests.
    prefetch: reads in flight ahead of the arithmetic (0 = sequential). Streaming holds
        about (prefetch + 1) x chunk_bytes besides its accumulator.
    portable: sums with separately rounded multiply and add instead of BLAS's fused axpy:
        ~1.3x slower, but the bytes no longer depend on the CPU, the BLAS build or the other
        options (re-run an AWS round on a laptop and get the same sha256).

    With the defaults, a re-run on the same machine type with the same options gives the
    same bytes; chunk_bytes and the BLAS kernel can move a float32 rounding.
    """

    chunk_bytes: int = 16 << 20
    shard_bytes: int = 512 << 10
    prefetch: int = 3
    portable: bool = False


@dataclass
class Stats:
    """Seconds per phase and bytes read; `fetch` is summed over the download threads."""

    fetch: float = 0.0
    wait: float = 0.0
    decode: float = 0.0
    compute: float = 0.0
    bytes_read: int = 0
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add_fetch(self, seconds: float, nbytes: int) -> None:
        with self.lock:
            self.fetch += seconds
            self.bytes_read += nbytes
            self.requests += 1

    def as_info(self) -> dict[str, Any]:
        timings = {k: round(getattr(self, k), 6) for k in ("fetch", "wait", "decode", "compute")}
        return {"timings": timings, "bytes_read": self.bytes_read, "requests": self.requests}


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
    ) -> None:
        self.global_model = global_model
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
        """sum_k w_k x_k as a flat vector, one slice of one update in memory at a time."""
        acc = np.zeros(self.layout.total, dtype=self.layout.acc_dtype)
        slices = self.layout.slices(self.chunk_elems())
        tasks = [(u, s, e) for u in updates for s, e in slices]
        alphas = [float(w) * self._scale(u) for u, w in zip(updates, weights, strict=True)]
        with single_threaded_blas():
            for n, block in enumerate(self.blocks(tasks)):
                alpha, s = alphas[n // len(slices)], tasks[n][1]
                pieces = self.views(block)
                t0 = time.perf_counter()
                for dst, view in pieces:
                    axpy(alpha, view, acc[s + dst : s + dst + view.size], portable=self.options.portable)
                self.stats.compute += time.perf_counter() - t0
        if self.scales is not None:  # clipped: x' = g + c (x - g), so add sum w (1 - c) g
            rest = sum(float(w) * (1.0 - self._scale(u)) for u, w in zip(updates, weights, strict=True))
            for s, e in slices:
                axpy(rest, self.layout.gather(self.global_model, s, e), acc[s:e], portable=self.options.portable)
        return acc

    def chunk_elems(self) -> int:
        """Elements per streaming read: chunk_bytes, but small enough that the reads in flight
        stay within 1.5x the model (a small model is not read in one piece per client)."""
        itemsize = np.dtype(self.layout.acc_dtype).itemsize
        in_flight = self.options.prefetch + 1
        cap = max(MIN_CHUNK_BYTES, 3 * self.layout.total * itemsize // (2 * in_flight))
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
    ) -> None:
        """Call visit(s, e, rows) for each shard [s, e): rows[k] is update k's values there."""
        step = self.shard_elems()
        slices = self.layout.slices(step)
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

    def map_shards(
        self, updates: Sequence[UpdateInput], fn: Callable[[np.ndarray], np.ndarray]
    ) -> np.ndarray:
        """Flat vector whose shard [s, e) is fn(rows of that shard): a coordinate-wise rule."""
        out = np.empty(self.layout.total, dtype=self.layout.acc_dtype)

        def visit(s: int, e: int, rows: np.ndarray) -> None:
            out[s:e] = fn(rows)

        self.shard_pass(updates, visit)
        return out

    def client_vector(self, update: UpdateInput) -> np.ndarray:
        """One update as a flat vector (with the transform applied), streamed in slices."""
        return self.weighted_sum([update], [1.0])

    def model(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """The output model dict in the global model's dtypes (views when they match)."""
        return self.layout.split(flat)
