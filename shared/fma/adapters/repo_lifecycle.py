"""Round lifecycle writes: seal (one winner), lease (reclaimable), publish (one transaction)."""

from __future__ import annotations

from pynamodb.exceptions import UpdateError

from fma.adapters.dynamo_common import transact
from fma.adapters.dynamo_models import DUE_PK, ExperimentItem, RoundItem, exp_pk, round_sk
from fma.adapters.repo_rounds import due_key, round_item, to_round
from fma.domain.clock import iso
from fma.domain.records import RoundRecord
from fma.domain.states import ExperimentStatus, RoundState


def _conditional(fn) -> bool:
    try:
        fn()
        return True
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise


class LifecycleRepository:
    def seal_round(self, experiment_id: str, n: int, quota: int, now: float, lease_seconds: float) -> bool:
        """OPEN -> SEALED when at least `quota` updates are accepted; exactly one caller wins."""
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        return _conditional(lambda: item.update(
            actions=[RoundItem.state.set(str(RoundState.SEALED)), RoundItem.sealed_at.set(now),
                     RoundItem.due_pk.set(DUE_PK),
                     RoundItem.due_sk.set(due_key(now + lease_seconds, experiment_id, n))],
            condition=(RoundItem.state == str(RoundState.OPEN)) & (RoundItem.accepted >= quota)))

    def acquire_lease(self, experiment_id: str, n: int, owner: str, now: float,
                      lease_seconds: float) -> RoundRecord | None:
        """SEALED (or AGGREGATING with an expired lease) -> AGGREGATING held by `owner`."""
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        until = now + lease_seconds
        ok = _conditional(lambda: item.update(
            actions=[RoundItem.state.set(str(RoundState.AGGREGATING)), RoundItem.lease_owner.set(owner),
                     RoundItem.lease_expires.set(until), RoundItem.attempts.add(1),
                     RoundItem.due_pk.set(DUE_PK), RoundItem.due_sk.set(due_key(until, experiment_id, n))],
            condition=(RoundItem.state == str(RoundState.SEALED))
            | ((RoundItem.state == str(RoundState.AGGREGATING)) & (RoundItem.lease_expires < now))))
        return to_round(item) if ok else None

    def publish_round(self, experiment_id: str, n: int, owner: str, *, sha256: str, metrics: dict,
                      info: dict, seconds: float, now: float, next_round: RoundRecord | None) -> bool:
        """Round n PUBLISHED and round n+1 OPEN (or the experiment COMPLETED) in one transaction."""
        def build(t):
            t.update(RoundItem(exp_pk(experiment_id), round_sk(n)), actions=[
                RoundItem.state.set(str(RoundState.PUBLISHED)), RoundItem.published_at.set(now),
                RoundItem.model_sha256.set(sha256), RoundItem.metrics.set(metrics), RoundItem.info.set(info),
                RoundItem.aggregation_seconds.set(seconds), RoundItem.due_pk.remove(), RoundItem.due_sk.remove(),
                RoundItem.lease_owner.remove(), RoundItem.lease_expires.remove(),
            ], condition=(RoundItem.state == str(RoundState.AGGREGATING)) & (RoundItem.lease_owner == owner))
            actions = [ExperimentItem.model_version.set(n), ExperimentItem.model_sha256.set(sha256),
                       ExperimentItem.updated_at.set(iso(now))]
            condition = ExperimentItem.current_round == n
            if next_round is not None:
                actions.append(ExperimentItem.current_round.set(n + 1))
                t.save(round_item(next_round), condition=RoundItem.pk.does_not_exist())
            else:  # the last round: the experiment completes in the same transaction
                actions.append(ExperimentItem.status.set(str(ExperimentStatus.COMPLETED)))
                condition &= ExperimentItem.status.is_in(str(ExperimentStatus.RUNNING), str(ExperimentStatus.PAUSED))
            t.update(ExperimentItem(exp_pk(experiment_id), "META"), actions=actions, condition=condition)
        return not transact(build)

    def finish_experiment(self, experiment_id: str, status: ExperimentStatus) -> bool:
        item = ExperimentItem(exp_pk(experiment_id), "META")
        return _conditional(lambda: item.update(
            actions=[ExperimentItem.status.set(str(status)), ExperimentItem.updated_at.set(iso())],
            condition=ExperimentItem.status.is_in(str(ExperimentStatus.RUNNING), str(ExperimentStatus.PAUSED))))


class SweepRepository:
    def list_due(self, now: float, limit: int = 100) -> list[RoundRecord]:
        """Rounds whose deadline or lease has passed, oldest first, through the sparse GSI."""
        key = f"{now:017.3f}~"
        return [to_round(i) for i in RoundItem.due_index.query(DUE_PK, RoundItem.due_sk <= key, limit=limit)]

    def force_seal(self, experiment_id: str, n: int, now: float, lease_seconds: float) -> bool:
        """Seal at the deadline with whatever was accepted (the caller checked the minimum)."""
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        return _conditional(lambda: item.update(
            actions=[RoundItem.state.set(str(RoundState.SEALED)), RoundItem.sealed_at.set(now),
                     RoundItem.due_pk.set(DUE_PK),
                     RoundItem.due_sk.set(due_key(now + lease_seconds, experiment_id, n))],
            condition=RoundItem.state == str(RoundState.OPEN)))

    def extend_deadline(self, experiment_id: str, n: int, deadline: float) -> bool:
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        return _conditional(lambda: item.update(
            actions=[RoundItem.deadline.set(deadline), RoundItem.due_sk.set(due_key(deadline, experiment_id, n))],
            condition=RoundItem.state == str(RoundState.OPEN)))

    def push_due(self, experiment_id: str, n: int, when: float, state: RoundState) -> bool:
        """Move a sealed round's next check later (it was re-invoked)."""
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        return _conditional(lambda: item.update(
            actions=[RoundItem.due_sk.set(due_key(when, experiment_id, n))], condition=RoundItem.state == str(state)))

    def fail_round(self, experiment_id: str, n: int, reason: str) -> bool:
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        ok = _conditional(lambda: item.update(
            actions=[RoundItem.state.set(str(RoundState.FAILED)), RoundItem.reason.set(reason[:1000]),
                     RoundItem.due_pk.remove(), RoundItem.due_sk.remove()],
            condition=RoundItem.state.is_in(str(RoundState.OPEN), str(RoundState.SEALED),
                                            str(RoundState.AGGREGATING))))
        if ok:
            self.finish_experiment(experiment_id, ExperimentStatus.FAILED)
        return ok
