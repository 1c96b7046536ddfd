"""Idempotency records (fma.services.idempotency) over the row store: claim, complete, release,
with the aws connector's semantics. A record past `expires_at`, or released, counts as absent
(the row store has no delete; a released row is overwritten by the next claim)."""

from __future__ import annotations

from fma.adapters.memory.kv import RowStore
from fma.services.ports import StoredRequest

IN_PROGRESS, COMPLETED, RELEASED = "IN_PROGRESS", "COMPLETED", "RELEASED"


class IdempotencyRecords:
    rows: RowStore

    def claim_idempotency(self, record_id: str, fingerprint: str, now: float, lock_seconds: float,
                          ttl_seconds: float) -> StoredRequest | None:
        """None if this caller won the claim; else the record that is there."""
        with self.rows.write() as tx:
            row = tx.get("idempotency", (record_id,))
            if row is not None and not _claimable(row, fingerprint, now):
                return StoredRequest(row["fingerprint"], row["state"], row.get("status"), row.get("body"))
            tx.put("idempotency", {"record_id": record_id, "fingerprint": fingerprint, "state": IN_PROGRESS,
                                   "lock_expires": now + lock_seconds, "expires_at": now + ttl_seconds})
        return None

    def complete_idempotency(self, record_id: str, status: int, body: str) -> None:
        with self.rows.write() as tx:
            row = tx.get("idempotency", (record_id,))
            if row is not None and row["state"] != RELEASED:
                tx.put("idempotency", row | {"state": COMPLETED, "status": status, "body": body})

    def release_idempotency(self, record_id: str) -> None:
        with self.rows.write() as tx:
            row = tx.get("idempotency", (record_id,))
            if row is not None and row["state"] == IN_PROGRESS:
                tx.put("idempotency", row | {"state": RELEASED})


def _claimable(row: dict, fingerprint: str, now: float) -> bool:
    """Absent in effect: released, expired, or a stale claim of the same request (a crash)."""
    if row["state"] == RELEASED or row["expires_at"] < now:
        return True
    return row["state"] == IN_PROGRESS and row["lock_expires"] < now and row["fingerprint"] == fingerprint
