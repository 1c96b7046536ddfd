"""The bounded, jittered retry of contended DynamoDB writes (fma.adapters.dynamo_retry)."""

from __future__ import annotations

import pytest
from botocore.exceptions import ClientError
from pynamodb.exceptions import TransactWriteError, UpdateError

from fma.adapters import dynamo_retry
from fma.adapters.dynamo_retry import RetryPolicy, contended, retry_contended


def _cancelled(*codes: str | None) -> TransactWriteError:
    """The error pynamodb raises for a cancelled transaction (its cause carries the reasons)."""
    from pynamodb.connection.base import VerboseClientError
    from pynamodb.exceptions import CancellationReason

    cause = VerboseClientError({"Error": {"Code": "TransactionCanceledException", "Message": "cancelled"}},
                               "TransactWriteItems", {},
                               cancellation_reasons=[CancellationReason(code=c) if c else None for c in codes])
    return TransactWriteError("cancelled", cause=cause)


def _single(code: str) -> UpdateError:
    return UpdateError("failed", cause=ClientError({"Error": {"Code": code, "Message": "x"}}, "UpdateItem"))


@pytest.mark.parametrize(("codes", "expected"), [
    (["TransactionConflict", None], True),
    ([None, "ThrottlingError"], True),
    (["ProvisionedThroughputExceeded", "TransactionConflict"], True),
    (["TransactionConflict", "ConditionalCheckFailed"], False),  # a retry would fail the condition again
    (["TransactionConflict", "ValidationError"], False),
    ([None, "ConditionalCheckFailed"], False),
    ([None, None], False),
    ([], False),
])
def test_only_a_cancellation_explained_by_contention_alone_is_retried(codes, expected):
    assert contended(codes) is expected


def test_delays_are_jittered_exponential_and_capped():
    low, high = RetryPolicy(rng=lambda: 0.0), RetryPolicy(rng=lambda: 1.0)
    assert [high.delay(a) for a in range(1, 8)] == [0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0]
    assert [low.delay(a) for a in range(1, 8)] == [0.025, 0.05, 0.1, 0.2, 0.4, 0.5, 0.5]
    assert dynamo_retry.POLICY.attempts == 6
    assert RetryPolicy().max_total_sleep == pytest.approx(1.55)  # well under ingest's 120 s timeout


def _flaky(failures: list[Exception]):
    calls = []

    def write() -> str:
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return "done"

    return write, calls


def test_contention_is_retried_until_the_write_succeeds():
    slept: list[float] = []
    policy = RetryPolicy(sleep=slept.append, rng=lambda: 0.5)
    write, calls = _flaky([_cancelled("TransactionConflict"), _single("TransactionConflictException"),
                           _cancelled(None, "ThrottlingError")])
    assert retry_contended(write, policy) == "done"
    assert len(calls) == 4 and slept == pytest.approx([0.0375, 0.075, 0.15])


def test_the_last_error_is_raised_when_the_attempts_are_spent():
    slept: list[float] = []
    policy = RetryPolicy(attempts=3, sleep=slept.append, rng=lambda: 1.0)
    write, calls = _flaky([_cancelled("TransactionConflict") for _ in range(10)])
    with pytest.raises(TransactWriteError):
        retry_contended(write, policy)
    assert len(calls) == 3 and slept == [0.05, 0.1]


@pytest.mark.parametrize("error", [_cancelled("ConditionalCheckFailed"), _cancelled("TransactionConflict",
                                   "ValidationError"), _single("ConditionalCheckFailedException"),
                                   _single("ProvisionedThroughputExceededException")])
def test_anything_else_is_raised_at_once_without_sleeping(error):
    slept: list[float] = []
    write, calls = _flaky([error])
    with pytest.raises(type(error)):
        retry_contended(write, RetryPolicy(sleep=slept.append))
    assert len(calls) == 1 and slept == []  # throttling of a single call is botocore's to retry


def test_the_table_clients_retry_throttling_in_botocores_standard_mode_a_bounded_number_of_times():
    from fma.adapters.dynamo_common import connection
    from fma.adapters.dynamo_models import RoundItem

    for conn in (connection(), RoundItem._get_connection().connection):
        retries = conn.client.meta.config.retries
        assert retries == {"total_max_attempts": 1 + dynamo_retry.CLIENT_MAX_RETRIES, "mode": "standard"}
