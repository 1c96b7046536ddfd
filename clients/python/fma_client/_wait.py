"""Polling with a deadline: the one loop behind every `wait=True`.

Between polls the waiter obeys the server's `Retry-After` hint when the last response had one
(the server knows when a round may publish, and spreads its clients' polls); otherwise it
backs off from `interval` to `max_interval`, each wait jittered so that a thousand clients
started together do not poll in lockstep. `sleep` and `clock` are injected so tests run a
ten-minute wait in microseconds.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from fma_client.errors import Timeout

T = TypeVar("T")


def _no_hint() -> float | None:
    return None


@dataclass(frozen=True)
class Waiter:
    """Poll with jittered backoff (`interval`, growing by half up to `max_interval`)."""

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    interval: float = 0.5
    max_interval: float = 5.0
    hint: Callable[[], float | None] = _no_hint
    max_hint: float = 60.0
    rng: random.Random = field(default_factory=random.Random)

    def pause(self, delay: float, limit: float | None = None, obey_hint: bool = True) -> None:
        """Sleep before the next poll: the server's hint if it gave one, else `delay` jittered."""
        hinted = self.hint() if obey_hint else None
        if hinted is not None:
            wait = min(max(hinted, 0.0), self.max_hint) * self.rng.uniform(1.0, 1.1)
        else:
            wait = self.rng.uniform(delay / 2, delay)
        self.sleep(wait if limit is None else min(wait, limit))

    def grow(self, delay: float, ceiling: float | None = None) -> float:
        """The next backoff step after `delay`."""
        return min(delay * 1.5, ceiling if ceiling is not None else self.max_interval)

    def until(self, check: Callable[[], T | None], timeout: float, what: str, obey_hint: bool = True) -> T:
        """Call `check` until it returns a value (returned) or `timeout` seconds pass (Timeout).

        `check` raises to stop early (a FAILED round, a rejected update). `obey_hint=False`
        polls on the waiter's own backoff: for a wait the server's hint does not describe.
        """
        deadline = self.clock() + timeout
        delay = self.interval
        while True:
            result = check()
            if result is not None:
                return result
            remaining = deadline - self.clock()
            if remaining <= 0:
                raise Timeout(f"timed out after {timeout:g}s waiting for {what}")
            self.pause(delay, remaining, obey_hint)
            delay = self.grow(delay)
