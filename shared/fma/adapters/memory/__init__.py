"""The `memory` connector: the metadata and model-data ports in dictionaries, for fast unit
tests of the services (same semantics as aws and sqlite_fs: tests/contract/ proves it)."""

from __future__ import annotations

from fma.adapters.memory.kv import MemoryRowStore, RowStore
from fma.adapters.memory.objects import MemoryEvents, MemoryModelStore, ObjectNotFound
from fma.adapters.memory.records import ExperimentRecords, TokenRecords
from fma.adapters.memory.records_buffers import BufferRecords
from fma.adapters.memory.records_failures import FailureRecords
from fma.adapters.memory.records_idempotency import IdempotencyRecords
from fma.adapters.memory.records_registry import LineageRecords, RegistryRecords
from fma.adapters.memory.records_rounds import LifecycleRecords, RoundRecords
from fma.adapters.memory.records_trouble import TroubleRecords

__all__ = ["MemoryEvents", "MemoryModelStore", "MemoryRepository", "ObjectNotFound", "RecordRepository",
           "memory_connector"]


class RecordRepository(TokenRecords, ExperimentRecords, RoundRecords, LifecycleRecords, FailureRecords,
                       TroubleRecords, IdempotencyRecords, BufferRecords, RegistryRecords, LineageRecords):
    """Every metadata port over one transactional row store (dictionaries or SQLite)."""

    def __init__(self, rows: RowStore):
        self.rows = rows


class MemoryRepository(RecordRepository):
    def __init__(self) -> None:
        super().__init__(MemoryRowStore())


def memory_connector() -> tuple[MemoryRepository, MemoryModelStore, MemoryEvents]:
    events = MemoryEvents()
    return MemoryRepository(), MemoryModelStore(events), events
