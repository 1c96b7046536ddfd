"""The metadata port over a transactional row store: rounds, updates, evaluations and the
round lifecycle (seal with one winner, reclaimable leases, the publish transaction, the sweep)."""

from __future__ import annotations

import dataclasses

from fma.adapters.memory import rows as R
from fma.adapters.memory.kv import RowStore, Tx
from fma.adapters.memory.records import _deadline_due
from fma.domain.clock import iso
from fma.domain.errors import Conflict
from fma.domain.records import EvaluationRecord, Page, RoundRecord, UpdateRecord
from fma.domain.states import AGGREGATED, ExperimentStatus, RoundState, UpdateStatus, allowed

LATE_REASON = "ROUND_CLOSED: the round was sealed before this update arrived"


def _update(tx: Tx, u: UpdateRecord) -> UpdateRecord | None:
    row = tx.get("updates", (u.experiment_id, u.round, u.client_id))
    return R.to_update(row) if row else None


def _put_update(tx: Tx, rec: UpdateRecord, due: str | None = None) -> None:
    """Write the record, keeping what the row holds beside it (its failure count)."""
    old = tx.get("updates", (rec.experiment_id, rec.round, rec.client_id)) or {}
    tx.put("updates", old | R.update_row(rec, due))


def _round(tx: Tx, experiment_id: str, n: int) -> tuple[RoundRecord, str | None] | None:
    row = tx.get("rounds", (experiment_id, n))
    return (R.to_round(row), row["due"]) if row else None


def _put_round(tx: Tx, rec: RoundRecord, due: str | None) -> None:
    """Write the record, keeping what the row holds beside it (its sweep-failure count)."""
    old = tx.get("rounds", (rec.experiment_id, rec.round)) or {}
    tx.put("rounds", old | R.round_row(rec, due))


