"""Passes: how the engine's reads split into pieces, and how pieces combine into one result.

Every read-heavy engine pass (`weighted_sum`, `map_shards`, `sum_shards`) is a `PassOp`: a
number of pieces, a function computing piece i, and a combine over the pieces in order. The
arithmetic is fixed by the `Partitioning`, never by where the pieces run:

- `sum` pieces are partitions of the updates in client-id order (`partition_updates` each)
  times parameter ranges (`range_sums`; range-major order); each piece is the partial
  weighted sum of its partition over its range, folded from zero in client order; per range,
  partials are combined by `tree_sum` (groups of `reduce_fanin`, left to right, level by level)
  and the ranges laid end to end;
- `map` and `fold` pieces are parameter ranges (`shard_bytes` of the flat vector, whole
  engine shards); `map` concatenates, `fold` sums the range results with `tree_sum`.

The `single` plan runs the pieces in this process (`LocalPasses`); the `fanout` plan runs them
as separate tasks (`FanoutPasses`), so both publish the same bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

#: combine this many partials per node of the reduce tree.
REDUCE_FANIN = 32


@dataclass(frozen=True)
class Partitioning:
    """The shape of the arithmetic (recorded in the manifest: a re-run needs it).

    partition_updates: updates per partial sum (client-id order).
    shard_bytes: bytes of the flat parameter vector per parameter range (whole engine shards).
    reduce_fanin: partials per node of the reduce tree.
    range_sums: `sum` pieces are (partition x parameter range), so a child holds one range of
        the partial sum, not the model; False is the arithmetic of manifests written before it
        (a piece per partition over the whole vector), which their re-runs keep.
    ranged_dp: central DP finishes the clipped sum range by range (the clipped clients' share
        of the global model as a separately rounded multiply-add, noise drawn per 1 Mi-element
        chunk from its own seeded stream: dp.py), so the fanout reduce never holds a DP model;
        False is the arithmetic of manifests written before it (a BLAS axpy over the model's
        slices, one noise stream over the whole vector).
    """

    partition_updates: int = 1000
    shard_bytes: int = 64 << 20
    reduce_fanin: int = REDUCE_FANIN
    range_sums: bool = True
    ranged_dp: bool = True

    def to_json(self) -> dict[str, Any]:
        return {"partition_updates": self.partition_updates, "shard_bytes": self.shard_bytes,
                "reduce_fanin": self.reduce_fanin, "range_sums": self.range_sums, "ranged_dp": self.ranged_dp}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> Partitioning:
        data = data or {}
        base = cls()
        return cls(int(data.get("partition_updates") or base.partition_updates),
                   int(data.get("shard_bytes") or base.shard_bytes),
                   int(data.get("reduce_fanin") or base.reduce_fanin),
                   data.get("range_sums") is True, data.get("ranged_dp") is True)


def partitions(count: int, size: int) -> list[tuple[int, int]]:
    """[a, b) index ranges of at most `size` consecutive items covering `count` items."""
    step = max(1, int(size))
    return [(a, min(count, a + step)) for a in range(0, count, step)]


@dataclass(frozen=True)
class PassOp:
    """One pass of reads: `kind` is "sum", "map" or "fold" (see the module docstring)."""

    kind: str
    npieces: int
    piece: Callable[[int], np.ndarray]
    combine: Callable[[Iterator[np.ndarray]], np.ndarray]
    #: what a piece's object records besides its value (clients, weight total, range).
    describe: Callable[[int], dict[str, Any]] = lambda i: {}
    #: the engine's counters (bytes read, requests), reported with a fanned-out piece.
    stats: Any = None
    #: given `load(i)` of piece i, the combined result left in the pieces (lazy_result.py): what
    #: the fanout reduce returns for a completed pass, so it never holds the whole vector.
    lazy: Callable[[Callable[[int], np.ndarray]], Any] | None = None


class PassRunner(Protocol):
    """Where a pass's pieces run: `run(op)` returns the combined result."""

    def run(self, op: PassOp) -> np.ndarray: ...


class LocalPasses:
    """The single plan: every piece in this process, combined as it is computed."""

    def run(self, op: PassOp) -> np.ndarray:
        return op.combine(op.piece(i) for i in range(op.npieces))


