"""The contract between the aggregate service and the strategies.

A strategy never sees S3: it receives `UpdateInput`s whose bytes it fetches when it needs them
(whole object for streaming strategies, byte ranges for coordinate-wise ones), so memory stays
bounded by what the strategy holds, not by the number of clients.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class UpdateInput:
    """One accepted update. `fetch` returns the whole safetensors object; `fetch_range(a, b)`
    returns bytes [a, b) of it. Both may be called more than once (a retry re-reads)."""

    client_id: str
    num_examples: float  # the count the strategy weighs by (after max_weight_share clipping)
    sha256: str
    size: int
    fetch: Callable[[], bytes | memoryview]
    fetch_range: Callable[[int, int], bytes | memoryview]
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass
class AggregationResult:
    """`model` has the global model's names, dtypes and shapes; `state` is persisted and handed
    back next round; `info` is JSON-safe and lands in the manifest and the round item."""

    model: dict[str, np.ndarray]
    state: dict[str, np.ndarray] = field(default_factory=dict)
    metrics: dict[str, float] = field(default_factory=dict)
    info: dict[str, Any] = field(default_factory=dict)
