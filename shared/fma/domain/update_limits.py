"""An experiment's `update_limits`: how much one client may count (docs/weighting.md).

FedAvg weighs each update by the `fma.num_examples` its client declares, so without limits one
client that declares 10^12 examples owns the global model. The developer bounds that at
creation: updates declaring more than `max_num_examples` are REJECTED (TOO_MANY_EXAMPLES),
updates farther than `max_update_norm` (L2) from the round's global model are REJECTED
(NORM_TOO_LARGE), and with `max_weight_share` aggregation clips the weights so that no client
holds more than that share of the total.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from fma.domain.errors import InvalidInput
from fma.domain.update_meta import MAX_NUM_EXAMPLES

DEFAULT_MAX_NUM_EXAMPLES = 1_000_000
FIELDS = ("max_num_examples", "max_weight_share", "max_update_norm")


@dataclass(frozen=True)
class UpdateLimits:
    max_num_examples: int = DEFAULT_MAX_NUM_EXAMPLES
    max_weight_share: float | None = None
    max_update_norm: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_json(cls, data: Mapping[str, Any] | None) -> UpdateLimits:
        """Stored limits (already validated); items written before limits existed get the defaults."""
        if not data:
            return cls()
        return cls(**{k: data[k] for k in FIELDS if k in data})


def parse_update_limits(value: object) -> UpdateLimits:
    """Validate the `update_limits` object of POST /v1/experiments; InvalidInput (400) otherwise."""
    if value is None:
        return UpdateLimits()
    if not isinstance(value, Mapping):
        raise InvalidInput("update_limits must be an object", details={"field": "update_limits"})
    unknown = sorted(str(k) for k in value if k not in FIELDS)
    if unknown:
        raise InvalidInput(f"unknown field(s) in update_limits: {unknown}", code="UNKNOWN_FIELD",
                           details={"field": "update_limits", "unknown": unknown})
    return UpdateLimits(
        max_num_examples=_max_num_examples(value.get("max_num_examples", DEFAULT_MAX_NUM_EXAMPLES)),
        max_weight_share=_optional_number(value, "max_weight_share", upper=1.0),
        max_update_norm=_optional_number(value, "max_update_norm", upper=None),
    )


def _max_num_examples(raw: object) -> int:
    if isinstance(raw, bool) or not isinstance(raw, int) or not 1 <= raw <= MAX_NUM_EXAMPLES:
        raise InvalidInput("update_limits.max_num_examples must be an integer from 1 to 10^15",
                           details={"field": "update_limits.max_num_examples"})
    return raw


def _optional_number(value: Mapping[str, Any], name: str, upper: float | None) -> float | None:
    """null, or a finite number > 0 (and <= upper when given)."""
    raw = value.get(name)
    if raw is None:
        return None
    field = f"update_limits.{name}"
    bound = "in (0, 1]" if upper is not None else "greater than 0"
    number: float | None = None
    if not isinstance(raw, bool) and isinstance(raw, int | float):
        try:
            number = float(raw)
        except OverflowError:  # an integer of hundreds of digits
            number = None
    if number is None or not math.isfinite(number) or number <= 0 or (upper is not None and number > upper):
        raise InvalidInput(f"{field} must be null or a finite number {bound}", details={"field": field})
    return number