class RoundRecords:
    rows: RowStore

    def get_round(self, experiment_id: str, n: int) -> RoundRecord | None:
        row = self.rows.get_one("rounds", (experiment_id, n))
        return R.to_round(row) if row else None

    def list_rounds(self, experiment_id: str, limit: int, cursor: str | None) -> Page:
        after = R.decode_cursor(cursor, int, f"rounds#{experiment_id}")
        with self.rows.read() as tx:
            found = tx.scan("rounds", (experiment_id,), None if after is None else (experiment_id, after), limit + 1)
        page = [R.to_round(r) for r in found[:limit]]
        return Page(page, R.encode_cursor(page[-1].round, f"rounds#{experiment_id}") if len(found) > limit else None)

    def list_updates(self, experiment_id: str, n: int, accepted_only: bool = False) -> list[UpdateRecord]:
        """Every update of a round in client-id order (only ACCEPTED and APPLIED ones: `accepted_only`)."""
        with self.rows.read() as tx:
            found = [R.to_update(r) for r in tx.scan("updates", (experiment_id, n))]
        return [u for u in found if u.status in AGGREGATED] if accepted_only else found

    def get_update(self, experiment_id: str, n: int, client_id: str) -> UpdateRecord | None:
        row = self.rows.get_one("updates", (experiment_id, n, client_id))
        return R.to_update(row) if row else None

    def begin_upload(self, experiment_id: str, n: int, client_id: str, now: float, grace: float = 300.0,
                     sha256: str | None = None, size: int | None = None, upload_id: str | None = None) -> None:
        """Record UPLOADING, due for reconciliation after `grace`; 409 once an update was accepted."""
        with self.rows.write() as tx:
            row = tx.get("updates", (experiment_id, n, client_id))
            if row is not None and row["status"] not in allowed("begin_upload"):
                raise Conflict(f"an update for round {n} was already accepted from this client",
                               code="ALREADY_SUBMITTED")
            fresh = UpdateRecord(experiment_id, n, client_id, UpdateStatus.UPLOADING, updated_at=now,
                                 declared_sha256=sha256, declared_size=size, upload_id=upload_id)
            tx.put("updates", R.update_row(fresh, R.upload_due_key(now + grace, experiment_id, n, client_id)))

    def accept_update(self, u: UpdateRecord) -> str:
        """ACCEPTED and counted once, only while the round is OPEN and the experiment RUNNING."""
        with self.rows.write() as tx:
            current = _update(tx, u)
            if current is not None and current.status not in allowed("accept_update"):
                return "duplicate"
            found = _round(tx, u.experiment_id, u.round)
            if found is None or found[0].state not in allowed("accept_update.round"):
                return "closed"
            exp = tx.get("experiments", (u.experiment_id,))
            if exp is None or exp["status"] not in allowed("accept_update.experiment"):
                return "inactive"
            accepted = dataclasses.replace(u, status=UpdateStatus.ACCEPTED, metrics=u.metrics or {}, reason=None)
            _put_update(tx, accepted)
            rnd, due = found
            _put_round(tx, dataclasses.replace(rnd, accepted=rnd.accepted + 1), due)
        return "accepted"

    def reject_update(self, u: UpdateRecord) -> bool:
        """REJECTED with its reason and counted once; a re-upload refreshes the reason only."""
        with self.rows.write() as tx:
            current = _update(tx, u)
            if current is not None and current.status not in allowed("reject_update"):
                if current.status in allowed("reject_update.again"):
                    _put_update(tx, dataclasses.replace(current, reason=u.reason, updated_at=u.updated_at))
                return False
            found = _round(tx, u.experiment_id, u.round)
            if found is None:
                return False
            base = current or UpdateRecord(u.experiment_id, u.round, u.client_id, UpdateStatus.UPLOADING)
            _put_update(tx, dataclasses.replace(
                base, status=UpdateStatus.REJECTED, reason=u.reason, sha256=u.sha256, size=u.size,
                updated_at=u.updated_at))
            rnd, due = found
            _put_round(tx, dataclasses.replace(rnd, rejected=rnd.rejected + 1), due)
        return True

    def mark_late(self, u: UpdateRecord) -> bool:
        with self.rows.write() as tx:
            current = _update(tx, u)
            if current is not None and current.status not in allowed("mark_late"):
                return False
            found = _round(tx, u.experiment_id, u.round)
            if found is None:
                return False
            base = current or UpdateRecord(u.experiment_id, u.round, u.client_id, UpdateStatus.UPLOADING)
            _put_update(tx, dataclasses.replace(
                base, status=UpdateStatus.LATE, num_examples=u.num_examples, sha256=u.sha256, size=u.size,
                reason=LATE_REASON, updated_at=u.updated_at))
            rnd, due = found
            _put_round(tx, dataclasses.replace(rnd, late=rnd.late + 1), due)
        return True

    def mark_applied(self, experiment_id: str, n: int, client_id: str, now: float) -> bool:
        with self.rows.write() as tx:
            row = tx.get("updates", (experiment_id, n, client_id))
            if row is None or row["status"] not in allowed("mark_applied"):
                return False
            tx.put("updates", row | {"status": str(UpdateStatus.APPLIED), "updated_at": now})
        return True

    def mark_applied_many(self, experiment_id: str, n: int, client_ids: list[str], now: float) -> int:
        """All of them in one write transaction (one lock, one SQLite commit)."""
        marked = 0
        with self.rows.write() as tx:
            for client_id in client_ids:
                row = tx.get("updates", (experiment_id, n, client_id))
                if row is not None and row["status"] in allowed("mark_applied"):
                    tx.put("updates", row | {"status": str(UpdateStatus.APPLIED), "updated_at": now})
                    marked += 1
        return marked

    def put_evaluation(self, experiment_id: str, rec: EvaluationRecord, now: float) -> None:
        with self.rows.write() as tx:
            if tx.get("evaluations", (experiment_id, rec.round, rec.client_id)) is not None:
                raise Conflict(f"an evaluation of round {rec.round} was already posted by this client",
                               code="ALREADY_EVALUATED")
            tx.put("evaluations", R.evaluation_row(experiment_id, rec, now))

    def list_evaluations(self, experiment_id: str, n: int) -> list[EvaluationRecord]:
        with self.rows.read() as tx:
            return [R.to_evaluation(r) for r in tx.scan("evaluations", (experiment_id, n))]

    def list_due_uploads(self, now: float, limit: int = 100) -> list[UpdateRecord]:
        with self.rows.read() as tx:
            return [R.to_update(r) for r in tx.due("updates", R.due_until(now), limit)]

    def push_upload_due(self, experiment_id: str, n: int, client_id: str, when: float | None) -> None:
        """Check again at `when`, or never (None) for an upload that was abandoned."""
        with self.rows.write() as tx:
            row = tx.get("updates", (experiment_id, n, client_id))
            if row is None or row["status"] not in allowed("push_upload_due"):
                return
            due = R.upload_due_key(when, experiment_id, n, client_id) if when is not None else None
            tx.put("updates", row | {"due": due})


