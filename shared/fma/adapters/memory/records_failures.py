"""The metadata port over a transactional row store: unexpected (not client-caused) failures
of ingest and the sweeper, counted on the row itself and bounded by the services."""

from __future__ import annotations

from fma.adapters.memory.kv import RowStore
from fma.domain.states import UpdateStatus, allowed

REASON_LIMIT = 1000


class FailureRecords:
    rows: RowStore

    def note_update_failure(self, experiment_id: str, n: int, client_id: str, reason: str, now: float) -> int:
        """Count one failed attempt at an UPLOADING update; the attempts so far (0: nothing to count)."""
        with self.rows.write() as tx:
            row = tx.get("updates", (experiment_id, n, client_id))
            if row is None or row["status"] not in allowed("note_update_failure"):
                return 0
            attempts = int(row.get("attempts") or 0) + 1
            tx.put("updates", row | {"attempts": attempts, "reason": f"RETRYING: {reason}"[:REASON_LIMIT],
                                     "updated_at": now})
        return attempts

    def fail_update(self, experiment_id: str, n: int, client_id: str, reason: str, now: float) -> bool:
        """UPLOADING -> FAILED with its reason, out of the due list; never over an acceptance."""
        with self.rows.write() as tx:
            row = tx.get("updates", (experiment_id, n, client_id))
            if row is None or row["status"] not in allowed("fail_update"):
                return False
            tx.put("updates", row | {"status": str(UpdateStatus.FAILED), "reason": reason[:REASON_LIMIT],
                                     "updated_at": now, "due": None})
        return True

    def note_round_sweep_failure(self, experiment_id: str, n: int, reason: str) -> int:
        """Count one sweep of this round that raised; the count so far (0: no such live round)."""
        with self.rows.write() as tx:
            row = tx.get("rounds", (experiment_id, n))
            if row is None or row["state"] not in allowed("note_round_sweep_failure"):
                return 0
            errors = int(row.get("sweep_errors") or 0) + 1
            tx.put("rounds", row | {"sweep_errors": errors, "last_sweep_error": reason[:REASON_LIMIT]})
        return errors
