"""Bounded, jittered retries of contended DynamoDB writes inside one invocation (issue 13 item 2).

Two layers, each doing what it can see:

- botocore (standard mode, ``CLIENT_MAX_RETRIES`` retries) retries what it recognises: throttling
  (ProvisionedThroughputExceededException, ThrottlingException, RequestLimitExceeded ...) and
  5xx answers, with its own jittered backoff (``rand(0, 1) * min(2**i, 20)`` s for throttling).
- botocore never retries a ``TransactionCanceledException``, whatever its reasons, nor a single
  write's ``TransactionConflictException`` (the item was in another transaction). `retry_contended`
  retries those here when contention alone explains them: every reason of the cancellation is
  TransactionConflict, ThrottlingError or ProvisionedThroughputExceeded (none is
  ConditionalCheckFailed or ValidationError, which a retry would only repeat). `POLICY`: at most
  6 attempts, 50 ms, 100 ms ... capped at 1 s, each drawn in [half, full] of its step: at most
  1.55 s asleep per write. After that the caller's error fails the SQS record back to the queue,
  which returns it within seconds (fma.services.failures).

Every write retried here is conditional on the state it changes (an update still UPLOADING, a
round still OPEN, a shard not closed), so an attempt whose outcome was unknown to us (applied,
then the answer lost) makes its retry fail that condition instead of applying twice; callers
classify such a refusal by reading the state back.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from pynamodb.exceptions import PynamoDBException, TransactWriteError

from fma.domain.backoff import jittered_backoff

#: botocore retries (after the first attempt) of every DynamoDB call, standard mode.
CLIENT_MAX_RETRIES = 3
#: cancellation reasons that only say "another writer was there first" or "slow down".
CONTENTION_REASONS = frozenset({"TransactionConflict", "ThrottlingError", "ProvisionedThroughputExceeded"})
#: a single-item write refused because its item is part of an ongoing transaction.
SINGLE_WRITE_CONFLICT = "TransactionConflictException"

T = TypeVar("T")


@dataclass
class RetryPolicy:
    """How often and how long to retry a contended write; `sleep` and `rng` are injectable."""

    attempts: int = 6
    base_seconds: float = 0.05
    cap_seconds: float = 1.0
    sleep: Callable[[float], None] = field(default=time.sleep)
    rng: Callable[[], float] = field(default=random.random)

    def delay(self, attempt: int) -> float:
        """The pause after failed attempt `attempt` (1, 2, ...)."""
        return jittered_backoff(attempt, self.base_seconds, self.cap_seconds, self.rng)

    @property
    def max_total_sleep(self) -> float:
        """The longest this policy can sleep for one write (every jitter at its full step)."""
        return sum(min(self.cap_seconds, self.base_seconds * 2 ** (a - 1)) for a in range(1, self.attempts))


#: the policy every contended write uses (tests replace its sleep and rng).
POLICY = RetryPolicy()


class WriteContended(RuntimeError):
    """A write stayed contended through every in-invocation retry: transient, retry it later."""

    def __init__(self, codes: list[str | None], attempts: int):
        super().__init__(f"write still contended after {attempts} attempts: {codes}")
        self.codes, self.attempts = codes, attempts


def cancellation_codes(exc: TransactWriteError) -> list[str | None]:
    """One entry per item of the transaction: its reason, None where that item was fine."""
    return [r.code if r else None for r in exc.cancellation_reasons]


def contended(codes: list[str | None]) -> bool:
    """True when contention alone cancelled the transaction (so the same request may succeed)."""
    reasons = [c for c in codes if c not in (None, "None")]
    return bool(reasons) and all(c in CONTENTION_REASONS for c in reasons)


def is_contention(exc: BaseException) -> bool:
    """A cancelled transaction explained by contention, or a single write that met a transaction."""
    if isinstance(exc, TransactWriteError):
        return contended(cancellation_codes(exc))
    return isinstance(exc, PynamoDBException) and exc.cause_response_code == SINGLE_WRITE_CONFLICT


def retry_contended(write: Callable[[], T], policy: RetryPolicy | None = None) -> T:
    """Run `write`; while contention alone makes it fail, retry with jittered backoff, at most
    `policy.attempts` times in all, then re-raise the last error. Any other error is raised at once."""
    policy = policy or POLICY
    for attempt in range(1, policy.attempts + 1):
        try:
            return write()
        except PynamoDBException as exc:
            if attempt == policy.attempts or not is_contention(exc):
                raise
            policy.sleep(policy.delay(attempt))
    raise AssertionError("unreachable: the last attempt returns or raises")
