"""Round lifecycle writes: seal (one winner), lease (reclaimable), publish (one transaction)."""

from __future__ import annotations

import random
import time

from pynamodb.exceptions import DoesNotExist, UpdateError

from fma.adapters import dynamo_shards as shards
from fma.adapters.dynamo_common import state_in, transact
from fma.adapters.dynamo_models import DUE_PK, ExperimentItem, RoundItem, exp_pk, round_sk
from fma.adapters.dynamo_retry import retry_contended
from fma.adapters.repo_rounds import due_key, round_item, to_round
from fma.domain.clock import iso
from fma.domain.errors import Conflict
from fma.domain.records import RoundRecord
from fma.domain.states import ExperimentStatus, RoundState, allowed, finishing


def _round_or_none(experiment_id: str, n: int) -> RoundItem | None:
    try:
        return RoundItem.get(exp_pk(experiment_id), round_sk(n), consistent_read=True)
    except DoesNotExist:
        return None


def _stop_items(t, experiment_id: str, allowed_from: set[ExperimentStatus], reason: str, n: int,
                rnd: RoundItem | None) -> None:
    t.update(ExperimentItem(exp_pk(experiment_id), "META"),
             actions=[ExperimentItem.status.set(str(ExperimentStatus.STOPPED)), ExperimentItem.updated_at.set(iso())],
             condition=ExperimentItem.status.is_in(*[str(s) for s in allowed_from])
             & (ExperimentItem.current_round == n))
    if rnd is not None and rnd.state in allowed("stop_experiment.round"):  # a finished round stays as it is
        t.update(RoundItem(exp_pk(experiment_id), round_sk(n)), actions=[
            RoundItem.state.set(str(RoundState.FAILED)), RoundItem.reason.set(reason[:1000]),
            RoundItem.due_pk.remove(), RoundItem.due_sk.remove(),
        ], condition=RoundItem.state == rnd.state)


def _seal(experiment_id: str, n: int, now: float, lease_seconds: float, write: str, sealed_by: str) -> bool:
    """Close every counter shard (nothing counts after this), then write their sum on the ROUND
    item as the final count with OPEN -> SEALED (`write`: seal_round or force_seal): racing
    sealers close the same shards, read the same sum, and one of them wins the conditional write."""
    shards.close_counters(experiment_id, n)
    total = shards.count_accepted(experiment_id, n)
    item = RoundItem(exp_pk(experiment_id), round_sk(n))
    return _conditional(lambda: item.update(
        actions=[RoundItem.state.set(str(RoundState.SEALED)), RoundItem.sealed_at.set(now),
                 RoundItem.sealed_by.set(sealed_by), RoundItem.accepted.set(total), RoundItem.final.set(True),
                 RoundItem.due_pk.set(DUE_PK), RoundItem.due_sk.set(due_key(now + lease_seconds, experiment_id, n))],
        condition=state_in(RoundItem.state, write)))


def _conditional(fn) -> bool:
    try:
        retry_contended(fn)  # an item in another transaction: retried (dynamo_retry)
        return True
    except UpdateError as exc:
        if exc.cause_response_code == "ConditionalCheckFailedException":
            return False
        raise


