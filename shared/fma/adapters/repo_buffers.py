"""Async-mode buffers (issue 15) on DynamoDB: each write one transaction (DESIGN section 5).

Accepting writes the update (ACCEPTED, `applied_in`, under the client's partition like a sync
round's: dynamo_shards), a BUFFER item naming it under its version and the buffer's count,
conditioned on that round OPEN and the experiment RUNNING, so an update joins exactly one
buffer. A buffer counts on its ROUND item, not on counter shards: its `capacity` must hold
exactly and `buffer_size` is small, so that item takes at most buffer_size writes per version
(`final` marks the item's count as the count, as a sealed sync round's is). Sealing opens the
next buffer and moves `current_round` in the same transaction; publishing requires the previous
version to be the experiment's model.
"""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from fma.adapters import dynamo_shards as shards
from fma.adapters.dynamo_common import state_in, transact
from fma.adapters.dynamo_models import (
    DUE_PK,
    BufferItem,
    ExperimentItem,
    RoundItem,
    UpdateItem,
    buffer_sk,
    exp_pk,
    round_sk,
    update_sk,
)
from fma.adapters.repo_rounds import due_key, round_item, to_update
from fma.domain.clock import iso
from fma.domain.records import RoundRecord, UpdateRecord
from fma.domain.states import ExperimentStatus, RoundState, UpdateStatus, allowed


