"""The usage counts of one round's aggregation, for its manifest's `cost` (domain/cost.py).

Measured where they happen (the engine counts ranged GETs and bytes, each fanout piece
records its reads and seconds in its partial object) and counted where they are fixed by the
protocol (the items a round reads and writes, the states a fanout execution visits).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fma.domain.cost import Usage

#: the memory the cost assumes where the runtime does not say (local mode): the aggregate default.
NOMINAL_MEMORY_MB = 3008
#: about the size of one UPDATE item (status, counts, metrics, sha256, version).
UPDATE_ITEM_BYTES = 600
#: items the publish transaction writes: round, next round, experiment, due marker.
PUBLISH_ITEMS = 4
#: states a fanout execution visits besides its Map items: Start, Started?, Where, Init, the
#: last Reduce, NeedsMap?, Done; and per pass Reduce, NeedsMap?, Map; per item its child run.
FIXED_TRANSITIONS, PER_PASS_TRANSITIONS, PER_ITEM_TRANSITIONS = 7, 3, 2


def memory_mb(deps: Any) -> int:
    return int(getattr(deps, "function_memory_mb", None) or NOMINAL_MEMORY_MB)


def aggregation_usage(usage: Usage, info: Mapping[str, Any], updates: int, global_bytes: int,
                      state_read: int | None, written: list[int]) -> Usage:
    """What the aggregating function itself did: the engine's reads, the global model and
    state, the objects it wrote, the items it read and wrote (lease, publish, APPLIED marks)."""
    usage.read(int(info.get("bytes_read") or 0), int(info.get("requests") or 0))
    usage.read(global_bytes)
    usage.read(0)  # the previous manifest (hash chain)
    if state_read is not None:
        usage.read(state_read)
    for size in written:
        usage.write(size)
    usage.items_read(3, 1024)  # experiment, round (twice: the lease, the state record)
    usage.items_read(updates, UPDATE_ITEM_BYTES)
    usage.items_written(1)  # the lease
    usage.items_written(PUBLISH_ITEMS, transactional=True)
    usage.items_written(updates)  # ACCEPTED -> APPLIED
    return usage


def fanout_usage(facts: Mapping[tuple[int, int], Mapping[str, Any]], updates: int,
                 spent: Mapping[str, Any], reduce_memory_mb: int) -> Usage:
    """The children (from their partial objects) and the earlier tasks of the execution
    (`spent`: the start's and the earlier reduces' seconds, carried by the state machine)."""
    usage = Usage()
    pieces = list(facts.values())
    memory = {int(f.get("memory_mb") or NOMINAL_MEMORY_MB) for f in pieces} or {NOMINAL_MEMORY_MB}
    usage.task("piece", max(memory), sum(float(f.get("seconds") or 0.0) for f in pieces), len(pieces))
    usage.task("start+reduce", reduce_memory_mb, float(spent.get("seconds") or 0.0), int(spent.get("tasks") or 0))
    for f in pieces:
        usage.read(int(f.get("bytes_read") or 0), int(f.get("requests") or 0))
        usage.read(0, 3)  # its plan, the global model, the state (bytes counted with the reads above)
        usage.write(int(f.get("value_bytes") or 0))
        usage.read(int(f.get("value_bytes") or 0))  # the reduce reads it back
    usage.items_read(2 * len(pieces), 1024)  # each child: the experiment and the round item
    usage.write(updates * UPDATE_ITEM_BYTES)  # the plan object
    passes = len({p for p, _ in facts})
    usage.state_transitions = FIXED_TRANSITIONS + PER_PASS_TRANSITIONS * passes + PER_ITEM_TRANSITIONS * len(pieces)
    return usage
