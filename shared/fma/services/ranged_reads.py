"""Stored objects as RangedObjects: one version pinned, read in bounded ranges.

Ingest validates updates and initial models through these; anything else that reads big
objects (aggregation, exports) can open them the same way.
"""

from __future__ import annotations

from fma.domain.ranged import MAX_RANGE_BYTES, RangedObject
from fma.services.ports import ModelStore


def open_ranged(store: ModelStore, key: str, chunk_bytes: int = MAX_RANGE_BYTES,
                version_id: str | None = None) -> tuple[RangedObject, str | None] | None:
    """The newest version of `key` (or exactly `version_id`) and its id, None if there is none.

    Every read of the returned object is of that version (when the store versions objects),
    so a client re-uploading to the key mid-check cannot mix two objects' bytes."""
    head = store.head(key, version_id)
    if head is None:
        return None
    size, version_id = head

    def read(start: int, end: int) -> bytes:
        return store.get_range(key, start, end, version_id)

    return RangedObject(size, read, chunk_bytes), version_id
