"""SQLite store for stage `local`: one file under .state/, no server."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from chalicelib.stripe_events.ledger import LedgerEntry, Outcome
from chalicelib.stripe_events.store import Store, check_collection

SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id TEXT PRIMARY KEY, type TEXT NOT NULL, created INTEGER NOT NULL, received_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_received ON events (received_at);
CREATE TABLE IF NOT EXISTS outcomes (
    event_id TEXT NOT NULL, handler TEXT NOT NULL, status TEXT NOT NULL, error TEXT,
    attempts INTEGER NOT NULL, at TEXT NOT NULL, PRIMARY KEY (event_id, handler)
);
CREATE TABLE IF NOT EXISTS items (
    collection TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (collection, key)
);
"""


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: the local server and the CLI use the file at once.
        with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            yield db

    def record_received(
        self, event_id: str, event_type: str, created: int, received_at: str
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO events VALUES (?, ?, ?, ?)",
                (event_id, event_type, created, received_at),
            )

    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?)",
                (event_id, handler, outcome.status, outcome.error, outcome.attempts, outcome.at),
            )

    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT handler, status, attempts, at, error FROM outcomes WHERE event_id = ?",
                (event_id,),
            ).fetchall()
        return {h: Outcome(status, attempts, at, error) for h, status, attempts, at, error in rows}

    def recent(self, limit: int) -> list[LedgerEntry]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, type, created, received_at FROM events "
                "ORDER BY received_at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            LedgerEntry(event_id, event_type, created, received_at, self.outcomes(event_id))
            for event_id, event_type, created, received_at in rows
        ]

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        with self._connect() as db:
            row = db.execute(
                "SELECT body FROM items WHERE collection = ? AND key = ?",
                (check_collection(collection), key),
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, collection: str, key: str, item: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO items VALUES (?, ?, ?)",
                (check_collection(collection), key, json.dumps(item, sort_keys=True)),
            )
