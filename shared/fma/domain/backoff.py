"""Jittered exponential backoff: the one formula behind every short retry delay."""

from __future__ import annotations

import random
from collections.abc import Callable


def jittered_backoff(attempt: int, base: float, cap: float, rng: Callable[[], float] = random.random) -> float:
    """`base`, 2 `base`, 4 `base` ... for attempt 1, 2, 3 ..., capped at `cap`, each drawn in
    [half, full] of its step so that retries of many items spread out instead of colliding."""
    ceiling = min(cap, base * 2 ** min(max(0, attempt - 1), 32))
    return ceiling * (0.5 + 0.5 * rng())