class LifecycleRecords:
    rows: RowStore

    def _move(self, experiment_id: str, n: int, allowed: frozenset[RoundState], due: str | None,
              **changes: object) -> RoundRecord | None:
        """One conditional round write: from a state in `allowed`, apply `changes` (and `due`)."""
        with self.rows.write() as tx:
            found = _round(tx, experiment_id, n)
            if found is None or found[0].state not in allowed:
                return None
            moved = dataclasses.replace(found[0], **changes)
            _put_round(tx, moved, due)
        return moved

    def seal_round(self, experiment_id: str, n: int, quota: int, now: float, lease_seconds: float) -> bool:
        """OPEN -> SEALED when at least `quota` updates are accepted; exactly one caller wins."""
        with self.rows.write() as tx:
            found = _round(tx, experiment_id, n)
            if found is None or found[0].state not in allowed("seal_round") or found[0].accepted < quota:
                return False
            sealed = dataclasses.replace(found[0], state=RoundState.SEALED, sealed_at=now, sealed_by="quota")
            _put_round(tx, sealed, R.due_key(now + lease_seconds, experiment_id, n))
        return True

    def force_seal(self, experiment_id: str, n: int, now: float, lease_seconds: float) -> bool:
        return self._move(experiment_id, n, allowed("force_seal"), R.due_key(now + lease_seconds, experiment_id, n),
                          state=RoundState.SEALED, sealed_at=now, sealed_by="deadline") is not None

    def acquire_lease(self, experiment_id: str, n: int, owner: str, now: float,
                      lease_seconds: float) -> RoundRecord | None:
        """SEALED (or AGGREGATING with an expired lease) -> AGGREGATING held by `owner`."""
        until = now + lease_seconds
        with self.rows.write() as tx:
            found = _round(tx, experiment_id, n)
            if found is None:
                return None
            rnd = found[0]
            held = rnd.lease_expires is not None and rnd.lease_expires >= now  # only AGGREGATING holds one
            if rnd.state not in allowed("acquire_lease") or held:
                return None
            leased = dataclasses.replace(rnd, state=RoundState.AGGREGATING, lease_owner=owner, lease_expires=until,
                                         attempts=rnd.attempts + 1, aggregation_started_at=now)
            _put_round(tx, leased, R.due_key(until, experiment_id, n))
        return leased

    def publish_round(self, experiment_id: str, n: int, owner: str, *, sha256: str, metrics: dict,
                      info: dict, seconds: float, now: float, next_round: RoundRecord | None) -> bool:
        """Round n PUBLISHED and round n+1 OPEN (or the experiment COMPLETED) in one transaction."""
        with self.rows.write() as tx:
            found = _round(tx, experiment_id, n)
            exp = tx.get("experiments", (experiment_id,))
            if found is None or found[0].state not in allowed("publish_round") or found[0].lease_owner != owner:
                return False
            if exp is None or exp["current_round"] != n or exp["status"] not in allowed("publish_round.experiment"):
                return False  # a stop that took effect first: nothing published, no round opened
            exp.update(model_version=n, model_sha256=sha256, updated_at=iso(now))
            if next_round is not None:
                if tx.get("rounds", (experiment_id, next_round.round)) is not None:
                    return False
                exp["current_round"] = n + 1
                _put_round(tx, next_round, _deadline_due(next_round))
            else:
                exp["status"] = str(ExperimentStatus.COMPLETED)
            tx.put("experiments", exp)
            _put_round(tx, dataclasses.replace(
                found[0], state=RoundState.PUBLISHED, published_at=now, model_sha256=sha256, metrics=metrics,
                info=info, aggregation_seconds=seconds, lease_owner=None, lease_expires=None), None)
        return True

    def list_due(self, now: float, limit: int = 100) -> list[RoundRecord]:
        """Rounds whose deadline or lease has passed, oldest first."""
        with self.rows.read() as tx:
            return [R.to_round(r) for r in tx.due("rounds", R.due_until(now), limit)]

    def extend_deadline(self, experiment_id: str, n: int, deadline: float) -> bool:
        return self._move(experiment_id, n, allowed("extend_deadline"), R.due_key(deadline, experiment_id, n),
                          deadline=deadline) is not None

    def push_due(self, experiment_id: str, n: int, when: float, state: RoundState) -> bool:
        """Move a sealed round's next check later (it was re-invoked)."""
        return self._move(experiment_id, n, frozenset({state}), R.due_key(when, experiment_id, n)) is not None

    def stop_experiment(self, experiment_id: str, allowed_from: set[ExperimentStatus], reason: str) -> bool:
        """STOPPED and the current round (if unfinished) FAILED in one transaction."""
        with self.rows.write() as tx:
            exp = tx.get("experiments", (experiment_id,))
            if exp is None or exp["status"] not in {str(s) for s in allowed_from}:
                return False
            n = int(exp["current_round"] or 0)
            found = _round(tx, experiment_id, n) if n else None
            if found is not None and found[0].state in allowed("stop_experiment.round"):
                _put_round(tx, dataclasses.replace(found[0], state=RoundState.FAILED, reason=reason[:1000]), None)
            exp.update(status=str(ExperimentStatus.STOPPED), updated_at=iso())
            tx.put("experiments", exp)
        return True

    def fail_round(self, experiment_id: str, n: int, reason: str) -> bool:
        ok = self._move(experiment_id, n, allowed("fail_round"), None, state=RoundState.FAILED,
                        reason=reason[:1000]) is not None
        if ok:  # finish_experiment comes from ExperimentRecords in the composed repository
            self.finish_experiment(experiment_id, ExperimentStatus.FAILED)  # type: ignore[attr-defined]
        return ok
