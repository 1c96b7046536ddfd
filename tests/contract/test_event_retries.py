"""Contract: a received event sent back with `retry` is delivered again within seconds (the
first retry after at most EVENT_RETRY_BASE_SECONDS), not after the visibility timeout, and
counts its deliveries (which bound the ingest handler's attempts)."""

from __future__ import annotations

import time

import pytest


def _next_delivery(events, patience: float = 10.0) -> list:
    """Poll until the event returns; `patience` bounds the wait only (nothing is timed)."""
    deadline = time.monotonic() + patience
    while time.monotonic() < deadline:
        got = events.receive(10, wait_seconds=0)
        if got:
            return got
        time.sleep(0.05)
    return []


def test_a_retried_event_comes_back_soon_and_counts_its_deliveries(connector):
    if connector.events is None:
        pytest.skip("connector has no object-created events")
    events = connector.events
    connector.store.put("updates/e/00000001/c-1.safetensors", b"x")
    first = _next_delivery(events)
    assert [(e.key, e.deliveries) for e in first] == [("updates/e/00000001/c-1.safetensors", 1)]
    events.retry([first[0].event_id])
    assert events.receive(10, wait_seconds=0) == []  # not at once: after a backoff
    again = _next_delivery(events)
    assert [(e.key, e.deliveries) for e in again] == [("updates/e/00000001/c-1.safetensors", 2)]
    events.acknowledge([again[0].event_id])
    assert events.receive(10, wait_seconds=0) == []
