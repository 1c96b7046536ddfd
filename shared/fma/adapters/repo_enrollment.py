"""Registration without a hot key (issue 18): clients, their count and enrollment-token uses,
spread over shards.

Registering N clients used to write the enrollment token's one item (`uses += 1`) and the
experiment's META item (`clients += 1`) every time. Now a registration is one transaction over:
- one use shard of the token, `TOKEN#{hash}#U{j}` / `USES`, whose condition keeps its uses
  within its budget: the budgets are `max_uses` split over T shards (`use_budget`, summing to
  `max_uses` exactly), so all shards together can never admit one registration more;
- the client item, under its partition `EXP#{id}#P{k}`; the client's token item;
- one enrolled-clients shard, `EXP#{id}#N{k}` / `CLIENTS`.
The token's own item and META are only read. When the chosen use shard is spent, one batch read
of all T shards finds those with budget left and the registration moves to one of them (the
bounded rebalancing step); it is refused as exhausted only when that read shows every shard
spent, and uses never decrease, so no registration is refused while a use remains.
T = S (`tally_shards`): a count is one batch read, made only where the count is read
(fma.domain.counted), never on a registration that finds its shard's budget left.
"""

from __future__ import annotations

import random

from pynamodb.exceptions import DoesNotExist

from fma.adapters import dynamo_shards as shards
from fma.adapters.dynamo_common import transact
from fma.adapters.dynamo_models import ClientItem, ExperimentItem, TallyShardItem, TokenItem, exp_pk
from fma.adapters.repo_tokens import token_item, token_pk
from fma.domain.clock import iso
from fma.domain.enrollment import check_enrollment, exhausted
from fma.domain.errors import Conflict
from fma.domain.records import TokenRecord
from fma.domain.sharding import shard_of, use_budget
from fma.domain.states import allowed

#: transactions one registration may try (each after a fresh read of the use shards).
MAX_REGISTRATION_ATTEMPTS = 8


def client_key(experiment_id: str, client_id: str) -> tuple[str, str]:
    return shards.update_pk(experiment_id, client_id), f"CLIENT#{client_id}"


_enrolled, _uses, _tally = shards.enrolled_item, shards.uses_item, shards.tally


class EnrollmentRepository:
    def register_client(self, experiment_id: str, client_id: str, name: str | None,
                        enrollment_hash: str, client_token: TokenRecord, now: float) -> None:
        """Consume one use of the enrollment token (on one of its use shards), add the client and
        its token, count it (on one enrolled shard): all or nothing."""
        token = self.get_token(enrollment_hash)
        check_enrollment(token, now, count_uses=False)  # a spent shard set refuses below
        _check_registering(experiment_id)
        t = shards.tallies_of(experiment_id)
        spendable = [j for j in range(t) if use_budget(token.max_uses, t, j) != 0]
        j = spendable[shard_of(client_id, len(spendable))] if spendable else 0
        for _attempt in range(MAX_REGISTRATION_ATTEMPTS):
            if not spendable:
                break
            if not transact(lambda t_, j=j: self._register(t_, experiment_id, client_id, name, enrollment_hash,
                                                           client_token, now, _budget(token, t, j), j)):
                return
            self._explain_refused_registration(experiment_id, enrollment_hash, client_id, client_token, now)
            used = _tally([_uses(enrollment_hash, i) for i in range(t)])
            spendable = [i for i in range(t) if token.max_uses is None or used[i] < use_budget(token.max_uses, t, i)]
            j = random.choice(spendable) if spendable else 0
        if not spendable:
            raise exhausted(token.max_uses)
        raise Conflict("registration conflicted with others; retry", code="REGISTRATION_CONFLICT")

    @staticmethod
    def _register(t, experiment_id: str, client_id: str, name: str | None, enrollment_hash: str,
                  client_token: TokenRecord, now: float, budget: int | None, j: int) -> None:
        use = _uses(enrollment_hash, j)
        t.update(use, actions=[TallyShardItem.count.add(1)],
                 condition=None if budget is None else (TallyShardItem.count.does_not_exist()
                                                        | (TallyShardItem.count < budget)))
        pk, sk = client_key(experiment_id, client_id)
        t.save(ClientItem(pk, sk, client_id=client_id, name=name, created_at=iso(now),
                          token_hash=client_token.token_hash), condition=ClientItem.pk.does_not_exist())
        t.save(token_item(client_token), condition=TokenItem.pk.does_not_exist())
        k = shard_of(client_id, shards.tallies_of(experiment_id))
        t.update(_enrolled(experiment_id, k), actions=[TallyShardItem.count.add(1)])

    def _explain_refused_registration(self, experiment_id: str, enrollment_hash: str, client_id: str,
                                      client_token: TokenRecord, now: float) -> None:
        """Raise the reason a registration was refused; return if a use shard was spent or the
        write only conflicted (the caller reads the shards again)."""
        check_enrollment(self.get_token(enrollment_hash), now)
        _check_registering(experiment_id)
        if self.get_client_token_hash(experiment_id, client_id) is not None or self.get_token(
                client_token.token_hash) is not None:
            raise Conflict("registration conflicted, retry", code="REGISTRATION_CONFLICT")

    def get_client_token_hash(self, experiment_id: str, client_id: str) -> tuple[str | None, bool] | None:
        """(token hash, revoked) of an enrolled client; None if there is no such client."""
        try:
            item = ClientItem.get(*client_key(experiment_id, client_id), consistent_read=True)
        except DoesNotExist:
            return None
        return item.token_hash, bool(item.revoked)

    def revoke_client(self, experiment_id: str, client_id: str, token_hash: str | None) -> bool:
        """Mark the client revoked, revoke its token and stop counting it toward `"all"`, in one
        transaction; False if it was already revoked (nothing changes twice)."""
        def build(t):
            t.update(ClientItem(*client_key(experiment_id, client_id)), actions=[ClientItem.revoked.set(True)],
                     condition=ClientItem.pk.exists() & ClientItem.revoked.does_not_exist())
            if token_hash:
                t.update(TokenItem(token_pk(token_hash), "TOKEN"), actions=[TokenItem.revoked.set(True)],
                         condition=TokenItem.pk.exists())
            k = shard_of(client_id, shards.tallies_of(experiment_id))
            t.update(_enrolled(experiment_id, k), actions=[TallyShardItem.count.add(-1)])
        return not transact(build)


def _budget(token: TokenRecord, t: int, j: int) -> int | None:
    return use_budget(token.max_uses, t, j)


def _check_registering(experiment_id: str) -> None:
    try:
        status = ExperimentItem.get(exp_pk(experiment_id), "META", consistent_read=True).status
    except DoesNotExist:
        status = None
    if status not in allowed("register_client.experiment"):
        raise Conflict("experiment no longer accepts clients", code="EXPERIMENT_CLOSED")
