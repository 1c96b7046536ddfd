"""The facts an update carries in its safetensors metadata (DESIGN section 2). No numpy.

Every value here is written by a client, so each parser accepts one plain spelling and turns
anything else into an UpdateRejected with a code the client can read: `int()` alone would take
" 12", "1_000", "+5" and "١٢" (Arabic-Indic digits), and `json.loads` alone would raise
RecursionError on a nesting bomb or return a 400-digit integer that overflows `float()`.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass

from fma.domain.errors import UpdateRejected
from fma.domain.safetensors_header import is_utf8, json_too_deep

NUM_EXAMPLES = "fma.num_examples"
ROUND = "fma.round"
METRICS = "fma.metrics"
MAX_METRICS = 64
MAX_METRIC_NAME = 64
#: the largest num_examples any update may declare (an experiment's limit may be lower).
MAX_NUM_EXAMPLES = 10**15
_ASCII_DIGITS = re.compile(r"[0-9]{1,16}")
_ASCII_ROUND = re.compile(r"-?[0-9]{1,10}")
#: longer integer literals in metrics are refused before Python converts them.
_MAX_INT_DIGITS = 400


@dataclass(frozen=True)
class UpdateMeta:
    num_examples: int
    round: int | None
    metrics: dict[str, float]


def parse_update_meta(metadata: dict[str, str]) -> UpdateMeta:
    """The update's facts, or UpdateRejected naming the first value that breaks the rules."""
    raw = metadata.get(NUM_EXAMPLES)
    if raw is None:
        raise UpdateRejected("MISSING_NUM_EXAMPLES", f"metadata {NUM_EXAMPLES} is required")
    return UpdateMeta(parse_num_examples(raw), _parse_round(metadata.get(ROUND)), parse_metrics(metadata.get(METRICS)))


def parse_num_examples(raw: str) -> int:
    """ASCII digits only, 1 to 10^15: no sign, spaces, underscores or other scripts' digits."""
    value = int(raw) if isinstance(raw, str) and _ASCII_DIGITS.fullmatch(raw) else 0
    if not 1 <= value <= MAX_NUM_EXAMPLES:
        raise UpdateRejected("BAD_NUM_EXAMPLES",
                             f"{NUM_EXAMPLES} must be ASCII digits for an integer from 1 to 10^15")
    return value


def _parse_round(raw: str | None) -> int | None:
    if raw is None:
        return None
    if not isinstance(raw, str) or not _ASCII_ROUND.fullmatch(raw):
        raise UpdateRejected("BAD_ROUND", f"{ROUND} must be an integer written in ASCII digits")
    return int(raw)


class _Invalid(ValueError):
    pass


def _unique_pairs(pairs: list[tuple[str, object]]) -> dict[str, object]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise _Invalid("a metric name appears twice")
    return out


def _bounded_int(text: str) -> int:
    if len(text) > _MAX_INT_DIGITS:
        raise _Invalid("an integer is too long")
    return int(text)


def _reject_constant(name: str) -> float:
    raise _Invalid(f"{name} is not a finite number")


def parse_metrics(raw: str | None) -> dict[str, float]:
    """A JSON object of finite numbers; anything else is a clear rejection."""
    if raw is None or raw == "":
        return {}
    if not isinstance(raw, str):
        return check_metrics(raw)
    if json_too_deep(raw, 2):
        raise UpdateRejected("BAD_METRICS", f"{METRICS} must be a flat object of numbers, not nested values")
    try:
        data = json.loads(raw, object_pairs_hook=_unique_pairs, parse_int=_bounded_int,
                          parse_constant=_reject_constant)
    except _Invalid as exc:
        raise UpdateRejected("BAD_METRICS", f"{METRICS}: {exc}") from None
    except RecursionError:
        raise UpdateRejected("BAD_METRICS", f"{METRICS} is nested too deeply") from None
    except ValueError:
        raise UpdateRejected("BAD_METRICS", f"{METRICS} is not valid JSON") from None
    return check_metrics(data)


def check_metrics(data: object) -> dict[str, float]:
    """An object of at most MAX_METRICS finite numbers (ints are converted without overflow)."""
    if not isinstance(data, dict) or len(data) > MAX_METRICS:
        raise UpdateRejected("BAD_METRICS", f"metrics must be an object of at most {MAX_METRICS} numbers")
    out: dict[str, float] = {}
    for key, value in data.items():
        if not isinstance(key, str) or len(key) > MAX_METRIC_NAME or not is_utf8(key):
            raise UpdateRejected("BAD_METRICS", f"metric names must be strings of at most {MAX_METRIC_NAME} characters")
        number = _finite_float(value)
        if number is None:
            raise UpdateRejected("BAD_METRICS", f"metric {key!r} must be a finite number")
        out[key] = number
    return out


def _finite_float(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    try:
        number = float(value)
    except OverflowError:  # an int beyond float's range
        return None
    return number if math.isfinite(number) else None
