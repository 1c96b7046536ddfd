"""Unexpected failures of ingest and the sweeper: counted per item, bounded, then FAILED.

A client-caused problem is a REJECTED update (the ingest service decides that); what lands here
is everything else (a fault, a bug), counted on the item itself so that the bound holds across
SQS redeliveries, sweeps and local mode alike.
"""

from __future__ import annotations

from fma.adapters.dynamo_common import state_in
from fma.adapters.dynamo_models import RoundItem, UpdateItem, exp_pk, round_sk, update_sk
from fma.adapters.dynamo_shards import update_pk
from fma.adapters.repo_lifecycle import _conditional
from fma.domain.states import UpdateStatus

REASON_LIMIT = 1000


class FailureRepository:
    def note_update_failure(self, experiment_id: str, n: int, client_id: str, reason: str, now: float) -> int:
        """Count one failed attempt at an update that is still UPLOADING; the attempts so far
        (0 when there is no such UPLOADING update: nothing to count or fail)."""
        item = UpdateItem(update_pk(experiment_id, client_id), update_sk(n, client_id))
        ok = _conditional(lambda: item.update(
            actions=[UpdateItem.attempts.add(1), UpdateItem.reason.set(f"RETRYING: {reason}"[:REASON_LIMIT]),
                     UpdateItem.updated_at.set(now)],
            condition=state_in(UpdateItem.status, "note_update_failure")))
        return int(item.attempts or 0) if ok else 0

    def fail_update(self, experiment_id: str, n: int, client_id: str, reason: str, now: float) -> bool:
        """UPLOADING -> FAILED with its reason, out of the sweeper's due index; never overrides
        an acceptance or a rejection."""
        item = UpdateItem(update_pk(experiment_id, client_id), update_sk(n, client_id))
        return _conditional(lambda: item.update(
            actions=[UpdateItem.status.set(str(UpdateStatus.FAILED)), UpdateItem.reason.set(reason[:REASON_LIMIT]),
                     UpdateItem.updated_at.set(now), UpdateItem.due_pk.remove(), UpdateItem.due_sk.remove()],
            condition=state_in(UpdateItem.status, "fail_update")))

    def note_round_sweep_failure(self, experiment_id: str, n: int, reason: str) -> int:
        """Count one sweep of this round that raised; the count so far (0: no such round)."""
        item = RoundItem(exp_pk(experiment_id), round_sk(n))
        ok = _conditional(lambda: item.update(
            actions=[RoundItem.sweep_errors.add(1), RoundItem.last_sweep_error.set(reason[:REASON_LIMIT])],
            condition=state_in(RoundItem.state, "note_round_sweep_failure")))
        return int(item.sweep_errors or 0) if ok else 0
