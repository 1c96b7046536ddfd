"""Round and update items: the exactly-once transitions of DESIGN section 5."""

from __future__ import annotations

import contextlib

from pynamodb.exceptions import DoesNotExist, PutError, UpdateError

from fma.adapters import dynamo_shards as shards
from fma.adapters.dynamo_common import decode_cursor, encode_cursor, failed, state_in, transact
from fma.adapters.dynamo_models import (
    DUE_PK,
    CounterShardItem,
    EvaluationItem,
    ExperimentItem,
    RoundItem,
    UpdateItem,
    exp_pk,
    round_sk,
    update_sk,
)
from fma.domain.errors import Conflict
from fma.domain.records import EvaluationRecord, Page, RoundRecord, UpdateRecord
from fma.domain.states import AGGREGATED, RoundState, UpdateStatus, allowed

#: UpdateItems in flight when a publish marks its updates APPLIED.
APPLIED_CONCURRENCY = 16

_OPT_FLOAT = ("deadline", "sealed_at", "published_at", "lease_expires", "aggregation_seconds",
              "aggregation_started_at")


def round_item(r: RoundRecord) -> RoundItem:
    item = RoundItem(exp_pk(r.experiment_id), round_sk(r.round), round=r.round, state=str(r.state),
                     accepted=r.accepted, rejected=r.rejected, late=r.late, min_updates=str(r.min_updates),
                     deadline=r.deadline, opened_at=r.opened_at)
    if r.deadline is not None:
        item.due_pk, item.due_sk = DUE_PK, due_key(r.deadline, r.experiment_id, r.round)
    return item


def due_key(when: float, experiment_id: str, n: int) -> str:
    return f"{when:017.3f}#{experiment_id}#{n:08d}"


def upload_due_key(when: float, experiment_id: str, n: int, client_id: str) -> str:
    return f"{due_key(when, experiment_id, n)}#{client_id}"


def to_round(item: RoundItem) -> RoundRecord:
    """The record; an OPEN sync round's count is the sum of its counter shards (dynamo_shards), a
    sealed one's the final count the seal wrote; an async buffer counts on its item (`final`)."""
    experiment_id = item.pk.removeprefix("EXP#")
    accepted = int(item.accepted or 0)
    if not item.final:
        accepted += shards.count_accepted(experiment_id, int(item.round))
    rec = RoundRecord(
        experiment_id=experiment_id, round=int(item.round), state=RoundState(item.state),
        accepted=accepted, rejected=int(item.rejected or 0), late=int(item.late or 0),
        min_updates=item.min_updates, opened_at=float(item.opened_at), lease_owner=item.lease_owner,
        attempts=int(item.attempts or 0), metrics=item.metrics, info=item.info,
        model_sha256=item.model_sha256, reason=item.reason, sealed_by=item.sealed_by, last_error=item.last_error,
    )
    for name in _OPT_FLOAT:
        value = getattr(item, name)
        setattr(rec, name, float(value) if value is not None else None)
    return rec


def to_update(item: UpdateItem) -> UpdateRecord:
    return UpdateRecord(
        experiment_id=shards.experiment_of(item.pk), round=int(item.round), client_id=item.client_id,
        status=UpdateStatus(item.status),
        num_examples=int(item.num_examples) if item.num_examples is not None else None,
        metrics=item.metrics, sha256=item.sha256, size=int(item.size) if item.size is not None else None,
        reason=item.reason, updated_at=float(item.updated_at), version_id=item.version_id,
        declared_sha256=item.declared_sha256,
        declared_size=int(item.declared_size) if item.declared_size is not None else None,
        upload_id=item.upload_id,
        applied_in=int(item.applied_in) if item.applied_in is not None else None,
    )


def _upd(experiment_id: str, n: int, client_id: str) -> UpdateItem:
    return UpdateItem(shards.update_pk(experiment_id, client_id), update_sk(n, client_id))