class BufferRepository:
    def accept_buffered(self, u: UpdateRecord, version: int, capacity: int) -> str:
        """"accepted" | "duplicate" | "closed" (buffer not OPEN) | "full" (`capacity` reached)
        | "inactive" (not RUNNING)."""
        def build(t):
            item = UpdateItem(shards.update_pk(u.experiment_id, u.client_id), update_sk(u.round, u.client_id))
            t.update(item, actions=[
                UpdateItem.round.set(u.round), UpdateItem.client_id.set(u.client_id),
                UpdateItem.status.set(str(UpdateStatus.ACCEPTED)), UpdateItem.num_examples.set(u.num_examples),
                UpdateItem.metrics.set(u.metrics or {}), UpdateItem.sha256.set(u.sha256),
                UpdateItem.size.set(u.size), UpdateItem.reason.remove(), UpdateItem.updated_at.set(u.updated_at),
                UpdateItem.applied_in.set(version), UpdateItem.due_pk.remove(), UpdateItem.due_sk.remove(),
                UpdateItem.version_id.set(u.version_id) if u.version_id else UpdateItem.version_id.remove(),
            ], condition=UpdateItem.status.does_not_exist() | state_in(UpdateItem.status, "accept_buffered"))
            t.save(BufferItem(exp_pk(u.experiment_id), buffer_sk(version, u.round, u.client_id), version=version,
                              round=u.round, client_id=u.client_id), condition=BufferItem.pk.does_not_exist())
            t.update(RoundItem(exp_pk(u.experiment_id), round_sk(version)),
                     actions=[RoundItem.accepted.add(1), RoundItem.final.set(True)],
                     condition=state_in(RoundItem.state, "accept_buffered.round") & (RoundItem.accepted < capacity))
            t.condition_check(ExperimentItem, exp_pk(u.experiment_id), "META",
                              condition=state_in(ExperimentItem.status, "accept_buffered.experiment"))
        codes = transact(build)
        if not codes:
            return "accepted"
        # Classify by consistent reads (implementations differ in reporting which condition failed).
        current = self._update_or_none(u)
        if current is not None and current.status not in allowed("accept_buffered"):
            return "duplicate"
        try:
            rnd = RoundItem.get(exp_pk(u.experiment_id), round_sk(version), consistent_read=True)
        except DoesNotExist:
            return "closed"
        if rnd.state not in allowed("accept_buffered.round"):
            return "closed"
        if int(rnd.accepted or 0) >= capacity:
            return "full"
        exp = ExperimentItem.get(exp_pk(u.experiment_id), "META", consistent_read=True)
        if exp.status not in allowed("accept_buffered.experiment"):
            return "inactive"
        raise RuntimeError(f"accept transaction failed for a transient reason: {codes}")

    @staticmethod
    def _update_or_none(u: UpdateRecord) -> UpdateRecord | None:
        try:
            return to_update(UpdateItem.get(shards.update_pk(u.experiment_id, u.client_id),
                                            update_sk(u.round, u.client_id), consistent_read=True))
        except DoesNotExist:
            return None

    def list_buffer(self, experiment_id: str, version: int) -> list[UpdateRecord]:
        """The updates that joined buffer `version`, in (round, client id) order."""
        entries = BufferItem.query(exp_pk(experiment_id), BufferItem.sk.startswith(f"BUFFER#{version:08d}#"),
                                   consistent_read=True)
        keys = [(shards.update_pk(experiment_id, e.client_id), update_sk(int(e.round), e.client_id))
                for e in entries]
        found = {i.sk: to_update(i) for i in UpdateItem.batch_get(keys, consistent_read=True)}
        return [found[sk] for _, sk in keys if sk in found]

    def seal_buffer(self, experiment_id: str, version: int, quota: int, now: float, lease_seconds: float,
                    next_round: RoundRecord | None) -> bool:
        """Buffer OPEN -> SEALED with at least `quota` updates and `next_round` OPEN as the
        current round, in one transaction: exactly one caller wins."""
        def build(t):
            t.update(RoundItem(exp_pk(experiment_id), round_sk(version)), actions=[
                RoundItem.state.set(str(RoundState.SEALED)), RoundItem.sealed_at.set(now),
                RoundItem.due_pk.set(DUE_PK),
                RoundItem.due_sk.set(due_key(now + lease_seconds, experiment_id, version)),
            ], condition=state_in(RoundItem.state, "seal_buffer") & (RoundItem.accepted >= quota))
            condition = (state_in(ExperimentItem.status, "seal_buffer.experiment")
                         & (ExperimentItem.current_round == version))
            if next_round is None:
                t.condition_check(ExperimentItem, exp_pk(experiment_id), "META", condition=condition)
                return
            t.save(round_item(next_round), condition=RoundItem.pk.does_not_exist())
            t.update(ExperimentItem(exp_pk(experiment_id), "META"), actions=[
                ExperimentItem.current_round.set(next_round.round), ExperimentItem.updated_at.set(iso(now))],
                condition=condition)
        return not transact(build)

    def publish_version(self, experiment_id: str, version: int, owner: str, *, sha256: str, metrics: dict,
                        info: dict, seconds: float, now: float, complete: bool) -> bool:
        """PUBLISHED on top of version - 1 (in order), COMPLETED with the last; one transaction."""
        def build(t):
            t.update(RoundItem(exp_pk(experiment_id), round_sk(version)), actions=[
                RoundItem.state.set(str(RoundState.PUBLISHED)), RoundItem.published_at.set(now),
                RoundItem.model_sha256.set(sha256), RoundItem.metrics.set(metrics), RoundItem.info.set(info),
                RoundItem.aggregation_seconds.set(seconds), RoundItem.due_pk.remove(), RoundItem.due_sk.remove(),
                RoundItem.lease_owner.remove(), RoundItem.lease_expires.remove(),
            ], condition=state_in(RoundItem.state, "publish_version") & (RoundItem.lease_owner == owner))
            actions = [ExperimentItem.model_version.set(version), ExperimentItem.model_sha256.set(sha256),
                       ExperimentItem.updated_at.set(iso(now))]
            if complete:
                actions.append(ExperimentItem.status.set(str(ExperimentStatus.COMPLETED)))
            t.update(ExperimentItem(exp_pk(experiment_id), "META"), actions=actions,
                     condition=state_in(ExperimentItem.status, "publish_version.experiment")
                     & (ExperimentItem.model_version == version - 1))
        return not transact(build)
