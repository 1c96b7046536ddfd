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

import itertools
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from fma.domain.aggregation.engine_options import PLANNED_IN_FLIGHT, EngineOptions, Stats
from fma.domain.aggregation.layout import (
    FlatLayout,
    RangeRead,
    UpdateLayout,
)
from fma.domain.aggregation.lazy_result import PieceVector
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
from fma.domain.aggregation.reader import Reader
from fma.domain.aggregation.types import UpdateInput

#: below this a ranged read costs more in requests than it saves in memory.
MIN_CHUNK_BYTES = 256 << 10
#: smallest automatic shard (elements per client) when a small model is split in eighths.
MIN_SHARD_ELEMS = 4096


#: (client index, flat slice, rows of that slice) -> rows transformed in place.
Transform = Callable[[int, int, int, np.ndarray], None]


class Engine(Reader):
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
        self._global_cache: tuple[tuple[int, int], np.ndarray] | None = None
        self._pool = ThreadPoolExecutor(max(1, self.options.prefetch), "fma-fetch")

    def close(self) -> None:
        self._pool.shutdown(wait=True)

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- passes --------------------------------------------------------------------------

    def weighted_sum(self, updates: Sequence[UpdateInput], weights: Sequence[float], *,
                     lazy: bool = False, finish: Callable[[int, int, np.ndarray], None] | None = None
                     ) -> np.ndarray:
        """sum_k w_k x_k as a flat vector, one slice of one update in memory at a time.

        One partial sum per (partition of `partition_updates` updates, parameter range), per
        range combined by `tree_sum` (passes.py): the same arithmetic whether the pieces run
        here or fanned out; a fanned-out piece holds one range, not the model. `lazy` (the
        caller only hands the sum to `model`): the fanout reduce may return it left in its
        pieces (lazy_result.PieceVector), read range by range as the model is written.
        `finish(s, e, values)` then changes each combined range in place (DP's noise): with
        it, and under clipping (`ranged_dp`), nothing needs the whole vector."""
        alphas = [float(w) * self._scale(u) for u, w in zip(updates, weights, strict=True)]
        bounds = partitions(len(updates), self.partitioning.partition_updates)
        spans = self.ranges() if self.partitioning.range_sums else [(0, self.layout.total)]
        ranged = self.scales is None or self.partitioning.ranged_dp
        if finish is not None and not ranged:
            raise ValueError("a finish step needs the ranged DP arithmetic (Partitioning.ranged_dp)")
        post = self._finisher(updates, weights, finish) if ranged else None

        def piece(j: int) -> np.ndarray:
            r, p = divmod(j, len(bounds))
            a, b = bounds[p]
            return self.partial_sum(updates[a:b], alphas[a:b], span=spans[r] if len(spans) > 1 else None)

        def describe(j: int) -> dict[str, Any]:
            r, p = divmod(j, len(bounds))
            a, b = bounds[p]
            return {"clients": [updates[a].client_id, updates[b - 1].client_id], "count": b - a,
                    "weight_total": float(sum(alphas[a:b])), "range": list(spans[r])}

        op = PassOp("sum", len(bounds) * len(spans), piece,
                    lambda parts: self._combine_sums(parts, spans, len(bounds), post), describe, self.stats,
                    self._lazy(spans, len(bounds), post) if lazy and ranged else None)
        acc = self.passes.run(op)
        if not ranged:  # clipped, as manifests before ranged_dp: sum w (1 - c) g over the whole vector
            rest = self._global_share(updates, weights)
            for s, e in self.layout.slices(self.chunk_elems()):
                axpy(rest, self.layout.gather(self.global_model, s, e), acc[s:e], portable=self.options.portable)
        return acc

    def _global_share(self, updates: Sequence[UpdateInput], weights: Sequence[float]) -> float:
        """Clipped: x' = g + c (x - g), so the sum of w x' is the pieces' sum of w c x plus this
        many times g."""
        return sum(float(w) * (1.0 - self._scale(u)) for u, w in zip(updates, weights, strict=True))

    def _finisher(self, updates: Sequence[UpdateInput], weights: Sequence[float],
                  finish: Callable[[int, int, np.ndarray], None] | None
                  ) -> Callable[[int, int, np.ndarray], None] | None:
        """What each combined range [s, e) of a sum gets in place: the clipped clients' share of
        g, then the caller's `finish`. The share is a separately rounded multiply and add, not
        a fused BLAS axpy: a range is finished in the whole vector (single) or in an array of
        its own (the reduce), and BLAS kernels round differently by where the data lies in memory."""
        if self.scales is None:
            return finish
        rest = self._global_share(updates, weights)

        def post(s: int, e: int, values: np.ndarray) -> None:
            values += values.dtype.type(rest) * self.global_range(s, e)
            if finish is not None:
                finish(s, e, values)

        return post

    def global_range(self, s: int, e: int) -> np.ndarray:
        """Elements [s, e) of the global model (read-only; the last range asked for is kept,
        so the steps that finish one range read it once)."""
        if self._global_cache is None or self._global_cache[0] != (s, e):
            self._global_cache = None
            values = self.layout.gather(self.global_model, s, e)
            values.flags.writeable = False
            self._global_cache = ((s, e), values)
        return self._global_cache[1]

    def _lazy(self, spans: list[tuple[int, int]], per_range: int,
              finish: Callable[[int, int, np.ndarray], None] | None = None
              ) -> Callable[[Callable[[int], np.ndarray]], Any]:
        def lazy(load: Callable[[int], np.ndarray]) -> PieceVector:
            return PieceVector(self.layout.total, self.layout.acc_dtype, spans, per_range, load,
                               self.partitioning.reduce_fanin, finish)

        return lazy

    def _combine_sums(self, parts: Iterator[np.ndarray], spans: list[tuple[int, int]], per_range: int,
                      finish: Callable[[int, int, np.ndarray], None] | None = None) -> np.ndarray:
        """Range-major partials: per range the tree of its partitions, ranges laid end to end,
        each then finished in place (`finish`)."""
        if len(spans) == 1:
            out = tree_sum(parts, self.partitioning.reduce_fanin)
            if finish is not None:
                finish(0, self.layout.total, out)
            return out
        out = np.empty(self.layout.total, dtype=self.layout.acc_dtype)
        for s, e in spans:
            out[s:e] = tree_sum(itertools.islice(parts, per_range), self.partitioning.reduce_fanin)
            if finish is not None:
                finish(s, e, out[s:e])
        return out

    def partial_sum(self, updates: Sequence[UpdateInput], alphas: Sequence[float],
                    span: tuple[int, int] | None = None) -> np.ndarray:
        """sum_k alpha_k x_k from zero in the given order, slice by slice: one partition (over
        the flat vector, or only its range `span`: the model's slices clipped to it).

        One read brings several slices (up to chunk_bytes: S3 serves 8-16 MiB ranges best);
        the arithmetic still runs slice by slice, so the read size never moves a rounding."""
        lo, hi = span or (0, self.layout.total)
        acc = np.zeros(hi - lo, dtype=self.layout.acc_dtype)
        groups = self.read_groups(span)
        tasks = [(u, gs, ge) for u in updates for gs, ge, _ in groups]
        with single_threaded_blas():
            for n, block in enumerate(self.blocks(tasks)):
                alpha, (gs, _, inner) = alphas[n // len(groups)], groups[n % len(groups)]
                for s, e in inner:
                    pieces = self.slice_views(block, gs, s, e)
                    t0 = time.perf_counter()
                    for dst, view in pieces:
                        at = s - lo + dst
                        axpy(alpha, view, acc[at : at + view.size], portable=self.options.portable)
                    self.stats.compute += time.perf_counter() - t0
        return acc

    def read_groups(self, span: tuple[int, int] | None = None) -> list[tuple[int, int, list[tuple[int, int]]]]:
        """(start, end, slices): consecutive arithmetic slices read together, up to chunk_bytes
        (the model's slices clipped to `span`, when given)."""
        slices = self.layout.slices(self.chunk_elems())
        if span is not None:
            slices = [(max(s, span[0]), min(e, span[1])) for s, e in slices if s < span[1] and e > span[0]]
        per = max(1, self.options.chunk_bytes // (self.chunk_elems() * np.dtype(self.layout.acc_dtype).itemsize))
        groups = [slices[i : i + per] for i in range(0, len(slices), per)]
        return [(group[0][0], group[-1][1], group) for group in groups]

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
        self, updates: Sequence[UpdateInput], fn: Callable[[np.ndarray], np.ndarray], *, lazy: bool = False
    ) -> np.ndarray:
        """Flat vector whose shard [s, e) is fn(rows of that shard): a coordinate-wise rule
        (`lazy`: as `weighted_sum`'s, left in the pieces by the fanout reduce)."""
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
                                      lambda i: {"range": list(spans[i])}, self.stats,
                                      self._lazy(spans, 1) if lazy else None))

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

    def client_vector(self, update: UpdateInput, *, lazy: bool = False) -> np.ndarray:
        """One update as a flat vector (with the transform applied), streamed in slices
        (`lazy`: as `weighted_sum`'s)."""
        return self.weighted_sum([update], [1.0], lazy=lazy)

    def model(self, flat: np.ndarray) -> dict[str, np.ndarray]:
        """The output model dict in the global model's dtypes (views when they match)."""
        return self.layout.split(flat)