def _rnd(experiment_id: str, n: int) -> RoundItem:
    return RoundItem(exp_pk(experiment_id), round_sk(n))


class RoundRepository:
    def get_round(self, experiment_id: str, n: int) -> RoundRecord | None:
        try:
            return to_round(RoundItem.get(exp_pk(experiment_id), round_sk(n), consistent_read=True))
        except DoesNotExist:
            return None

    def list_rounds(self, experiment_id: str, limit: int, cursor: str | None) -> Page:
        result = RoundItem.query(exp_pk(experiment_id), RoundItem.sk.startswith("ROUND#"), limit=limit,
                                 scan_index_forward=True, last_evaluated_key=decode_cursor(
                                     cursor, {"pk": exp_pk(experiment_id), "sk": "ROUND#*"}),
                                 consistent_read=True)
        items = [to_round(i) for i in result]
        return Page(items, encode_cursor(result.last_evaluated_key))

    def list_updates(self, experiment_id: str, n: int, accepted_only: bool = False) -> list[UpdateRecord]:
        """Every update of a round in client-id order, gathered from the experiment's partitions;
        with `accepted_only` the ACCEPTED and APPLIED ones, from the partitions whose counter
        shard counted an accept (shard k counts partition k's accepts: one batch read of S keys
        instead of S queries)."""
        partitions = (shards.accepting_partitions(experiment_id, n) if accepted_only
                      else shards.update_partitions(experiment_id))
        found = [to_update(i) for pk in partitions for i in UpdateItem.query(
            pk, UpdateItem.sk.startswith(f"UPDATE#{n:08d}#"), consistent_read=True)]
        if accepted_only:
            found = [u for u in found if u.status in AGGREGATED]
        return sorted(found, key=lambda u: u.client_id)

    def get_update(self, experiment_id: str, n: int, client_id: str) -> UpdateRecord | None:
        try:
            return to_update(UpdateItem.get(shards.update_pk(experiment_id, client_id), update_sk(n, client_id),
                                            consistent_read=True))
        except DoesNotExist:
            return None

    def begin_upload(self, experiment_id: str, n: int, client_id: str, now: float, grace: float = 300.0,
                     sha256: str | None = None, size: int | None = None, upload_id: str | None = None) -> None:
        """Record UPLOADING with the sha256 the bytes must have; a client whose update was
        accepted may not send another (409). Ingest accepts an object only against this record.

        The item is due for the sweeper after `grace`: if its S3 event never arrives, the
        sweeper ingests the object itself.
        """
        try:
            UpdateItem(shards.update_pk(experiment_id, client_id), update_sk(n, client_id), round=n,
                       client_id=client_id, status=str(UpdateStatus.UPLOADING), updated_at=now,
                       declared_sha256=sha256, declared_size=size, upload_id=upload_id,
                       due_pk=shards.upload_due_pk(client_id),
                       due_sk=upload_due_key(now + grace, experiment_id, n, client_id)).save(
                condition=UpdateItem.pk.does_not_exist() | state_in(UpdateItem.status, "begin_upload"))
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict(f"an update for round {n} was already accepted from this client",
                               code="ALREADY_SUBMITTED") from None
            raise

    def accept_update(self, u: UpdateRecord) -> str:
        """One transaction over the update item and one counter shard of the round (no ROUND or
        META item: dynamo_shards); the experiment's status is read first.

        Returns "accepted", "duplicate" (already accepted/applied/late), "closed" (round not OPEN:
        its shards are closed by the seal) or "inactive" (experiment paused or stopped: left
        UPLOADING for reconciliation).
        """
        refused = self._classify_refused(u)
        if refused:
            return refused

        def build(t):
            t.update(_upd(u.experiment_id, u.round, u.client_id), actions=[
                UpdateItem.round.set(u.round), UpdateItem.client_id.set(u.client_id),
                UpdateItem.status.set(str(UpdateStatus.ACCEPTED)), UpdateItem.num_examples.set(u.num_examples),
                UpdateItem.metrics.set(u.metrics or {}), UpdateItem.sha256.set(u.sha256),
                UpdateItem.size.set(u.size), UpdateItem.reason.remove(), UpdateItem.updated_at.set(u.updated_at),
                UpdateItem.due_pk.remove(), UpdateItem.due_sk.remove(),
                UpdateItem.version_id.set(u.version_id) if u.version_id else UpdateItem.version_id.remove(),
            ], condition=UpdateItem.status.does_not_exist() | state_in(UpdateItem.status, "accept_update"))
            t.update(shards.counter(u.experiment_id, u.round, u.client_id),
                     actions=[CounterShardItem.accepted.add(1)], condition=CounterShardItem.closed.does_not_exist())
        codes = transact(build)
        if not codes:
            return "accepted"
        found = self._classify_refused(u)
        if found:
            return found
        raise RuntimeError(f"accept transaction failed for a transient reason: {codes}")

    def _classify_refused(self, u: UpdateRecord) -> str | None:
        """Why an accept cannot happen (or did not), by consistent reads in the order the states
        decide it: "duplicate", "closed" (round not OPEN, or its shard closed by the seal),
        "inactive" (experiment not RUNNING); None when it may happen."""
        current = self.get_update(u.experiment_id, u.round, u.client_id)
        if current is not None and current.status not in allowed("accept_update"):
            return "duplicate"
        rnd = self._round_item(u.experiment_id, u.round)
        shard = shards.counter(u.experiment_id, u.round, u.client_id)
        try:
            closed = bool(CounterShardItem.get(shard.pk, shard.sk, consistent_read=True).closed)
        except DoesNotExist:
            closed = False
        if closed or rnd is None or rnd.state not in allowed("accept_update.round"):
            return "closed"
        try:
            status = ExperimentItem.get(exp_pk(u.experiment_id), "META", consistent_read=True).status
        except DoesNotExist:
            return "closed"
        return None if status in allowed("accept_update.experiment") else "inactive"

    @staticmethod
    def _round_item(experiment_id: str, n: int) -> RoundItem | None:
        try:
            return RoundItem.get(exp_pk(experiment_id), round_sk(n), consistent_read=True)
        except DoesNotExist:
            return None

    def reject_update(self, u: UpdateRecord) -> bool:
        """Mark REJECTED with its reason and count it once; never overrides an acceptance."""
        def build(t):
            t.update(_upd(u.experiment_id, u.round, u.client_id), actions=[
                UpdateItem.round.set(u.round), UpdateItem.client_id.set(u.client_id),
                UpdateItem.status.set(str(UpdateStatus.REJECTED)), UpdateItem.reason.set(u.reason),
                UpdateItem.sha256.set(u.sha256), UpdateItem.size.set(u.size),
                UpdateItem.updated_at.set(u.updated_at), UpdateItem.due_pk.remove(), UpdateItem.due_sk.remove(),
            ], condition=UpdateItem.status.does_not_exist() | state_in(UpdateItem.status, "reject_update"))
            t.update(_rnd(u.experiment_id, u.round), actions=[RoundItem.rejected.add(1)],
                     condition=RoundItem.pk.exists())
        codes = transact(build, raise_when_contended=True)
        if not codes:
            return True
        if failed(codes, 0):  # already rejected: refresh the reason of a re-upload, count nothing
            with contextlib.suppress(UpdateError):
                _upd(u.experiment_id, u.round, u.client_id).update(
                    actions=[UpdateItem.reason.set(u.reason), UpdateItem.updated_at.set(u.updated_at)],
                    condition=state_in(UpdateItem.status, "reject_update.again"))
            return False
        return False

    def mark_late(self, u: UpdateRecord) -> bool:
        def build(t):
            t.update(_upd(u.experiment_id, u.round, u.client_id), actions=[
                UpdateItem.round.set(u.round), UpdateItem.client_id.set(u.client_id),
                UpdateItem.status.set(str(UpdateStatus.LATE)), UpdateItem.num_examples.set(u.num_examples),
                UpdateItem.sha256.set(u.sha256), UpdateItem.size.set(u.size),
                UpdateItem.reason.set("ROUND_CLOSED: the round was sealed before this update arrived"),
                UpdateItem.updated_at.set(u.updated_at), UpdateItem.due_pk.remove(), UpdateItem.due_sk.remove(),
            ], condition=UpdateItem.status.does_not_exist() | state_in(UpdateItem.status, "mark_late"))
            t.update(_rnd(u.experiment_id, u.round), actions=[RoundItem.late.add(1)])
        return not transact(build, raise_when_contended=True)

    def list_due_uploads(self, now: float, limit: int = 100) -> list[UpdateRecord]:
        """UPLOADING updates whose S3 event is overdue, oldest first, from the sparse index's
        `DUE_UPLOAD#{j}` partitions (spread by client, so no upload writes one service-wide key)."""
        key = f"{now:017.3f}~"
        found = [i for pk in shards.UPLOAD_DUE_PARTITIONS
                 for i in UpdateItem.due_index.query(pk, UpdateItem.due_sk <= key, limit=limit)]
        return [to_update(i) for i in sorted(found, key=lambda i: i.due_sk)[:limit]]

    def push_upload_due(self, experiment_id: str, n: int, client_id: str, when: float | None) -> None:
        """Check again at `when`, or never (None) for an upload that was abandoned."""
        actions = ([UpdateItem.due_sk.set(upload_due_key(when, experiment_id, n, client_id))] if when is not None
                   else [UpdateItem.due_pk.remove(), UpdateItem.due_sk.remove()])
        with contextlib.suppress(UpdateError):
            _upd(experiment_id, n, client_id).update(actions=actions,
                                                     condition=state_in(UpdateItem.status, "push_upload_due"))

    def mark_applied(self, experiment_id: str, n: int, client_id: str, now: float) -> bool:
        try:
            _upd(experiment_id, n, client_id).update(
                actions=[UpdateItem.status.set(str(UpdateStatus.APPLIED)), UpdateItem.updated_at.set(now)],
                condition=state_in(UpdateItem.status, "mark_applied"))
            return True
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise

    def mark_applied_many(self, experiment_id: str, n: int, client_ids: list[str], now: float,
                          concurrency: int = APPLIED_CONCURRENCY) -> int:
        """Conditional UpdateItems `concurrency` at a time (1 WCU each; a transaction of 100
        would cost 2 each and fail whole on one item already APPLIED by a concurrent run)."""
        if len(client_ids) <= 1:
            return sum(self.mark_applied(experiment_id, n, c, now) for c in client_ids)
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(min(concurrency, len(client_ids)), thread_name_prefix="fma-applied") as pool:
            return sum(pool.map(lambda c: self.mark_applied(experiment_id, n, c, now), client_ids))

    def put_evaluation(self, experiment_id: str, rec: EvaluationRecord, now: float) -> None:
        try:
            EvaluationItem(exp_pk(experiment_id), f"EVAL#{rec.round:08d}#{rec.client_id}", round=rec.round,
                           client_id=rec.client_id, num_examples=rec.num_examples, metrics=rec.metrics,
                           created_at=now).save(condition=EvaluationItem.pk.does_not_exist())
        except PutError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                raise Conflict(f"an evaluation of round {rec.round} was already posted by this client",
                               code="ALREADY_EVALUATED") from None
            raise

    def list_evaluations(self, experiment_id: str, n: int) -> list[EvaluationRecord]:
        return [EvaluationRecord(int(i.round), i.client_id, int(i.num_examples), i.metrics or {})
                for i in EvaluationItem.query(exp_pk(experiment_id),
                                              EvaluationItem.sk.startswith(f"EVAL#{n:08d}#"))]
