"""How an experiment spreads its writes over partition keys (DESIGN section 4: no hot key).

A connector with partitions (aws) keeps an experiment's per-client items (updates) and its
round counters under `shards` partition keys instead of one, so that no key takes more than
about 1/S of a round's writes. S is derived from the clients the experiment expects: settable at
creation (`expected_clients`), defaulting to the deployment's setting, and fixed for the
experiment's life (every key a connector derives from it must stay where it was written).
"""

from __future__ import annotations

import hashlib
import math

#: expected clients per shard: ~8 keeps each key's share of a round near 1/8 of a client's writes.
CLIENTS_PER_SHARD = 8
MAX_SHARDS = 128
MAX_EXPECTED_CLIENTS = 10_000_000
#: the sweeper's index of in-flight uploads is spread over this many keys for the whole service.
UPLOAD_DUE_SHARDS = 32


def shard_count(expected_clients: int) -> int:
    """S for an experiment expecting `expected_clients`: ceil(N / 8), at least 1, at most 128."""
    return max(1, min(MAX_SHARDS, math.ceil(expected_clients / CLIENTS_PER_SHARD)))


def shard_of(name: str, shards: int) -> int:
    """A stable shard for `name` (a client id): the same on every process and every run."""
    if shards <= 1:
        return 0
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big") % shards
#: experiment-level tallies (enrolled clients, enrollment-token uses) use all S shards: they are
#: summed only where the count is read (quota "all", the experiment's detail; domain.counted),
#: never on a client's poll, download or an ingest of a fixed quota.
MAX_TALLY_SHARDS = MAX_SHARDS


def tally_shards(shards: int) -> int:
    return max(1, min(shards, MAX_TALLY_SHARDS))


def use_budget(max_uses: int | None, shards: int, j: int) -> int | None:
    """Shard j's part of an enrollment token's `max_uses` (the parts sum to it exactly); None:
    unlimited."""
    if max_uses is None:
        return None
    return max_uses // shards + (1 if j < max_uses % shards else 0)
