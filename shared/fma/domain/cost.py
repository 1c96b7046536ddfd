"""What a round cost: the resources it used and their price at list prices (issue 14).

One price table, in code: AWS list prices in USD (us-east-1, which most regions match or
exceed; arm64 Lambda, S3 Standard, DynamoDB on-demand, Step Functions Standard). A
deployment passes its own `Prices` to price a region or a discount. Pure arithmetic on counts
the services measure; the manifest keeps both the counts and the dollars.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, replace
from typing import Any


@dataclass(frozen=True)
class Prices:
    """USD per unit."""

    lambda_gb_second: float = 0.0000133334  # arm64
    lambda_request: float = 0.20 / 1e6
    s3_get: float = 0.0004 / 1000
    s3_put: float = 0.005 / 1000
    dynamodb_read_unit: float = 0.125 / 1e6  # on-demand read request unit
    dynamodb_write_unit: float = 0.625 / 1e6  # on-demand write request unit
    state_transition: float = 0.025 / 1000  # Standard workflows

    def with_overrides(self, overrides: Mapping[str, float] | None) -> Prices:
        """These prices with some replaced (unknown names are refused, not ignored)."""
        unknown = set(overrides or {}) - set(asdict(self))
        if unknown:
            raise ValueError(f"unknown price(s): {sorted(unknown)}")
        return replace(self, **{k: float(v) for k, v in (overrides or {}).items()})


PRICES = Prices()
#: bytes DynamoDB bills per read unit (strongly consistent) and per write unit.
READ_UNIT_BYTES, WRITE_UNIT_BYTES = 4096, 1024


@dataclass
class Usage:
    """Counts of one round; `tasks` lists each function run with its memory and seconds."""

    tasks: list[dict[str, Any]] = field(default_factory=list)
    s3_get: int = 0
    s3_put: int = 0
    s3_bytes_read: int = 0
    s3_bytes_written: int = 0
    dynamodb_read_units: float = 0.0
    dynamodb_write_units: float = 0.0
    state_transitions: int = 0

    def task(self, name: str, memory_mb: int, seconds: float, count: int = 1) -> None:
        """`count` runs of `name` of `memory_mb` MB for `seconds` in all."""
        self.tasks.append({"task": name, "count": count, "memory_mb": memory_mb, "seconds": round(seconds, 6),
                           "gb_seconds": round(memory_mb / 1024 * seconds, 6)})

    def read(self, nbytes: int, requests: int = 1) -> None:
        self.s3_get += requests
        self.s3_bytes_read += nbytes

    def write(self, nbytes: int, requests: int = 1) -> None:
        self.s3_put += requests
        self.s3_bytes_written += nbytes

    def items_read(self, count: int, item_bytes: int) -> None:
        """A query of `count` items of about `item_bytes` (units by the 4 KB it returns)."""
        self.dynamodb_read_units += max(1, math.ceil(count * item_bytes / READ_UNIT_BYTES))

    def items_written(self, count: int, item_bytes: int = WRITE_UNIT_BYTES, transactional: bool = False) -> None:
        self.dynamodb_write_units += count * math.ceil(item_bytes / WRITE_UNIT_BYTES) * (2 if transactional else 1)

    @property
    def gb_seconds(self) -> float:
        return sum(t["gb_seconds"] for t in self.tasks)


def round_cost(usage: Usage, prices: Prices = PRICES) -> dict[str, Any]:
    """The manifest's `cost`: the counts, the USD per resource and in all."""
    usd = {
        "lambda": usage.gb_seconds * prices.lambda_gb_second
        + sum(t["count"] for t in usage.tasks) * prices.lambda_request,
        "s3": usage.s3_get * prices.s3_get + usage.s3_put * prices.s3_put,
        "dynamodb": usage.dynamodb_read_units * prices.dynamodb_read_unit
        + usage.dynamodb_write_units * prices.dynamodb_write_unit,
        "step_functions": usage.state_transitions * prices.state_transition,
    }
    return {**asdict(usage), "gb_seconds": round(usage.gb_seconds, 6),
            "usd": {k: round(v, 9) for k, v in usd.items()}, "usd_total": round(sum(usd.values()), 9),
            "prices": "list prices (fma.domain.cost.PRICES)" if prices == PRICES else asdict(prices)}


def minimum_cost(bytes_read: int, bandwidth_bytes_per_s: float, connections: int, memory_mb: int,
                 prices: Prices = PRICES) -> dict[str, float]:
    """The physical floor of reading `bytes_read` once: one streaming pass at the
    per-connection bandwidth times connections, in one function of `memory_mb`."""
    seconds = bytes_read / (bandwidth_bytes_per_s * connections)
    gb_s = memory_mb / 1024 * seconds
    return {"seconds": seconds, "gb_seconds": gb_s, "usd": gb_s * prices.lambda_gb_second}
