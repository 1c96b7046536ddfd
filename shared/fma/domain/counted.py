"""Counts a record completes on first read, so reads that never need them do not pay for them.

The aws connector keeps an experiment's enrolled clients and an enrollment token's uses on S
tally shards (fma.domain.sharding): a count is a batch read of S items. Most reads of an
experiment (a client's model download, an ingest) or of a token (the authorizer) never look at
the count, so the connector hands the record a counter instead of a number; the count is read
once, the first time the field is read, and then kept.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


class CountedOnRead:
    """A dataclass `int` field: its stored value plus, on first read, what the record's counter
    field (a `Callable[[], int]` or None) returns; the counter is then dropped.

    Dataclasses call the descriptor for the default (`obj is None`: 0) and assign through it in
    `__init__` (frozen ones too), so `==`, `replace` and `asdict` see the completed count.
    """

    def __init__(self, counter_field: str) -> None:
        self.counter_field = counter_field
        self.slot = ""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}_value"

    def __get__(self, obj: Any, objtype: type | None = None) -> int:
        if obj is None:
            return 0
        counter: Callable[[], int] | None = obj.__dict__.get(self.counter_field)
        if counter is not None:
            obj.__dict__[self.slot] = obj.__dict__.get(self.slot, 0) + int(counter())
            obj.__dict__[self.counter_field] = None
        return obj.__dict__.get(self.slot, 0)

    def __set__(self, obj: Any, value: int) -> None:
        obj.__dict__[self.slot] = int(value)
