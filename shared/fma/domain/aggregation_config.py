"""An experiment's `aggregation`: which plan runs its rounds and the shape of the arithmetic.

`{"plan": "auto" | "single" | "fanout", "partition_updates": int, "shard_bytes": int}`:
`single` aggregates in one function, `fanout` in a state machine of many (docs/scale.md),
`auto` picks fanout when a round's input passes the deployment's thresholds. The partition
and shard sizes fix the arithmetic (domain/aggregation/passes.py), so the plan never changes
the bytes; both are recorded in each manifest. Pure Python: the API imports this, not numpy.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fma.domain.errors import InvalidInput

PLANS = ("auto", "single", "fanout")
FIELDS = ("plan", "partition_updates", "shard_bytes")
DEFAULT_PARTITION_UPDATES = 1000
DEFAULT_SHARD_BYTES = 64 << 20
MAX_PARTITION_UPDATES = 100_000
MIN_SHARD_BYTES, MAX_SHARD_BYTES = 64 << 10, 4 << 30


@dataclass(frozen=True)
class AggregationSettings:
    plan: str = "auto"
    partition_updates: int = DEFAULT_PARTITION_UPDATES
    shard_bytes: int = DEFAULT_SHARD_BYTES

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> AggregationSettings:
        """Stored settings (already validated); experiments made before them get the defaults."""
        if not data:
            return cls()
        return cls(**{k: data[k] for k in FIELDS if k in data})


def parse_aggregation(data: object) -> AggregationSettings:
    """The `aggregation` object of a create request; InvalidInput names the bad field."""
    if data is None:
        return AggregationSettings()
    if not isinstance(data, Mapping):
        raise InvalidInput("aggregation must be an object", details={"field": "aggregation"})
    unknown = sorted(str(k) for k in data if k not in FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) in aggregation: {unknown}", code="UNKNOWN_FIELD",
                           details={"field": "aggregation", "unknown": unknown})
    plan = data.get("plan", "auto")
    if plan not in PLANS:
        raise InvalidInput(f"aggregation.plan must be one of {list(PLANS)}", details={"field": "aggregation.plan"})
    return AggregationSettings(
        plan=str(plan),
        partition_updates=_int(data, "partition_updates", DEFAULT_PARTITION_UPDATES, 1, MAX_PARTITION_UPDATES),
        shard_bytes=_int(data, "shard_bytes", DEFAULT_SHARD_BYTES, MIN_SHARD_BYTES, MAX_SHARD_BYTES),
    )


def _int(data: Mapping[str, Any], name: str, default: int, low: int, high: int) -> int:
    value = data.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"aggregation.{name} must be an integer from {low} to {high}",
                           details={"field": f"aggregation.{name}"})
    return value


@dataclass(frozen=True)
class FanoutThresholds:
    """When `auto` picks fanout: a round of at least `min_updates` accepted updates, or of at
    least `min_bytes` of them (accepted x the model's bytes), or a model larger than
    `single_max_model_bytes`, the most the single aggregate function holds (it keeps the global
    model and a float accumulator whole: about 4 x the model in its memory; the fanout tasks
    hold a few parameter ranges whatever the model). From the deployment's config."""

    min_updates: int = 2000
    min_bytes: int = 4 << 30
    single_max_model_bytes: int = 688 << 20


def choose_plan(settings: AggregationSettings, accepted: int, model_bytes: int,
                thresholds: FanoutThresholds, fanout_available: bool) -> str:
    """"single" or "fanout" for a sealed round; fanout needs an executor to run it."""
    if not fanout_available or settings.plan == "single":
        return "single"
    if settings.plan == "fanout":
        return "fanout"
    big = (accepted >= thresholds.min_updates or accepted * model_bytes >= thresholds.min_bytes
           or model_bytes > thresholds.single_max_model_bytes)
    return "fanout" if big else "single"
