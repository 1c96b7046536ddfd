"""Sharded keys and counters of the aws connector (DESIGN section 4: no hot key).

An experiment with S shards (fma.domain.sharding) keeps:
- its update items under `EXP#{id}#P{k}` (k = the client's shard), not under `EXP#{id}`;
- each round's accepted count in S counter items `EXP#{id}#N{k}` / `ROUND#{n:08d}`: an accept
  is one transaction over the update item and one counter shard, never the ROUND or META item;
- in-flight uploads in the sweeper's index under `DUE_UPLOAD#{j}` (j of 32, by client).
The round's count while OPEN is the sum of its shards; sealing closes every shard (so nothing
counts after it) and writes that sum on the ROUND item as the final count.
"""

from __future__ import annotations

from pynamodb.exceptions import DoesNotExist

from fma.adapters.dynamo_models import (
    DUE_UPLOAD_PK,
    CounterShardItem,
    ExperimentItem,
    TallyShardItem,
    exp_pk,
    round_sk,
)
from fma.domain.sharding import UPLOAD_DUE_SHARDS, shard_of, tally_shards

#: experiment id -> (its shard count, its tally shard count): immutable once created, so a
#: process may keep them.
_SHARDS: dict[str, tuple[int, int]] = {}
#: tallies of experiments created before they were spread over all S shards used min(S, 32)
LEGACY_MAX_TALLY_SHARDS = 32


def _layout(experiment_id: str) -> tuple[int, int]:
    if experiment_id in _SHARDS:
        return _SHARDS[experiment_id]
    try:
        item = ExperimentItem.get(exp_pk(experiment_id), "META", consistent_read=True)
    except DoesNotExist:
        return 1, 1  # not kept: an experiment created later under this id has its own layout
    if len(_SHARDS) > 100_000:
        _SHARDS.clear()
    s = int(item.shards or 1)
    t = int(item.tally_shards) if item.tally_shards is not None else min(s, LEGACY_MAX_TALLY_SHARDS)
    _SHARDS[experiment_id] = (s, tally_shards(t))
    return _SHARDS[experiment_id]


def shards_of(experiment_id: str) -> int:
    """The experiment's shard count; 1 for an experiment that does not exist (nothing to spread)."""
    return _layout(experiment_id)[0]


def tallies_of(experiment_id: str) -> int:
    """T, the shards of its enrolled-clients and token-use tallies: S (legacy: min(S, 32)). Fixed
    per experiment, since use budgets are split over T and shards already spent keep their counts."""
    return _layout(experiment_id)[1]


def update_pk(experiment_id: str, client_id: str) -> str:
    return f"EXP#{experiment_id}#P{shard_of(client_id, shards_of(experiment_id)):03d}"


def update_partitions(experiment_id: str) -> list[str]:
    return [f"EXP#{experiment_id}#P{k:03d}" for k in range(shards_of(experiment_id))]


def experiment_of(pk: str) -> str:
    """`EXP#{id}` or `EXP#{id}#P007` -> id."""
    return pk.removeprefix("EXP#").split("#", 1)[0]


def counter(experiment_id: str, n: int, client_id: str) -> CounterShardItem:
    k = shard_of(client_id, shards_of(experiment_id))
    return CounterShardItem(f"EXP#{experiment_id}#N{k:03d}", round_sk(n))


def counters(experiment_id: str, n: int) -> list[CounterShardItem]:
    return [CounterShardItem(f"EXP#{experiment_id}#N{k:03d}", round_sk(n)) for k in range(shards_of(experiment_id))]


def count_accepted(experiment_id: str, n: int) -> int:
    """The sum of the round's counter shards (consistent reads, 100 keys per request)."""
    keys = [(c.pk, c.sk) for c in counters(experiment_id, n)]
    return sum(int(item.accepted or 0) for item in CounterShardItem.batch_get(keys, consistent_read=True))


def accepting_partitions(experiment_id: str, n: int) -> list[str]:
    """The update partitions holding an accepted update of round n: those whose counter shard
    counted one (an accept writes the update and its shard in one transaction)."""
    keys = [(c.pk, c.sk) for c in counters(experiment_id, n)]
    counted = {item.pk for item in CounterShardItem.batch_get(keys, consistent_read=True) if int(item.accepted or 0)}
    return [f"EXP#{experiment_id}#P{k:03d}" for k in range(shards_of(experiment_id))
            if f"EXP#{experiment_id}#N{k:03d}" in counted]


def close_counters(experiment_id: str, n: int) -> None:
    """Close every shard of round n: an accept after this is refused ("closed"), so a sum read
    afterwards is final. Idempotent (sealers racing each other close the same shards)."""
    for item in counters(experiment_id, n):
        item.update(actions=[CounterShardItem.closed.set(True)])


def upload_due_pk(client_id: str) -> str:
    return f"{DUE_UPLOAD_PK}#{shard_of(client_id, UPLOAD_DUE_SHARDS):02d}"


UPLOAD_DUE_PARTITIONS = [f"{DUE_UPLOAD_PK}#{j:02d}" for j in range(UPLOAD_DUE_SHARDS)]


def enrolled_item(experiment_id: str, k: int) -> TallyShardItem:
    return TallyShardItem(f"EXP#{experiment_id}#N{k:03d}", "CLIENTS")


def uses_item(token_hash: str, j: int) -> TallyShardItem:
    return TallyShardItem(f"TOKEN#{token_hash}#U{j:03d}", "USES")


def tally(items: list[TallyShardItem]) -> list[int]:
    """Each shard's count, in the order given (consistent batch reads; absent shards are 0)."""
    found = {(i.pk, i.sk): int(i.count or 0)
             for i in TallyShardItem.batch_get([(i.pk, i.sk) for i in items], consistent_read=True)}
    return [found.get((i.pk, i.sk), 0) for i in items]


def count_clients(experiment_id: str) -> int:
    """Enrolled (not revoked) clients: the sum of the experiment's CLIENTS shards."""
    t = tallies_of(experiment_id)
    return sum(tally([enrolled_item(experiment_id, k) for k in range(t)]))


def count_uses(token_hash: str, experiment_id: str | None) -> int:
    """An enrollment token's uses: the sum of its USES shards."""
    t = tallies_of(experiment_id) if experiment_id else 1
    return sum(tally([uses_item(token_hash, j) for j in range(t)]))
