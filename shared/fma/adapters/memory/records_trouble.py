"""The trouble a round shows the dashboard, on the row store: uploads refused during a pause and
the error of the latest aggregation attempt (the aws connector's repo_trouble, same semantics)."""

from __future__ import annotations

import dataclasses

from fma.adapters.memory import rows as R
from fma.adapters.memory.kv import RowStore
from fma.adapters.memory.records_rounds import _put_round
from fma.domain.records import RefusalRecord
from fma.domain.states import allowed

MAX_ERROR_CHARS = 1000


class TroubleRecords:
    rows: RowStore

    def record_refusal(self, experiment_id: str, n: int, client_id: str, code: str, reason: str,
                       now: float) -> None:
        """Count one refused upload of `client_id` in round n (one row per client and round)."""
        with self.rows.write() as tx:
            row = tx.get("refusals", (experiment_id, n, client_id))
            first = row["first_at"] if row else now
            tx.put("refusals", {"experiment_id": experiment_id, "round": n, "client_id": client_id, "code": code,
                                "reason": reason[:MAX_ERROR_CHARS], "count": (row["count"] if row else 0) + 1,
                                "first_at": first, "last_at": now})

    def list_refusals(self, experiment_id: str, n: int) -> list[RefusalRecord]:
        """The refusals of round n in client-id order."""
        with self.rows.read() as tx:
            found = tx.scan("refusals", (experiment_id, n))
        return [RefusalRecord(r["round"], r["client_id"], r["code"], r["reason"], r["count"], r["first_at"],
                              r["last_at"]) for r in found]

    def record_aggregation_error(self, experiment_id: str, n: int, error: str, owner: str | None = None) -> bool:
        """Keep `error` as the round's last error while SEALED or AGGREGATING (held by `owner` when given)."""
        with self.rows.write() as tx:
            row = tx.get("rounds", (experiment_id, n))
            if row is None:
                return False
            rnd = R.to_round(row)
            if rnd.state not in allowed("record_aggregation_error") or (owner is not None and rnd.lease_owner != owner):
                return False
            _put_round(tx, dataclasses.replace(rnd, last_error=error[:MAX_ERROR_CHARS]), row["due"])
        return True
