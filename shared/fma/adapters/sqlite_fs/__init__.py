"""The `sqlite_fs` connector: metadata in SQLite, model data as files, events in an outbox.

Local mode's default. Everything lives under one state directory:
`<state>/fma.sqlite3` (+ its WAL) and `<state>/objects/`. Nothing else is written there, so
restart time and disk use follow the data, not the history of requests.
"""

from __future__ import annotations

import secrets
import threading
from dataclasses import dataclass
from pathlib import Path

from fma.adapters.memory import RecordRepository
from fma.adapters.sqlite_fs.db import Database
from fma.adapters.sqlite_fs.grants import GrantSigner
from fma.adapters.sqlite_fs.objects import FileModelStore
from fma.adapters.sqlite_fs.outbox import OutboxEvents

DATABASE = "fma.sqlite3"
OBJECTS = "objects"

__all__ = ["FileModelStore", "OutboxEvents", "SqliteConnector", "SqliteRepository", "open_connector"]


class SqliteRepository(RecordRepository):
    """Every metadata port on SQLite (the row semantics are the embedded connectors' own)."""

    def __init__(self, db: Database):
        super().__init__(db)
        self.db = db


@dataclass
class SqliteConnector:
    db: Database
    repo: SqliteRepository
    store: FileModelStore
    events: OutboxEvents
    signer: GrantSigner

    def close(self) -> None:
        self.db.close()


def open_connector(state_dir: Path | str, public_url: str, synchronous: str = "FULL") -> SqliteConnector:
    """Open (or create) the connector's database and objects under `state_dir`.

    The grant secret is kept in the database: grants handed out before a restart stay valid.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    db = Database(state / DATABASE, synchronous=synchronous)
    signer = GrantSigner(bytes.fromhex(db.setting("grant_secret", secrets.token_hex(32))))
    created = threading.Condition()
    store = FileModelStore(db, state / OBJECTS, signer, public_url, created)
    return SqliteConnector(db, SqliteRepository(db), store, OutboxEvents(db, created), signer)
