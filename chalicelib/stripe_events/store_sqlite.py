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
    collection TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (collection, key)
);
CREATE TABLE IF NOT EXISTS children (
    collection TEXT NOT NULL, parent TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
    PRIMARY KEY (collection, parent, key)
);
"""
EVENT_COLUMNS = "id, type, created, published_at, received_at, body"


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

    def record_published(self, event_id: str, event_type: str, created: int, at: str) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (id, type, created, published_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "published_at = COALESCE(published_at, excluded.published_at)",
                (event_id, event_type, created, at),
            )

    def record_received(
        self, event_id: str, event_type: str, created: int, at: str, body: str
    ) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT INTO events (id, type, created, received_at, body) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "received_at = COALESCE(received_at, excluded.received_at), "
                "body = COALESCE(body, excluded.body)",
                (event_id, event_type, created, at, body),
            )

    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO outcomes VALUES (?, ?, ?, ?, ?, ?, ?)",
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

    def failures(self, since: str = "") -> list[LedgerEntry]:
        return self._entries(
            "WHERE seen_at >= ? AND id IN (SELECT event_id FROM outcomes WHERE status = 'error') "
            "ORDER BY seen_at DESC, id DESC",
            (since,),
        )

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

    def put_child(self, collection: str, parent: str, key: str, item: dict[str, Any]) -> None:
        with self._connect() as db:
            db.execute(
                "INSERT OR REPLACE INTO children VALUES (?, ?, ?, ?)",
                (check_collection(collection), parent, key, json.dumps(item, sort_keys=True)),
            )

    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, body FROM children WHERE collection = ? AND parent = ? ORDER BY key",
                (check_collection(collection), parent),
            ).fetchall()
        return {key: dict(json.loads(body)) for key, body in rows}
