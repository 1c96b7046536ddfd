"""The simulator's mechanics: token buckets, transaction conflicts, Lambda concurrency."""

from __future__ import annotations

import bisect
import collections
import heapq
import random
from dataclasses import dataclass, field


class Buckets:
    """A token bucket per resource (a partition key, an S3 prefix, the API's stage or account),
    settled once per `tick`: it refills `rate x tick` tokens up to its burst, serves what was
    asked of it in the tick up to the tokens it holds, and the share it served is the chance that
    a request of the next tick is served (fluid: a request retried while throttled adds to the
    demand again). `rate(resource)` and `burst(resource)` (default: one tick's refill, i.e. no
    credit carried over) say what each resource allows."""

    def __init__(self, tick: float, rate, burst=None) -> None:
        self.tick, self.rate, self.burst = tick, rate, burst or (lambda r: rate(r) * tick)
        self.demand: collections.Counter = collections.Counter()
        self.tokens: dict = {}
        self.share: dict = {}

    def ok(self, resource: tuple) -> float:
        """The chance a request on `resource` is served now (a resource not asked before: 1,
        unless it has no capacity at all)."""
        share = self.share.get(resource)
        if share is None:
            return 1.0 if self.burst(resource) > 0 else 0.0
        return share

    def ask(self, resource: tuple, units: float) -> None:
        self.demand[resource] += units

    def roll(self) -> None:
        """End a tick: refill every bucket, serve the tick's demand, keep the share served."""
        share = {}
        for r in set(self.tokens) | set(self.demand):
            tokens = min(self.burst(r), self.tokens.get(r, self.burst(r)) + self.rate(r) * self.tick)
            asked = self.demand.get(r, 0.0)
            served = min(tokens, asked)
            share[r] = served / asked if asked else (1.0 if tokens > 0 else 0.0)
            self.tokens[r] = tokens - served
        self.share, self.demand = share, collections.Counter()


@dataclass
class Items:
    """Transaction conflicts: a transaction holds its items for `window` seconds; a write on an
    item whose window overlaps a hold is a TransactionConflict (DynamoDB's documented
    conflicts: a transaction, or a single write, on an item an ongoing transaction holds).

    A retry after a sleep holds an item ahead of the clock, and events are handled in time
    order, so each item keeps its holds as sorted, disjoint intervals; holds that ended more
    than `horizon` seconds (the longest retry sleep) ago can no longer matter and are dropped."""

    window: float
    horizon: float = 10.0
    busy: dict = field(default_factory=dict)  # item -> ([starts], [ends]), sorted

    def _overlaps(self, key, now: float) -> bool:
        holds = self.busy.get(key)
        if not holds:
            return False
        starts, ends = holds
        i = bisect.bisect_right(starts, now)
        if i and ends[i - 1] > now:  # a hold that started before now and has not ended
            return True
        return i < len(starts) and starts[i] < now + self.window  # one that starts inside our window

    def free_at(self, keys: list, now: float) -> bool:
        return not any(self._overlaps(k, now) for k in keys)

    def hold(self, keys: list, now: float) -> None:
        for k in keys:
            starts, ends = self.busy.setdefault(k, ([], []))
            while starts and ends[0] < now - self.horizon:
                del starts[0], ends[0]
            i = bisect.bisect_right(starts, now)
            starts.insert(i, now)
            ends.insert(i, now + self.window)


@dataclass(frozen=True)
class Backoff:
    """A design's retry of a conflicted write: the a-th sleep (a = 0, 1, ...) is drawn from
    [low x step, step], step = min(cap, base x 2^a). Before issue 13 item 2: dynamo_common.transact,
    8 attempts, uniform(0, 0.02 x 2^a); after: dynamo_retry.POLICY, 6 attempts, 50 ms doubling to
    1 s, drawn in [half, full]."""

    attempts: int = 8
    base: float = 0.02
    cap: float = float("inf")
    low: float = 0.0

    def sleep(self, attempt: int, rng: random.Random) -> float:
        step = min(self.cap, self.base * 2 ** attempt)
        return rng.uniform(self.low * step, step)


def transact(items: Items, keys: list, now: float, backoff: Backoff, rng: random.Random,
             stretch: float = 1.0, hold: bool = True) -> tuple[float | None, int]:
    """Try a write on `keys` up to `backoff.attempts` times, sleeping `backoff.sleep` (times
    `stretch`) after a conflict; a transaction (`hold`) then holds its items, a single write does
    not. Returns (seconds it took, or None if every try conflicted; conflicts)."""
    t, conflicts = now, 0
    for attempt in range(backoff.attempts):
        if items.free_at(keys, t):
            if hold:
                items.hold(keys, t)
            return t - now, conflicts
        conflicts += 1
        t += backoff.sleep(attempt, rng) * stretch
    return None, conflicts


@dataclass
class Concurrency:
    """Concurrent executions of Lambda functions within one account limit (and, per function, an
    optional maximum); a function's warm environments are the most it ever ran at once, so an
    execution beyond them is a cold start."""

    account: int
    running: dict = field(default_factory=dict)  # function -> heap of end times
    warm: dict = field(default_factory=dict)
    cold_starts: int = 0

    def in_flight(self, fn: str, now: float) -> int:
        heap = self.running.setdefault(fn, [])
        while heap and heap[0] <= now:
            heapq.heappop(heap)
        return len(heap)

    def total(self, now: float) -> int:
        return sum(self.in_flight(fn, now) for fn in list(self.running))

    def start(self, fn: str, now: float, seconds: float, cold_seconds: float, cap: int | None = None) -> float | None:
        """Start an execution: its duration (cold start included), or None when throttled."""
        n = self.in_flight(fn, now)
        if (cap is not None and n >= cap) or self.total(now) >= self.account:
            return None
        if n >= self.warm.get(fn, 0):
            self.warm[fn] = n + 1
            self.cold_starts += 1
            seconds += cold_seconds
        heapq.heappush(self.running[fn], now + seconds)
        return seconds

    def next_free(self, fn: str, now: float) -> float:
        heap = self.running.get(fn) or []
        return heap[0] if heap else now
