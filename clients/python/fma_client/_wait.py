"""Polling with a deadline: the one loop behind every `wait=True`.

`sleep` and `clock` are injected so tests run a ten-minute wait in microseconds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

from fma_client.errors import Timeout

T = TypeVar("T")


@dataclass(frozen=True)
class Waiter:
    """Poll every `interval` seconds, growing by half up to `max_interval`."""

    sleep: Callable[[float], None] = time.sleep
    clock: Callable[[], float] = time.monotonic
    interval: float = 0.5
    max_interval: float = 5.0

    def until(self, check: Callable[[], T | None], timeout: float, what: str) -> T:
        """Call `check` until it returns a value (returned) or `timeout` seconds pass (Timeout).

        `check` raises to stop early (a FAILED round, a rejected update).
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
            self.sleep(min(delay, remaining))
            delay = min(delay * 1.5, self.max_interval)
