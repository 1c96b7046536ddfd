"""Async-mode buffers (issue 15) on the embedded connectors: accept into the open buffer, seal
it and open the next, publish a version, each one transaction over the row store.

Every check runs before the first `put`: a transaction that returns early has staged nothing.
"""

from __future__ import annotations

import dataclasses

from fma.adapters.memory import rows as R
from fma.adapters.memory.kv import RowStore
from fma.adapters.memory.records import _deadline_due
from fma.adapters.memory.records_rounds import (
    _put_round,
    _put_update,
    _round,
    _update,
)
from fma.domain.clock import iso
from fma.domain.records import RoundRecord, UpdateRecord
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus, allowed


class BufferRecords:
    rows: RowStore

    def accept_buffered(self, u: UpdateRecord, version: int, capacity: int) -> str:
        """ACCEPTED into buffer `version` (recorded as `applied_in`) and counted there once,
        only while that round is OPEN with fewer than `capacity` updates and the experiment
        RUNNING: "accepted" | "duplicate" | "closed" | "full" | "inactive"."""
        with self.rows.write() as tx:
            current = _update(tx, u)
            if current is not None and current.status not in allowed("accept_buffered"):
                return "duplicate"
            found = _round(tx, u.experiment_id, version)
            if found is None or found[0].state not in allowed("accept_buffered.round"):
                return "closed"
            if found[0].accepted >= capacity:
                return "full"
            exp = tx.get("experiments", (u.experiment_id,))
            if exp is None or exp["status"] not in allowed("accept_buffered.experiment"):
                return "inactive"
            _put_update(tx, dataclasses.replace(u, status=UpdateStatus.ACCEPTED, metrics=u.metrics or {},
                                                reason=None, applied_in=version))
            tx.put("buffers", {"experiment_id": u.experiment_id, "version": version, "round": u.round,
                               "client_id": u.client_id})
            rnd, due = found
            _put_round(tx, dataclasses.replace(rnd, accepted=rnd.accepted + 1), due)
        return "accepted"

    def list_buffer(self, experiment_id: str, version: int) -> list[UpdateRecord]:
        """The updates that joined buffer `version`, in (round, client id) order."""
        with self.rows.read() as tx:
            keys = tx.scan("buffers", (experiment_id, version))
            return [R.to_update(tx.get("updates", (experiment_id, k["round"], k["client_id"])) or {})
                    for k in keys]

    def seal_buffer(self, experiment_id: str, version: int, quota: int, now: float, lease_seconds: float,
                    next_round: RoundRecord | None) -> bool:
        """Buffer `version` OPEN -> SEALED with at least `quota` updates, and `next_round` OPEN as
        the experiment's current round, in one transaction; exactly one caller wins."""
        with self.rows.write() as tx:
            found = _round(tx, experiment_id, version)
            exp = tx.get("experiments", (experiment_id,))
            if found is None or found[0].state not in allowed("seal_buffer") or found[0].accepted < quota:
                return False
            if exp is None or exp["status"] not in allowed("seal_buffer.experiment") or exp["current_round"] != version:
                return False
            if next_round is not None and tx.get("rounds", (experiment_id, next_round.round)) is not None:
                return False
            sealed = dataclasses.replace(found[0], state=RoundState.SEALED, sealed_at=now)
            _put_round(tx, sealed, R.due_key(now + lease_seconds, experiment_id, version))
            if next_round is not None:
                _put_round(tx, next_round, _deadline_due(next_round))
                tx.put("experiments", exp | {"current_round": next_round.round, "updated_at": iso(now)})
        return True

    def publish_version(self, experiment_id: str, version: int, owner: str, *, sha256: str, metrics: dict,
                        info: dict, seconds: float, now: float, complete: bool) -> bool:
        """Version `version` PUBLISHED on top of version - 1 (versions publish in order), and the
        experiment COMPLETED with the last one, in one transaction; only the lease owner wins."""
        with self.rows.write() as tx:
            found = _round(tx, experiment_id, version)
            exp = tx.get("experiments", (experiment_id,))
            if found is None or found[0].state not in allowed("publish_version") or found[0].lease_owner != owner:
                return False
            if (exp is None or exp["status"] not in allowed("publish_version.experiment")
                    or (exp["model_version"] or 0) != version - 1):
                return False  # a stop took effect first, or the previous version is not out yet
            exp.update(model_version=version, model_sha256=sha256, updated_at=iso(now))
            if complete:
                exp["status"] = str(ExperimentStatus.COMPLETED)
            tx.put("experiments", exp)
            _put_round(tx, dataclasses.replace(
                found[0], state=RoundState.PUBLISHED, published_at=now, model_sha256=sha256, metrics=metrics,
                info=info, aggregation_seconds=seconds, lease_owner=None, lease_expires=None), None)
        return True
