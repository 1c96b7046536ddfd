"""Round modes (issue 15): `sync` (a quota or a deadline seals a round) and `async` (FedBuff).

In async mode every accepted update joins the buffer of the next version; a full buffer
(`buffer_size` updates), or at least `min_buffer` of them once `max_wait_seconds` passed,
publishes that version. An update trained on an older version is weighed by its staleness
tau = current version - base version through `staleness_weight` and refused beyond
`max_staleness`. Numpy-free: the API handler parses policies with this module.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

from fma.domain.errors import InvalidInput

MODES = ("sync", "async")
#: fields that only a synchronous round reads (they may be omitted in async mode).
SYNC_ONLY = ("min_updates", "deadline_seconds", "on_deadline", "min_updates_at_deadline")
#: fields that only async mode reads.
ASYNC_ONLY = ("buffer_size", "max_staleness", "max_wait_seconds", "min_buffer", "staleness",
              "server_learning_rate")
STALENESS_FNS = ("constant", "polynomial", "hinge")
#: FedBuff's default (Nguyen et al. 2022, section 5): s(tau) = (1 + tau)^-0.5.
DEFAULT_STALENESS: dict[str, Any] = {"fn": "polynomial", "exponent": 0.5}
DEFAULT_MAX_STALENESS = 10
MAX_BUFFER = 100_000
MAX_STALENESS = 1_000
MAX_WAIT = 30 * 86400
MAX_SERVER_LR = 1_000.0
_STALENESS_PARAMS = {"constant": (), "polynomial": ("exponent",), "hinge": ("a", "b")}
#: (lowest, highest) accepted for each staleness parameter.
_BOUNDS = {"exponent": (0.0, 10.0), "a": (0.0, 1_000.0), "b": (0.0, float(MAX_STALENESS))}


def invalid(message: str, field: str, code: str = "INVALID_ROUND_POLICY", **details: Any) -> InvalidInput:
    return InvalidInput(message, code=code, details={"field": field, **details})


def parse_mode(data: Mapping[str, Any]) -> str:
    """`rounds.mode`, "sync" when absent; refuses fields the mode does not read."""
    mode = data.get("mode", "sync")
    if not isinstance(mode, str) or mode not in MODES:
        raise invalid(f"rounds.mode must be one of {list(MODES)}", "rounds.mode")
    wrong = ASYNC_ONLY if mode == "sync" else SYNC_ONLY
    given = sorted(k for k in wrong if k in data)
    if given:
        use = "set rounds.mode to \"async\"" if mode == "sync" else "use buffer_size, max_wait_seconds, min_buffer"
        raise invalid(f"rounds field(s) {given} do not apply in {mode} mode ({use})", f"rounds.{given[0]}",
                      fields=given, mode=mode)
    return mode


def check_async(policy: Any) -> None:
    """Validate the async fields of a RoundPolicy-like object (raise InvalidInput)."""
    _int_in("rounds.buffer_size", policy.buffer_size, 1, MAX_BUFFER, required=True)
    _int_in("rounds.max_staleness", policy.max_staleness, 0, MAX_STALENESS)
    if policy.max_wait_seconds is not None:
        _int_in("rounds.max_wait_seconds", policy.max_wait_seconds, 1, MAX_WAIT)
    _int_in("rounds.min_buffer", policy.min_buffer, 1, MAX_BUFFER)
    if policy.min_buffer > policy.buffer_size:
        raise invalid(f"rounds.min_buffer={policy.min_buffer} exceeds rounds.buffer_size={policy.buffer_size}",
                      "rounds.min_buffer")
    if policy.min_buffer != 1 and policy.max_wait_seconds is None:
        raise invalid("rounds.min_buffer applies to a partial buffer after rounds.max_wait_seconds; "
                      "set max_wait_seconds too", "rounds.min_buffer")
    lr = policy.server_learning_rate
    if isinstance(lr, bool) or not isinstance(lr, int | float) or not _finite(lr) or not 0 < lr <= MAX_SERVER_LR:
        raise invalid(f"rounds.server_learning_rate must be a number in (0, {MAX_SERVER_LR:g}]",
                      "rounds.server_learning_rate")


def parse_staleness(value: object) -> dict[str, Any]:
    """The staleness function as a complete object (defaults filled in), or InvalidInput."""
    if value is None:
        return dict(DEFAULT_STALENESS)
    if not isinstance(value, Mapping):
        raise invalid("rounds.staleness must be an object such as {\"fn\": \"polynomial\", \"exponent\": 0.5}",
                      "rounds.staleness")
    fn = value.get("fn")
    if not isinstance(fn, str) or fn not in STALENESS_FNS:
        raise invalid(f"rounds.staleness.fn must be one of {list(STALENESS_FNS)}", "rounds.staleness.fn")
    allowed = _STALENESS_PARAMS[fn]
    unknown = sorted(str(k)[:64] for k in value if k != "fn" and k not in allowed)
    if unknown:
        raise invalid(f"unknown field(s) {unknown} for staleness fn {fn}; allowed: {list(allowed)}",
                      "rounds.staleness", code="UNKNOWN_FIELD", unknown=unknown)
    out: dict[str, Any] = {"fn": fn}
    for key in allowed:
        default = DEFAULT_STALENESS["exponent"] if key == "exponent" else None
        raw = value.get(key, default)
        if raw is None:
            raise invalid(f"rounds.staleness.{key} is required for the {fn} function", f"rounds.staleness.{key}")
        low, high = _BOUNDS[key]
        if isinstance(raw, bool) or not isinstance(raw, int | float) or not _finite(raw) \
                or not low <= float(raw) <= high:
            raise invalid(f"rounds.staleness.{key} must be a number in [{low:g}, {high:g}]",
                          f"rounds.staleness.{key}")
        out[key] = float(raw)
    return out


def staleness_weight(staleness: Mapping[str, Any], tau: int) -> float:
    """s(tau): constant 1; polynomial (1 + tau)^-a; hinge 1 for tau <= b, else 1 / (a (tau - b) + 1)."""
    if tau < 0:
        raise ValueError(f"staleness must be >= 0, got {tau}")
    fn = staleness["fn"]
    if fn == "constant":
        return 1.0
    if fn == "polynomial":
        return float((1.0 + tau) ** -float(staleness["exponent"]))
    if fn == "hinge":
        a, b = float(staleness["a"]), float(staleness["b"])
        return 1.0 if tau <= b else 1.0 / (a * (tau - b) + 1.0)
    raise ValueError(f"unknown staleness function {fn!r}")


def _int_in(name: str, value: object, low: int, high: int, *, required: bool = False) -> None:
    if value is None and required:
        raise invalid(f"{name} is required in async mode (updates per new version)", name)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise invalid(f"{name} must be an integer from {low} to {high}", name)


def _finite(value: int | float) -> bool:
    try:
        return math.isfinite(float(value))
    except OverflowError:  # 10**400 is a valid JSON integer
        return False
