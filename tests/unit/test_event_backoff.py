"""The embedded connectors' event retries, on an injected clock: a failed event returns after
1, 2, 4 ... s (each jittered into [half, full] of its step), never later than 30 s, and the
ingest pump sends exactly its failed events back with their delivery counts."""

from __future__ import annotations

import pytest

from fma.adapters.memory.objects import MemoryEvents, MemoryModelStore
from fma.adapters.sqlite_fs import open_connector
from fma.domain.backoff import jittered_backoff
from fma.local.workers import IngestPump
from fma.services.ports import EVENT_RETRY_CAP_SECONDS


class Clock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture(params=["memory", "sqlite_fs"])
def events_and_store(request, tmp_path):
    """(events, store, clock, jitter): `jitter` is the rng's next draw, settable per test."""
    clock, jitter = Clock(), [1.0]
    if request.param == "memory":
        events = MemoryEvents(visibility_seconds=60, clock=clock, rng=lambda: jitter[0])
        yield events, MemoryModelStore(events), clock, jitter
        return
    conn = open_connector(tmp_path / "state", public_url="http://127.0.0.1:1")
    conn.events.clock, conn.events.rng = clock, lambda: jitter[0]
    yield conn.events, conn.store, clock, jitter
    conn.close()


@pytest.mark.parametrize("draw, factor", [(1.0, 1.0), (0.0, 0.5)])
def test_each_retry_waits_its_jittered_step_no_longer(events_and_store, draw, factor):
    events, store, clock, jitter = events_and_store
    jitter[0] = draw
    store.put("updates/e/00000001/c-1.safetensors", b"x")
    (event,) = events.receive(10)
    for deliveries, step in ((1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (5, 16.0), (6, 30.0), (7, 30.0)):
        assert event.deliveries == deliveries
        failed_at = clock.now
        events.retry([event.event_id])
        clock.now = failed_at + step * factor - 0.01
        assert events.receive(10) == []
        clock.now = failed_at + step * factor
        (event,) = events.receive(10)


def test_the_pump_retries_only_failed_events_with_their_receive_count(events_and_store):
    events, store, clock, _ = events_and_store
    for client in ("c-1", "c-2"):
        store.put(f"updates/e/00000001/{client}.safetensors", b"x")
    handled = []

    def run(event):
        handled.append([(r["messageId"], r["attributes"]["ApproximateReceiveCount"]) for r in event["Records"]])
        bad = [r["messageId"] for r in event["Records"] if "c-2" in r["body"]]
        return {"batchItemFailures": [{"itemIdentifier": i} for i in bad]}

    pump = IngestPump(events, "bucket", stop=None, run=run)
    assert pump.pump_once() == 2
    assert [n for _, n in handled[0]] == ["1", "1"]
    clock.now += 1.0  # the first retry's step
    assert pump.pump_once() == 1  # c-1 was acknowledged; c-2 is back within a second, not 60 s
    assert [n for _, n in handled[1]] == ["2"]
    clock.now += EVENT_RETRY_CAP_SECONDS
    assert pump.pump_once() == 1 and handled[2][0][1] == "3"


def test_backoff_doubles_from_its_base_up_to_its_cap():
    assert [jittered_backoff(a, 1.0, 30.0, lambda: 1.0) for a in range(1, 8)] == [1, 2, 4, 8, 16, 30, 30]
    assert jittered_backoff(3, 1.0, 30.0, lambda: 0.0) == 2.0
    assert jittered_backoff(10_000, 1.0, 30.0, lambda: 1.0) == 30.0


def test_a_state_directory_from_before_delivery_counts_gains_the_column(tmp_path):
    import sqlite3

    from fma.adapters.sqlite_fs.db import Database

    old = sqlite3.connect(tmp_path / "fma.db")
    old.execute("CREATE TABLE outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL, "
                "visible_at REAL NOT NULL DEFAULT 0)")
    old.execute("INSERT INTO outbox (key) VALUES ('updates/e/00000001/c-1.safetensors')")
    old.commit()
    old.close()
    db = Database(tmp_path / "fma.db")
    columns = {row[1] for row in db.connection().execute("PRAGMA table_info(outbox)")}
    assert "deliveries" in columns
    assert db.connection().execute("SELECT key, deliveries FROM outbox").fetchall() == [
        ("updates/e/00000001/c-1.safetensors", 0)]
    db.close()
