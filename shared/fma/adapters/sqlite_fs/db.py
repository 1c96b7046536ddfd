"""SQLite under the sqlite_fs connector: WAL mode, one connection per thread, and every
conditional write one `BEGIN IMMEDIATE` transaction (the write lock is taken before the first
read, so two writers never both pass the same condition; readers never block on WAL).

Rows are the embedded connectors' JSON rows (fma.adapters.memory.rows) with their key and index
columns beside them; objects and the outbox of object-created events live in the same file so a
put and its event commit together.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from fma.adapters.memory.rows import TABLES, Key, Row, key_of

SCHEMA = """
CREATE TABLE IF NOT EXISTS tokens (token_hash TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS experiments (id TEXT PRIMARY KEY, owner TEXT NOT NULL, list_key TEXT NOT NULL,
                                        data TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS experiments_all ON experiments (list_key);
CREATE INDEX IF NOT EXISTS experiments_owner ON experiments (owner, list_key);
CREATE TABLE IF NOT EXISTS clients (experiment_id TEXT, client_id TEXT, data TEXT NOT NULL,
                                    PRIMARY KEY (experiment_id, client_id));
CREATE TABLE IF NOT EXISTS rounds (experiment_id TEXT, round INTEGER, due TEXT, data TEXT NOT NULL,
                                   PRIMARY KEY (experiment_id, round));
CREATE INDEX IF NOT EXISTS rounds_due ON rounds (due) WHERE due IS NOT NULL;
CREATE TABLE IF NOT EXISTS updates (experiment_id TEXT, round INTEGER, client_id TEXT, due TEXT, data TEXT NOT NULL,
                                    PRIMARY KEY (experiment_id, round, client_id));
CREATE INDEX IF NOT EXISTS updates_due ON updates (due) WHERE due IS NOT NULL;
CREATE TABLE IF NOT EXISTS evaluations (experiment_id TEXT, round INTEGER, client_id TEXT, data TEXT NOT NULL,
                                        PRIMARY KEY (experiment_id, round, client_id));
CREATE TABLE IF NOT EXISTS refusals (experiment_id TEXT, round INTEGER, client_id TEXT, data TEXT NOT NULL,
                                     PRIMARY KEY (experiment_id, round, client_id));
CREATE TABLE IF NOT EXISTS idempotency (record_id TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS buffers (experiment_id TEXT, version INTEGER, round INTEGER, client_id TEXT,
                                    data TEXT NOT NULL, PRIMARY KEY (experiment_id, version, round, client_id));
CREATE TABLE IF NOT EXISTS registry_names (name TEXT PRIMARY KEY, data TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS registry_versions (name TEXT, sort_key TEXT, data TEXT NOT NULL,
                                              PRIMARY KEY (name, sort_key));
CREATE TABLE IF NOT EXISTS links (experiment_id TEXT, sk TEXT, data TEXT NOT NULL, PRIMARY KEY (experiment_id, sk));
CREATE TABLE IF NOT EXISTS objects (seq INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,
                                    version_id TEXT NOT NULL UNIQUE, size INTEGER NOT NULL,
                                    content_type TEXT NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS objects_key ON objects (key, seq);
CREATE TABLE IF NOT EXISTS outbox (id INTEGER PRIMARY KEY AUTOINCREMENT, key TEXT NOT NULL,
                                   visible_at REAL NOT NULL DEFAULT 0, deliveries INTEGER NOT NULL DEFAULT 0);
CREATE TABLE IF NOT EXISTS settings (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""
#: the statement reading one row of each table by its key.
GET_SQL = {table: f"SELECT data FROM {table} WHERE {' AND '.join(f'{c} = ?' for c in cols)}"
           for table, cols in TABLES.items()}
#: extra columns each table keeps beside its key (what its indexes are built on).
INDEXED = {"experiments": ("owner", "list_key"), "rounds": ("due",), "updates": ("due",)}


class SqliteTx:
    """The row-store transaction (fma.adapters.memory.kv.Tx) on one connection."""

    def __init__(self, conn: sqlite3.Connection):
        self.conn = conn

    def get(self, table: str, key: Key) -> Row | None:
        found = self.conn.execute(GET_SQL[table], key).fetchone()
        return json.loads(found[0]) if found else None

    def put(self, table: str, row: Row) -> None:
        cols = (*TABLES[table], *INDEXED.get(table, ()), "data")
        values = (*key_of(table, row), *(row.get(c) for c in INDEXED.get(table, ())), json.dumps(row))
        marks = ", ".join("?" for _ in cols)
        self.conn.execute(f"INSERT OR REPLACE INTO {table} ({', '.join(cols)}) VALUES ({marks})", values)

    def scan(self, table: str, prefix: Key, after: Key | None = None, limit: int | None = None,
             descending: bool = False) -> list[Row]:
        cols = TABLES[table]
        clauses = [f"{c} = ?" for c in cols[:len(prefix)]]
        args: list = list(prefix)
        if after is not None:  # pages move along the first key column after the prefix
            clauses.append(f"{cols[len(prefix)]} {'<' if descending else '>'} ?")
            args.append(after[len(prefix)])
        order = ", ".join(f"{c} DESC" if descending else c for c in cols)
        sql = f"SELECT data FROM {table} WHERE {' AND '.join(clauses) or '1'} ORDER BY {order}"
        if limit is not None:
            sql += " LIMIT ?"
            args.append(limit)
        return [json.loads(r[0]) for r in self.conn.execute(sql, args)]

    def due(self, table: str, until: str, limit: int) -> list[Row]:
        assert table in ("rounds", "updates")
        sql = f"SELECT data FROM {table} WHERE due IS NOT NULL AND due <= ? ORDER BY due LIMIT ?"
        return [json.loads(r[0]) for r in self.conn.execute(sql, (until, limit))]

    def listed(self, owner: str | None, before: str | None, limit: int, archived: bool = False) -> list[Row]:
        sql = ("SELECT data FROM experiments WHERE (? IS NULL OR owner = ?) AND (? IS NULL OR list_key < ?)"
               " AND COALESCE(json_extract(data, '$.archived'), 0) = ? ORDER BY list_key DESC LIMIT ?")
        args = (owner, owner, before, before, int(archived), limit)
        return [json.loads(r[0]) for r in self.conn.execute(sql, args)]


class Database:
    """One SQLite file; each thread gets its own connection (sqlite3 connections are not shared)."""

    def __init__(self, path: Path, synchronous: str = "FULL", busy_timeout_ms: int = 60_000):
        self.path = Path(path)
        self.synchronous, self.busy_timeout_ms = synchronous, busy_timeout_ms
        self.local = threading.local()
        self.lock = threading.Lock()
        self.connections: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self.connection().executescript(SCHEMA)
        self._add_missing_columns()

    def _add_missing_columns(self) -> None:
        """Columns added after a state directory was created (its tables already exist)."""
        conn = self.connection()
        if "deliveries" not in {row[1] for row in conn.execute("PRAGMA table_info(outbox)")}:
            conn.execute("ALTER TABLE outbox ADD COLUMN deliveries INTEGER NOT NULL DEFAULT 0")

    def connection(self) -> sqlite3.Connection:
        conn = getattr(self.local, "conn", None)
        if conn is None:
            # check_same_thread=False only so that close() may close every thread's connection.
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=self.busy_timeout_ms / 1000,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute(f"PRAGMA synchronous={self.synchronous}")
            conn.execute(f"PRAGMA busy_timeout={int(self.busy_timeout_ms)}")
            self.local.conn = conn
            with self.lock:  # close the connections of threads that have ended (request threads come and go)
                alive = [(t, c) for t, c in self.connections if t.is_alive()]
                for t, c in self.connections:
                    if not t.is_alive():
                        c.close()
                self.connections = [*alive, (threading.current_thread(), conn)]
        return conn

    @contextmanager
    def write(self) -> Iterator[SqliteTx]:
        """BEGIN IMMEDIATE ... COMMIT; a block that raises rolls back and changes nothing."""
        conn = self.connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield SqliteTx(conn)
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    @contextmanager
    def read(self) -> Iterator[SqliteTx]:
        """A deferred transaction: every statement inside sees the same snapshot."""
        conn = self.connection()
        conn.execute("BEGIN")
        try:
            yield SqliteTx(conn)
        finally:
            conn.execute("COMMIT")

    def get_one(self, table: str, key: Key) -> Row | None:
        """One row without BEGIN/COMMIT: in autocommit mode a single SELECT is its own snapshot."""
        return SqliteTx(self.connection()).get(table, key)

    def setting(self, name: str, default: str) -> str:
        """A value kept in the database (created with `default` the first time it is asked for)."""
        with self.write() as tx:
            found = tx.conn.execute("SELECT value FROM settings WHERE name = ?", (name,)).fetchone()
            if found:
                return found[0]
            tx.conn.execute("INSERT INTO settings (name, value) VALUES (?, ?)", (name, default))
            return default

    def close(self) -> None:
        with self.lock:
            for _, conn in self.connections:
                conn.close()
            self.connections.clear()
        self.local = threading.local()
