"""SQLite store for stage `local`: one file under .state/, no server.

Every write is one `BEGIN IMMEDIATE` transaction: it takes the write lock before it
reads, so a condition checked inside it still holds when it writes, across threads and
processes. (A deferred transaction that reads first could find another writer had
committed by then.) Conditions read an item's fields, kept beside its body as DynamoDB
keeps them as top-level attributes.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from stripe_events._ledger import LedgerEntry, Outcome
from stripe_events._stores.base import RUNS, Store
from stripe_events._stores.claims import CLAIMED
from stripe_events._stores.conditions import Condition, Value, holds
from stripe_events._stores.state import ORDER, check_collection

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, created INTEGER NOT NULL,
    published_at TEXT, received_at TEXT, body TEXT,
    seen_at TEXT GENERATED ALWAYS AS (COALESCE(received_at, published_at)) VIRTUAL
);
CREATE INDEX IF NOT EXISTS events_seen ON events (seen_at);
CREATE TABLE IF NOT EXISTS outcomes (
    event_id TEXT NOT NULL, handler TEXT NOT NULL, status TEXT NOT NULL,
    attempts INTEGER NOT NULL, at TEXT NOT NULL, error_type TEXT, error TEXT,
    PRIMARY KEY (event_id, handler)
);
CREATE TABLE IF NOT EXISTS items (
    collection TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL, order_key TEXT,
    fields TEXT, PRIMARY KEY (collection, key)
);
CREATE TABLE IF NOT EXISTS children (
    collection TEXT NOT NULL, parent TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
    order_key TEXT, fields TEXT, PRIMARY KEY (collection, parent, key)
);
"""
EVENT_COLUMNS = "id, type, created, published_at, received_at, body"
# Columns that files made by earlier versions lack: their items have no order (they count
# as oldest) and keep a claim's fields in their body.
ADDED_COLUMNS = ("order_key", "fields")
LEGACY_CLAIM_FIELDS = ("claim", "owner", "lease_until")


def _json(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        with self._transaction() as db:  # two processes may start at once
            for table in ("items", "children"):
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for column in ADDED_COLUMNS:
                    if column not in columns:
                        db.execute(f"ALTER TABLE {table} ADD COLUMN {column} TEXT")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: the local server and the CLI use the file at once.
        # isolation_level=None: no implicit transactions; `_write` opens its own.
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            yield db

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """One BEGIN IMMEDIATE transaction, committed when the block ends, else rolled back."""
        with self._connect() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                yield db
            except BaseException:
                db.execute("ROLLBACK")
                raise
            db.execute("COMMIT")

    def record_published(self, event_id: str, event_type: str, created: int, at: str) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO events (id, type, created, published_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "published_at = COALESCE(published_at, excluded.published_at)",
                (event_id, event_type, created, at),
            )

    def record_received(
        self, event_id: str, event_type: str, created: int, at: str, body: str
    ) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO events (id, type, created, received_at, body) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "received_at = COALESCE(received_at, excluded.received_at), "
                "body = COALESCE(body, excluded.body)",
                (event_id, event_type, created, at, body),
            )

    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        with self._transaction() as db:
            db.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (event_id, handler) DO UPDATE SET status = excluded.status, "
                "attempts = excluded.attempts, at = excluded.at, "
                "error_type = excluded.error_type, error = excluded.error "
                "WHERE outcomes.at <= excluded.at",
                (
                    event_id,
                    handler,
                    outcome.status,
                    outcome.attempts,
                    outcome.at,
                    outcome.error_type,
                    outcome.error,
                ),
            )

    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT handler, status, attempts, at, error_type, error FROM outcomes "
                "WHERE event_id = ? ORDER BY handler",
                (event_id,),
            ).fetchall()
        return {handler: Outcome(*fields) for handler, *fields in rows}

    def _entries(self, where: str, args: tuple[object, ...]) -> list[LedgerEntry]:
        with self._connect() as db:
            rows = db.execute(f"SELECT {EVENT_COLUMNS} FROM events {where}", args).fetchall()
        return [
            LedgerEntry(id_, type_, created, published, received, body, self.outcomes(id_))
            for id_, type_, created, published, received, body in rows
        ]

    def event(self, event_id: str) -> LedgerEntry | None:
        entries = self._entries("WHERE id = ?", (event_id,))
        return entries[0] if entries else None

    def recent(self, limit: int, since: str = "") -> list[LedgerEntry]:
        return self._entries(
            "WHERE seen_at >= ? ORDER BY seen_at DESC, id DESC LIMIT ?", (since, max(limit, 0))
        )

    def _failing_ids(self, since: str) -> set[str]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT DISTINCT events.id FROM events "
                "JOIN outcomes ON outcomes.event_id = events.id "
                "WHERE outcomes.status = 'error' AND events.seen_at >= ?",
                (since,),
            ).fetchall()
        return {event_id for (event_id,) in rows}

    def _expired_runs(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, body FROM items WHERE collection = ? "
                "AND json_extract(body, '$.claim') = ? AND json_extract(body, '$.lease_until') < ?",
                (RUNS, CLAIMED, now),
            ).fetchall()
        return [(key, dict(json.loads(body))) for key, body in rows]

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT body FROM items WHERE collection = ? AND key = ?",
                (check_collection(collection), key),
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, body FROM children WHERE collection = ? AND parent = ? ORDER BY key",
                (check_collection(collection), parent),
            ).fetchall()
        return {key: dict(json.loads(body)) for key, body in rows}

    def _write(
        self,
        collection: str,
        key: str,
        item: dict[str, Any],
        *,
        parent: str | None = None,
        fields: Mapping[str, Value] | None = None,
        condition: Condition | None = None,
    ) -> bool:
        table, keys = _row(collection, key, parent)
        columns = [*keys, "body", "order_key", "fields"]
        with self._transaction() as db:
            if condition is not None and not holds(condition, _view(db, table, keys)):
                return False
            db.execute(
                f"INSERT OR REPLACE INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                (
                    *keys.values(),
                    _json(item),
                    (fields or {}).get(ORDER),
                    _json(dict(fields)) if fields else None,
                ),
            )
        return True

    def _delete(self, collection: str, key: str, condition: Condition) -> bool:
        table, keys = _row(collection, key, None)
        with self._transaction() as db:
            if not holds(condition, _view(db, table, keys)):
                return False
            db.execute(f"DELETE FROM {table} WHERE {_matching(keys)}", tuple(keys.values()))
        return True


def _row(collection: str, key: str, parent: str | None) -> tuple[str, dict[str, str]]:
    """The table and the key columns of an item, or of one under `parent`."""
    if parent is None:
        return "items", {"collection": collection, "key": key}
    return "children", {"collection": collection, "parent": parent, "key": key}


def _matching(keys: dict[str, str]) -> str:
    return " AND ".join(f"{column} = ?" for column in keys)


def _view(db: sqlite3.Connection, table: str, keys: dict[str, str]) -> dict[str, Any] | None:
    """What conditions read of the stored row: its fields, as DynamoDB's top-level
    attributes. A row written before fields were kept has its claim in its body."""
    row = db.execute(
        f"SELECT body, order_key, fields FROM {table} WHERE {_matching(keys)}",
        tuple(keys.values()),
    ).fetchone()
    if row is None:
        return None
    body, order, fields = row
    if fields is not None:
        return dict(json.loads(fields))
    legacy = {k: v for k, v in json.loads(body).items() if k in LEGACY_CLAIM_FIELDS}
    return legacy if order is None else {**legacy, ORDER: order}