class NeedPass(BaseException):
    """Raised by the reduce when pass `index` has not run yet: the executor maps its pieces.

    A BaseException so that a strategy's own `except Exception` cannot swallow it."""

    def __init__(self, index: int, kind: str, npieces: int) -> None:
        super().__init__(f"pass {index} ({kind}) needs {npieces} pieces")
        self.index, self.kind, self.npieces = index, kind, npieces


class PieceDone(BaseException):
    """Raised by a child once its piece is computed: the strategy stops there."""

    def __init__(self, value: np.ndarray, kind: str, facts: dict[str, Any]) -> None:
        super().__init__(f"{kind} piece done")
        self.value, self.kind, self.facts = value, kind, facts


class FanoutPasses:
    """The fanout plan, as the reduce (`target` None) or as the child computing one piece.

    Passes before `complete` are combined from stored pieces (`load(pass, piece)`); the first
    pass not complete raises `NeedPass` in the reduce; in a child, pass `target[0]` computes
    piece `target[1]` and raises `PieceDone`.
    """

    def __init__(self, load: Callable[[int, int], np.ndarray], complete: int,
                 target: tuple[int, int] | None = None) -> None:
        self.load, self.complete, self.target = load, complete, target
        self.next = 0

    def run(self, op: PassOp) -> np.ndarray:
        index, self.next = self.next, self.next + 1
        if self.target is not None and index == self.target[0]:
            if not 0 <= self.target[1] < op.npieces:
                raise ValueError(f"pass {index} has {op.npieces} pieces, not {self.target[1] + 1}")
            value = op.piece(self.target[1])
            facts = {**op.describe(self.target[1]), **(op.stats.as_info() if op.stats is not None else {})}
            raise PieceDone(value, op.kind, facts)
        if index < self.complete:
            if op.lazy is not None and self.target is None:
                return op.lazy(lambda i: self.load(index, i))
            return op.combine(self.load(index, i) for i in range(op.npieces))
        raise NeedPass(index, op.kind, op.npieces)


def tree_sum(items: Iterable[np.ndarray], fanin: int = REDUCE_FANIN) -> np.ndarray:
    """The sum of `items` as a tree: groups of `fanin` folded left to right, level by level.

    Streams: holds one accumulator per level (log_fanin(n) + 1 arrays), whatever n. The first
    item of a group is taken as is (a fresh, writable array is copied only if it is not), so a
    single item comes back unchanged and one partition gives exactly the plain fold.
    """
    if fanin < 2:
        raise ValueError("reduce_fanin must be at least 2")
    levels: list[list[Any]] = []  # per level: [accumulator, items in its group, groups emitted]
    for item in items:
        _push(levels, 0, item, fanin)
    if not levels:
        raise ValueError("tree_sum of no items")
    lvl = 0
    while True:
        acc, count, emitted = levels[lvl]
        if lvl == len(levels) - 1 and emitted == 0:
            return acc  # the root: the only item at the top level
        if count:
            levels[lvl][:2] = [None, 0]
            _push(levels, lvl + 1, acc, fanin)
        lvl += 1


def _push(levels: list[list[Any]], lvl: int, item: np.ndarray, fanin: int) -> None:
    if lvl == len(levels):
        levels.append([None, 0, 0])
    slot = levels[lvl]
    if slot[1] == 0:
        slot[0] = item if item.flags.writeable and item.flags.owndata else item.copy()
    else:
        np.add(slot[0], item, out=slot[0])
    slot[1] += 1
    if slot[1] == fanin:
        acc = slot[0]
        slot[:] = [None, 0, slot[2] + 1]
        _push(levels, lvl + 1, acc, fanin)


def concat(pieces: Iterable[np.ndarray], total: int, dtype: np.dtype) -> np.ndarray:
    """`map` pieces (consecutive parameter ranges) laid end to end into one flat vector."""
    parts = iter(pieces)
    first = next(parts)
    if first.size == total and first.dtype == dtype and first.flags.writeable and first.flags.owndata:
        if next(parts, None) is not None:
            raise ValueError(f"map pieces cover more than {total} elements")
        return first  # one range: the piece is the vector (no second copy of the output)
    out = np.empty(total, dtype=dtype)
    out[: first.size] = first
    at = first.size
    for part in parts:
        out[at : at + part.size] = part
        at += part.size
    if at != total:
        raise ValueError(f"map pieces cover {at} of {total} elements")
    return out