class LifecycleRepository:
    def seal_round(self, experiment_id: str, n: int, quota: int, now: float, lease_seconds: float) -> bool:
        """OPEN -> SEALED when the counter shards sum to at least `quota`; exactly one caller wins."""
        rnd = _round_or_none(experiment_id, n)
        if rnd is None or rnd.state not in allowed("seal_round") or shards.count_accepted(experiment_id, n) < quota:
            return False
        return _seal(experiment_id, n, now, lease_seconds, "seal_round", "quota")

    def acquire_lease(self, experiment_id: str, n: int, owner: str, now: float,
                      lease_seconds: float) -> RoundRecord | None:
        """SEALED (or AGGREGATING with an expired lease) -> AGGREGATING held by `owner`."""
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        until = now + lease_seconds
        ok = _conditional(lambda: item.update(
            actions=[RoundItem.state.set(str(RoundState.AGGREGATING)), RoundItem.lease_owner.set(owner),
                     RoundItem.lease_expires.set(until), RoundItem.attempts.add(1),
                     RoundItem.aggregation_started_at.set(now),
                     RoundItem.due_pk.set(DUE_PK), RoundItem.due_sk.set(due_key(until, experiment_id, n))],
            # from the table's states, but a held (unexpired) lease is never taken over
            condition=state_in(RoundItem.state, "acquire_lease")
            & (RoundItem.lease_expires.does_not_exist() | (RoundItem.lease_expires < now))))
        return to_round(item) if ok else None

    def publish_round(self, experiment_id: str, n: int, owner: str, *, sha256: str, metrics: dict,
                      info: dict, seconds: float, now: float, next_round: RoundRecord | None) -> bool:
        """Round n PUBLISHED and round n+1 OPEN (or the experiment COMPLETED) in one transaction.

        The experiment must still be RUNNING or PAUSED with round n current: a stop that took
        effect first (and failed round n) makes this publish fail, so nothing is published and
        no round opens after STOPPED.
        """
        def build(t):
            t.update(RoundItem(exp_pk(experiment_id), round_sk(n)), actions=[
                RoundItem.state.set(str(RoundState.PUBLISHED)), RoundItem.published_at.set(now),
                RoundItem.model_sha256.set(sha256), RoundItem.metrics.set(metrics), RoundItem.info.set(info),
                RoundItem.aggregation_seconds.set(seconds), RoundItem.due_pk.remove(), RoundItem.due_sk.remove(),
                RoundItem.lease_owner.remove(), RoundItem.lease_expires.remove(),
            ], condition=state_in(RoundItem.state, "publish_round") & (RoundItem.lease_owner == owner))
            actions = [ExperimentItem.model_version.set(n), ExperimentItem.model_sha256.set(sha256),
                       ExperimentItem.updated_at.set(iso(now))]
            condition = ((ExperimentItem.current_round == n)
                         & state_in(ExperimentItem.status, "publish_round.experiment"))
            if next_round is not None:
                actions.append(ExperimentItem.current_round.set(n + 1))
                t.save(round_item(next_round), condition=RoundItem.pk.does_not_exist())
            else:  # the last round: the experiment completes in the same transaction
                actions.append(ExperimentItem.status.set(str(ExperimentStatus.COMPLETED)))
            t.update(ExperimentItem(exp_pk(experiment_id), "META"), actions=actions, condition=condition)
        return not transact(build)

    def stop_experiment(self, experiment_id: str, allowed_from: set[ExperimentStatus], reason: str,
                        attempts: int = 25) -> bool:
        """STOPPED, and the round that is current when the stop takes effect FAILED, in one
        transaction conditioned on that round still being current: a publish that wins the race
        moves `current_round` and makes this attempt fail, so the next one fails the round the
        publish opened. False when the experiment is not in `allowed_from` (any more)."""
        for attempt in range(attempts):
            try:
                exp = ExperimentItem.get(exp_pk(experiment_id), "META", consistent_read=True)
            except DoesNotExist:
                return False
            if exp.status not in {str(s) for s in allowed_from}:
                return False
            n = int(exp.current_round or 0)
            rnd = _round_or_none(experiment_id, n) if n else None
            if not transact(lambda t, n=n, rnd=rnd: _stop_items(t, experiment_id, allowed_from, reason, n, rnd)):
                if rnd is not None and rnd.state in allowed("accept_update.round"):
                    shards.close_counters(experiment_id, n)  # a late accept now hears "closed"
                return True
            time.sleep(random.uniform(0, 0.002 * 2 ** min(attempt, 6)))
        raise Conflict("the experiment changed during every attempt to stop it; retry", code="STOP_CONFLICT")

    def finish_experiment(self, experiment_id: str, status: ExperimentStatus) -> bool:
        item = ExperimentItem(exp_pk(experiment_id), "META")
        return _conditional(lambda: item.update(
            actions=[ExperimentItem.status.set(str(status)), ExperimentItem.updated_at.set(iso())],
            condition=state_in(ExperimentItem.status, finishing(status))))


class SweepRepository:
    def list_due(self, now: float, limit: int = 100) -> list[RoundRecord]:
        """Rounds whose deadline or lease has passed, oldest first, through the sparse GSI."""
        key = f"{now:017.3f}~"
        return [to_round(i) for i in RoundItem.due_index.query(DUE_PK, RoundItem.due_sk <= key, limit=limit)]

    def force_seal(self, experiment_id: str, n: int, now: float, lease_seconds: float) -> bool:
        """Seal at the deadline with whatever was accepted (the caller checked the minimum)."""
        rnd = _round_or_none(experiment_id, n)
        return (rnd is not None and rnd.state in allowed("force_seal")
                and _seal(experiment_id, n, now, lease_seconds, "force_seal", "deadline"))

    def extend_deadline(self, experiment_id: str, n: int, deadline: float) -> bool:
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        return _conditional(lambda: item.update(
            actions=[RoundItem.deadline.set(deadline), RoundItem.due_sk.set(due_key(deadline, experiment_id, n))],
            condition=state_in(RoundItem.state, "extend_deadline")))

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
            condition=state_in(RoundItem.state, "fail_round")))
        if ok:
            shards.close_counters(experiment_id, n)
            self.finish_experiment(experiment_id, ExperimentStatus.FAILED)
        return ok
