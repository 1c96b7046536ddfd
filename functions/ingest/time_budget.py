"""A record is started only while enough of the invocation is left for its in-invocation retries.

A batch whose records are slowed by throttling must not run into the function's timeout: that
would hold every record of the batch, done or not, for the queue's visibility timeout (12 min).
So a record starts only while at least `TIME_RESERVE_SHARE` of the time the invocation began
with is left; later ones go back to the queue in `OUT_OF_TIME_RETRY_SECONDS`, no attempt counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

TIME_RESERVE_SHARE = 0.25
OUT_OF_TIME_RETRY_SECONDS = 1


class OutOfTime(RuntimeError):
    """Too little of the invocation is left to start this record: it goes back to the queue."""


class TimeBudget:
    """`start` at the beginning of an invocation; `check` before each record."""

    def __init__(self) -> None:
        self.reserve_ms = 0

    def start(self, context: Any) -> None:
        self.reserve_ms = int(context.get_remaining_time_in_millis() * TIME_RESERVE_SHARE)

    def check(self, context: Any, return_in: Callable[[int], object]) -> None:
        """Raise OutOfTime (after `return_in(seconds)` shortens the message's visibility) when the
        invocation has less than its reserve left."""
        if context is not None and context.get_remaining_time_in_millis() < self.reserve_ms:
            return_in(OUT_OF_TIME_RETRY_SECONDS)
            raise OutOfTime(f"less than {self.reserve_ms} ms left in this invocation")
