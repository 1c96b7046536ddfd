"""What the dashboard needs to show trouble: uploads the API refused during a pause, and the
error of the latest aggregation attempt. Neither takes part in counting or sealing."""

from __future__ import annotations

from pynamodb.exceptions import UpdateError

from fma.adapters.dynamo_common import state_in
from fma.adapters.dynamo_models import RefusalItem, RoundItem, exp_pk, round_sk
from fma.domain.records import RefusalRecord

MAX_ERROR_CHARS = 1000


def refusal_sk(n: int, client_id: str) -> str:
    return f"REFUSED#{n:08d}#{client_id}"


class TroubleRepository:
    def record_refusal(self, experiment_id: str, n: int, client_id: str, code: str, reason: str,
                       now: float) -> None:
        """Count one refused upload of `client_id` in round n (one item per client and round)."""
        item = RefusalItem(exp_pk(experiment_id), refusal_sk(n, client_id))
        item.update(actions=[
            RefusalItem.round.set(n), RefusalItem.client_id.set(client_id), RefusalItem.code.set(code),
            RefusalItem.reason.set(reason[:MAX_ERROR_CHARS]), RefusalItem.count.add(1),
            RefusalItem.first_at.set(RefusalItem.first_at | now), RefusalItem.last_at.set(now),
        ])

    def list_refusals(self, experiment_id: str, n: int) -> list[RefusalRecord]:
        """The refusals of round n in client-id order."""
        return [RefusalRecord(int(i.round), i.client_id, i.code, i.reason, int(i.count or 0), float(i.first_at),
                              float(i.last_at))
                for i in RefusalItem.query(exp_pk(experiment_id), RefusalItem.sk.startswith(f"REFUSED#{n:08d}#"),
                                           consistent_read=True)]

    def record_aggregation_error(self, experiment_id: str, n: int, error: str, owner: str | None = None) -> bool:
        """Keep `error` as the round's last error while it is SEALED or AGGREGATING (held by
        `owner` when given: a runner that lost its lease does not overwrite its successor's)."""
        condition = state_in(RoundItem.state, "record_aggregation_error")
        if owner is not None:
            condition &= RoundItem.lease_owner == owner
        try:
            RoundItem(exp_pk(experiment_id), round_sk(n)).update(
                actions=[RoundItem.last_error.set(error[:MAX_ERROR_CHARS])], condition=condition)
            return True
        except UpdateError as exc:
            if exc.cause_response_code == "ConditionalCheckFailedException":
                return False
            raise
