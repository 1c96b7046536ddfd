"""What happens when ingest or the sweeper fails for a reason that is not the client's.

A client-caused problem ends REJECTED inside the ingest service. Anything else that escapes (a
fault, a bug, a throttled dependency) is retried with jittered exponential backoff, counted on
the item, and after `max_ingest_attempts` the update is FAILED with the last error as its reason
(an initial model gets `model_error`), so one bad item never holds up any other.
"""

from __future__ import annotations

import logging
import random
from collections.abc import Callable
from dataclasses import dataclass

from fma.domain.records import RoundRecord, UpdateRecord
from fma.services.deps import Deps

log = logging.getLogger(__name__)

#: SQS redelivery of a failed ingest record: 2, 4, 8 ... seconds (jittered), capped.
INGEST_RETRY_BASE_SECONDS = 2
INGEST_RETRY_CAP_SECONDS = 300
#: the sweeper looks at a failing item again after 1, 2, 4 ... minutes (jittered), capped.
SWEEP_RETRY_BASE_SECONDS = 60
SWEEP_RETRY_CAP_SECONDS = 3600


@dataclass(frozen=True)
class Verdict:
    """`attempts` so far; `give_up`: the item was marked failed; else retry in `retry_in` s."""

    attempts: int
    give_up: bool
    retry_in: int = 0


def backoff_seconds(attempt: int, base: int, cap: int, rng: Callable[[], float] = random.random) -> int:
    """Exponential in `attempt` (1, 2, ...), capped, with jitter in [half, full] of the step."""
    ceiling = min(cap, base * 2 ** min(max(0, attempt - 1), 32))
    return max(1, round(ceiling * (0.5 + 0.5 * rng())))


def describe(exc: BaseException) -> str:
    """A short, repr-free account of an error for an item's reason."""
    text = " ".join(str(exc).split())[:300]
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def ingest_failed(deps: Deps, key: str, exc: BaseException, deliveries: int) -> Verdict:
    """Count a failed ingest of `key` (its message was delivered `deliveries` times) and decide.

    Raises only when giving up cannot be recorded (then the message stays for the DLQ).
    """
    reason = describe(exc)
    target = _parse(key)
    noted = 0
    if target is not None and target[2] is not None:
        try:
            noted = deps.repo.note_update_failure(target[0], target[1], target[2], reason, deps.clock())
        except Exception:  # the store itself may be what fails: SQS's count still bounds it
            log.exception("could not count the failure of %s", key)
    attempts = max(deliveries, noted)
    if attempts < deps.limits.max_ingest_attempts:
        return Verdict(attempts, False, backoff_seconds(attempts, INGEST_RETRY_BASE_SECONDS, INGEST_RETRY_CAP_SECONDS))
    final = f"INGEST_FAILED: {attempts} attempts failed; last error {reason}"
    if target is not None and target[2] is not None:
        deps.repo.fail_update(target[0], target[1], target[2], final, deps.clock())
    elif target is not None:
        deps.repo.set_model_error(target[0], final)
    return Verdict(attempts, True)


def upload_failed(deps: Deps, upd: UpdateRecord, exc: BaseException, now: float) -> Verdict:
    """The sweeper could not reconcile `upd`: look again later, or FAIL it after the bound."""
    reason = describe(exc)
    attempts = deps.repo.note_update_failure(upd.experiment_id, upd.round, upd.client_id, reason, now)
    if attempts >= deps.limits.max_ingest_attempts:
        deps.repo.fail_update(upd.experiment_id, upd.round, upd.client_id,
                              f"INGEST_FAILED: {attempts} attempts failed; last error {reason}", now)
        return Verdict(attempts, True)
    delay = backoff_seconds(max(attempts, 1), SWEEP_RETRY_BASE_SECONDS, SWEEP_RETRY_CAP_SECONDS)
    deps.repo.push_upload_due(upd.experiment_id, upd.round, upd.client_id, now + delay)
    return Verdict(attempts, False, delay)


def round_sweep_failed(deps: Deps, rnd: RoundRecord, exc: BaseException, now: float) -> Verdict:
    """Sweeping round `rnd` raised: push its next check back, or FAIL the round after the bound."""
    reason = describe(exc)
    errors = deps.repo.note_round_sweep_failure(rnd.experiment_id, rnd.round, reason)
    if errors >= deps.limits.max_ingest_attempts:
        deps.repo.fail_round(rnd.experiment_id, rnd.round, f"SWEEP_FAILED: {errors} sweeps failed; last error {reason}")
        return Verdict(errors, True)
    delay = backoff_seconds(max(errors, 1), SWEEP_RETRY_BASE_SECONDS, SWEEP_RETRY_CAP_SECONDS)
    deps.repo.push_due(rnd.experiment_id, rnd.round, now + delay, rnd.state)
    return Verdict(errors, False, delay)


def _parse(key: str) -> tuple[str, int, str | None] | None:
    """(experiment, round, client) of an update key, (experiment, 0, None) of an initial model."""
    from fma.services.ingest import MODEL_KEY, UPDATE_KEY

    if m := UPDATE_KEY.match(key):
        return m["exp"], int(m["round"]), m["client"]
    if m := MODEL_KEY.match(key):
        return m["exp"], 0, None
    return None
