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

from fma.adapters.dynamo_models import DUE_UPLOAD_PK, CounterShardItem, ExperimentItem, exp_pk, round_sk
from fma.domain.sharding import UPLOAD_DUE_SHARDS, shard_of

#: experiment id -> its shard count (immutable once created, so a process may keep it).
_SHARDS: dict[str, int] = {}


def shards_of(experiment_id: str) -> int:
    """The experiment's shard count; 1 for an experiment that does not exist (nothing to spread)."""
    if experiment_id in _SHARDS:
        return _SHARDS[experiment_id]
    try:
        item = ExperimentItem.get(exp_pk(experiment_id), "META", consistent_read=True)
    except DoesNotExist:
        return 1  # not kept: an experiment created later under this id has its own count
    if len(_SHARDS) > 100_000:
        _SHARDS.clear()
    _SHARDS[experiment_id] = int(item.shards or 1)
    return _SHARDS[experiment_id]


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


def close_counters(experiment_id: str, n: int) -> None:
    """Close every shard of round n: an accept after this is refused ("closed"), so a sum read
    afterwards is final. Idempotent (sealers racing each other close the same shards)."""
    for item in counters(experiment_id, n):
        item.update(actions=[CounterShardItem.closed.set(True)])


def upload_due_pk(client_id: str) -> str:
    return f"{DUE_UPLOAD_PK}#{shard_of(client_id, UPLOAD_DUE_SHARDS):02d}"


UPLOAD_DUE_PARTITIONS = [f"{DUE_UPLOAD_PK}#{j:02d}" for j in range(UPLOAD_DUE_SHARDS)]
