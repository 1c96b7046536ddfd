"""Give moto's DynamoDB the per-request atomicity that DynamoDB guarantees.

moto applies a TransactWriteItems or a conditional UpdateItem without any lock, so two threads
(local mode's gateway and workers, or a racing test) can both pass the same condition. Real
DynamoDB serializes them; FMA's exactly-once design relies on that. This wraps each moto
DynamoDB backend operation in one process-wide lock: an emulator fix, not an FMA behaviour.
"""

from __future__ import annotations

import functools
import threading

_LOCK = threading.RLock()
_OPERATIONS = ("put_item", "update_item", "delete_item", "transact_write_items", "get_item", "query",
               "transact_get_items", "batch_write_item")


def make_moto_dynamodb_atomic() -> None:
    from moto.dynamodb.models import DynamoDBBackend

    for name in _OPERATIONS:
        original = getattr(DynamoDBBackend, name, None)
        if original is None or getattr(original, "_fma_atomic", False):
            continue

        @functools.wraps(original)
        def locked(self, *args, __original=original, **kwargs):
            with _LOCK:
                return __original(self, *args, **kwargs)

        locked._fma_atomic = True  # type: ignore[attr-defined]
        setattr(DynamoDBBackend, name, locked)
