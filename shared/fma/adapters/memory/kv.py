"""The transactional row store under the embedded connectors.

`RecordRepository` (the metadata semantics) runs every conditional write as one `write()`
transaction: it reads, checks its conditions, then writes; the store makes that atomic
(a lock and a staging area here, `BEGIN IMMEDIATE` in sqlite_fs). Rows cross the boundary as
JSON, so nothing a caller holds aliases what is stored.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from fma.adapters.memory.rows import DUE_TABLES, TABLES, Key, Row, key_of


class Tx(Protocol):
    def get(self, table: str, key: Key) -> Row | None: ...

    def put(self, table: str, row: Row) -> None: ...

    def scan(self, table: str, prefix: Key, after: Key | None = None, limit: int | None = None,
             descending: bool = False) -> list[Row]:
        """Rows whose key starts with `prefix`, in key order (or reversed), strictly after `after`
        in that order."""

    def due(self, table: str, until: str, limit: int) -> list[Row]:
        """Rows whose `due` is set and sorts at or before `until`, earliest first."""

    def listed(self, owner: str | None, before: str | None, limit: int, archived: bool = False) -> list[Row]:
        """Experiments (of `owner`, if given; archived or not) by `list_key` descending, strictly
        before `before`."""


class RowStore(Protocol):
    def write(self) -> AbstractContextManager[Tx]:
        """An exclusive transaction: committed when the block ends, rolled back if it raises."""

    def read(self) -> AbstractContextManager[Tx]:
        """A consistent snapshot for reads."""

    def get_one(self, table: str, key: Key) -> Row | None:
        """One row by its key: a single read is its own snapshot, so it needs no transaction
        (the request path's reads of a token, an experiment, a round)."""


class _MemoryTx:
    def __init__(self, tables: dict[str, dict[Key, str]]):
        self.tables = tables
        self.staged: dict[tuple[str, Key], str] = {}

    def get(self, table: str, key: Key) -> Row | None:
        raw = self.staged.get((table, key)) or self.tables[table].get(key)
        return json.loads(raw) if raw else None

    def put(self, table: str, row: Row) -> None:
        self.staged[(table, key_of(table, row))] = json.dumps(row)

    def _rows(self, table: str) -> list[Row]:
        merged = dict(self.tables[table])
        merged.update({k: v for (t, k), v in self.staged.items() if t == table})
        return [json.loads(merged[k]) for k in sorted(merged)]

    def scan(self, table: str, prefix: Key, after: Key | None = None, limit: int | None = None,
             descending: bool = False) -> list[Row]:
        rows = [r for r in self._rows(table) if key_of(table, r)[:len(prefix)] == prefix
                and (after is None or (key_of(table, r) < after if descending else key_of(table, r) > after))]
        if descending:
            rows.reverse()
        return rows[:limit] if limit is not None else rows

    def due(self, table: str, until: str, limit: int) -> list[Row]:
        assert table in DUE_TABLES
        rows = [r for r in self._rows(table) if r.get("due") is not None and r["due"] <= until]
        return sorted(rows, key=lambda r: r["due"])[:limit]

    def listed(self, owner: str | None, before: str | None, limit: int, archived: bool = False) -> list[Row]:
        rows = [r for r in self._rows("experiments") if (owner is None or r["owner"] == owner)
                and bool(r.get("archived")) == archived and (before is None or r["list_key"] < before)]
        return sorted(rows, key=lambda r: r["list_key"], reverse=True)[:limit]

    def commit(self) -> None:
        for (table, key), raw in self.staged.items():
            self.tables[table][key] = raw


class MemoryRowStore:
    """Dictionaries under one lock: a transaction that raises leaves nothing behind."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.tables: dict[str, dict[Key, str]] = {name: {} for name in TABLES}

    @contextmanager
    def write(self) -> Iterator[_MemoryTx]:
        with self.lock:
            tx = _MemoryTx(self.tables)
            yield tx
            tx.commit()

    read = write

    def get_one(self, table: str, key: Key) -> Row | None:
        with self.lock:
            raw = self.tables[table].get(key)
        return json.loads(raw) if raw else None
