"""The SDK's pointer wait (fma_client._pointer): conditional GETs while unchanged, a random pause
of up to `spread_seconds` after a change, the API fallback after API_FALLBACK_SECONDS, and no
bearer token sent to the pointer's host."""

from __future__ import annotations

import random
from types import SimpleNamespace

from fma_client._pointer import API_FALLBACK_SECONDS, PointerWatch, wait_for_change
from fma_client._wait import Waiter


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class PointerHost:
    """Answers the pointer's conditional GETs; `body` is what the server last wrote."""

    def __init__(self, body: dict) -> None:
        self.body, self.requests = body, []

    def send(self, method, url, *, ok, headers):
        self.requests.append(dict(headers))
        etag = f'"{hash(tuple(sorted(self.body.items())))}"'
        if headers.get("If-None-Match") == etag:
            return SimpleNamespace(status_code=304, headers={"ETag": etag}, json=lambda: None)
        return SimpleNamespace(status_code=200, headers={"ETag": etag}, json=lambda b=dict(self.body): b)


def _client(clock: FakeClock):
    waiter = Waiter(sleep=clock.sleep, clock=clock, rng=random.Random(3))
    return SimpleNamespace(clock=clock, waiter=waiter)


def test_a_change_returns_after_a_spread_pause_and_unchanged_polls_are_conditional():
    clock = FakeClock()
    host = PointerHost({"status": "RUNNING", "current_round": 1, "spread_seconds": 50.0})
    watch = PointerWatch(host, "https://cdn/pointers/e/p.json")
    calls = {"n": 0}

    def moved(body):
        calls["n"] += 1
        if calls["n"] == 5:  # the server publishes between the 4th and 5th poll
            host.body = {"status": "RUNNING", "current_round": 2, "spread_seconds": 50.0}
        return body["current_round"] == 2

    wait_for_change(_client(clock), watch, moved, delay=10.0)
    assert watch.body["current_round"] == 2
    assert all("Authorization" not in h for h in host.requests)
    assert [bool(h.get("If-None-Match")) for h in host.requests[:3]] == [False, True, True]
    *polls, spread = clock.sleeps
    assert all(5.0 <= s <= 10.0 for s in polls) and 0.0 <= spread <= 50.0


def test_without_a_change_the_wait_ends_at_the_api_fallback():
    clock = FakeClock()
    host = PointerHost({"status": "PAUSED", "current_round": 1})
    wait_for_change(_client(clock), PointerWatch(host, "https://cdn/p.json"), lambda b: False, delay=10.0)
    assert API_FALLBACK_SECONDS <= clock.now <= API_FALLBACK_SECONDS + 1e-6
    assert len(host.requests) >= API_FALLBACK_SECONDS / 10


def test_an_unreadable_pointer_keeps_waiting_instead_of_raising():
    from fma_client.errors import FmaError

    class Missing:
        def send(self, *a, **k):
            raise FmaError("404 not found")

    clock = FakeClock()
    watch = PointerWatch(Missing(), "https://cdn/p.json")
    wait_for_change(_client(clock), watch, lambda b: True, delay=10.0, limit=60.0)
    assert watch.body is None and clock.now >= 60.0 - 1e-6
