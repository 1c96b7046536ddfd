"""Object-created events from the outbox table: written in the same transaction as the object's
version, received at least once (a received event returns after `visibility_seconds` unless
acknowledged, or after a short backoff when retried), deleted when acknowledged. Local mode's
ingest pump reads them."""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable

from fma.adapters.sqlite_fs.db import Database
from fma.domain.backoff import jittered_backoff
from fma.services.ports import EVENT_RETRY_BASE_SECONDS, EVENT_RETRY_CAP_SECONDS, ObjectCreated

POLL_SECONDS = 0.05  # other processes' puts are seen within this long


class OutboxEvents:
    def __init__(self, db: Database, created: threading.Condition | None = None, visibility_seconds: float = 60.0,
                 clock: Callable[[], float] = time.time, rng: Callable[[], float] = random.random):
        self.db, self.visibility, self.clock, self.rng = db, visibility_seconds, clock, rng
        self.created = created or threading.Condition()

    def receive(self, limit: int = 10, wait_seconds: float = 0.0) -> list[ObjectCreated]:
        deadline = time.monotonic() + wait_seconds
        while True:
            events = self._claim(limit)
            remaining = deadline - time.monotonic()
            if events or remaining <= 0:
                return events
            with self.created:
                self.created.wait(min(remaining, POLL_SECONDS))

    def _claim(self, limit: int) -> list[ObjectCreated]:
        now = self.clock()
        with self.db.read() as tx:  # most polls find nothing: no write lock for them
            if tx.conn.execute("SELECT 1 FROM outbox WHERE visible_at <= ? LIMIT 1", (now,)).fetchone() is None:
                return []
        with self.db.write() as tx:
            rows = tx.conn.execute("SELECT id, key, deliveries + 1 FROM outbox WHERE visible_at <= ? ORDER BY id "
                                   "LIMIT ?", (now, limit)).fetchall()
            tx.conn.executemany("UPDATE outbox SET visible_at = ?, deliveries = ? WHERE id = ?",
                                [(now + self.visibility, r[2], r[0]) for r in rows])
        return [ObjectCreated(str(r[0]), r[1], int(r[2])) for r in rows]

    def retry(self, event_ids: list[str]) -> None:
        """Each event visible again after 1, 2, 4 ... s (jittered, capped) over its deliveries."""
        now = self.clock()
        with self.db.write() as tx:
            for event_id in event_ids:
                row = tx.conn.execute("SELECT deliveries FROM outbox WHERE id = ?", (int(event_id),)).fetchone()
                if row is not None:
                    delay = jittered_backoff(max(1, int(row[0])), EVENT_RETRY_BASE_SECONDS, EVENT_RETRY_CAP_SECONDS,
                                             self.rng)
                    tx.conn.execute("UPDATE outbox SET visible_at = ? WHERE id = ?", (now + delay, int(event_id)))

    def acknowledge(self, event_ids: list[str]) -> None:
        with self.db.write() as tx:
            tx.conn.executemany("DELETE FROM outbox WHERE id = ?", [(int(i),) for i in event_ids])

    def release_all(self) -> None:
        """Make every unacknowledged event due now (at start: whoever had received them is gone)."""
        with self.db.write() as tx:
            tx.conn.execute("UPDATE outbox SET visible_at = 0 WHERE visible_at > 0")

    def pending(self) -> int:
        with self.db.read() as tx:
            return int(tx.conn.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
