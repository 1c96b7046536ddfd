"""The facts an update carries in its safetensors metadata (DESIGN section 2). No numpy."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass

from fma.domain.errors import UpdateRejected

NUM_EXAMPLES = "fma.num_examples"
ROUND = "fma.round"
METRICS = "fma.metrics"
MAX_METRICS = 64


@dataclass(frozen=True)
class UpdateMeta:
    num_examples: int
    round: int | None
    metrics: dict[str, float]


def parse_update_meta(metadata: dict[str, str]) -> UpdateMeta:
    raw = metadata.get(NUM_EXAMPLES)
    if raw is None:
        raise UpdateRejected("MISSING_NUM_EXAMPLES", f"metadata {NUM_EXAMPLES} is required")
    try:
        num_examples = int(raw)
    except ValueError:
        raise UpdateRejected("BAD_NUM_EXAMPLES", f"{NUM_EXAMPLES} must be a positive integer") from None
    if num_examples <= 0 or num_examples > 10**12:
        raise UpdateRejected("BAD_NUM_EXAMPLES", f"{NUM_EXAMPLES} must be a positive integer")
    return UpdateMeta(num_examples, _parse_round(metadata.get(ROUND)), parse_metrics(metadata.get(METRICS)))


def _parse_round(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return int(raw)
    except ValueError:
        raise UpdateRejected("BAD_ROUND", f"{ROUND} must be an integer") from None


def parse_metrics(raw: str | None) -> dict[str, float]:
    """A JSON object of finite numbers; anything else is a clear rejection."""
    if raw is None or raw == "":
        return {}
    try:
        data = json.loads(raw) if isinstance(raw, str) else raw
    except ValueError:
        raise UpdateRejected("BAD_METRICS", f"{METRICS} is not valid JSON") from None
    return check_metrics(data)


def check_metrics(data: object) -> dict[str, float]:
    if not isinstance(data, dict) or len(data) > MAX_METRICS:
        raise UpdateRejected("BAD_METRICS", f"metrics must be an object of at most {MAX_METRICS} numbers")
    out: dict[str, float] = {}
    for key, value in data.items():
        if not isinstance(key, str) or len(key) > 64:
            raise UpdateRejected("BAD_METRICS", "metric names must be strings of at most 64 characters")
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise UpdateRejected("BAD_METRICS", f"metric {key!r} must be a finite number")
        out[key] = float(value)
    return out
