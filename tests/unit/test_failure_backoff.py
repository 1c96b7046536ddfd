"""The retry delays of unexpected ingest and sweeper failures: exponential, jittered, capped."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from fma.services.failures import (
    INGEST_RETRY_BASE_SECONDS,
    INGEST_RETRY_CAP_SECONDS,
    backoff_seconds,
    describe,
)


@given(attempt=st.integers(min_value=-5, max_value=10**9), jitter=st.floats(min_value=0.0, max_value=1.0))
def test_backoff_stays_between_half_and_all_of_its_capped_step(attempt, jitter):
    delay = backoff_seconds(attempt, INGEST_RETRY_BASE_SECONDS, INGEST_RETRY_CAP_SECONDS, rng=lambda: jitter)
    step = min(INGEST_RETRY_CAP_SECONDS, INGEST_RETRY_BASE_SECONDS * 2 ** min(max(0, attempt - 1), 32))
    assert 1 <= delay <= INGEST_RETRY_CAP_SECONDS
    assert step / 2 - 0.5 <= delay <= step + 0.5


def test_backoff_doubles_from_two_seconds():
    assert [backoff_seconds(a, 2, 300, rng=lambda: 1.0) for a in range(1, 10)] == [2, 4, 8, 16, 32, 64, 128, 256, 300]


@given(text=st.text(max_size=2000))
def test_failure_reasons_are_short_single_lines(text):
    reason = describe(RuntimeError(text))
    assert reason.startswith("RuntimeError") and "\n" not in reason and len(reason) <= 320
