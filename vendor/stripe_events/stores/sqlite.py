"""SQLite store for stage `local`: one file under .state/, no server.

Every write is one `BEGIN IMMEDIATE` transaction: it takes the write lock before it
reads, so a condition checked inside it still holds when it writes, across threads and
processes. (A deferred transaction that reads first could find another writer had
committed by then.)
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

from stripe_events.ledger import LedgerEntry, Outcome, StalledRun
from stripe_events.stores.base import (
    CLAIMED,
    DONE,
    RUNS,
    Claim,
    Store,
    can_take,
    check_collection,
    claim_item,
    held_by,
    refusal,
    split_run_key,
    stalled_run,
)

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
    PRIMARY KEY (collection, key)
);
CREATE TABLE IF NOT EXISTS children (
    collection TEXT NOT NULL, parent TEXT NOT NULL, key TEXT NOT NULL, body TEXT NOT NULL,
    order_key TEXT,
    PRIMARY KEY (collection, parent, key)
);
"""
EVENT_COLUMNS = "id, type, created, published_at, received_at, body"
# Files made before conditional writes lack the column; their items count as oldest.
ORDERED_TABLES = ("items", "children")


def _json(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


class SqliteStore(Store):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute("PRAGMA journal_mode=WAL")
            db.executescript(SCHEMA)
        with self._write() as db:  # in a transaction: two processes may start at once
            for table in ORDERED_TABLES:
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                if "order_key" not in columns:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN order_key TEXT")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        # A connection per operation: the local server and the CLI use the file at once.
        # isolation_level=None: no implicit transactions; `_write` opens its own.
        with closing(sqlite3.connect(self.path, timeout=30, isolation_level=None)) as db:
            yield db

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
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
        with self._write() as db:
            db.execute(
                "INSERT INTO events (id, type, created, published_at) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "published_at = COALESCE(published_at, excluded.published_at)",
                (event_id, event_type, created, at),
            )

    def record_received(
        self, event_id: str, event_type: str, created: int, at: str, body: str
    ) -> None:
        with self._write() as db:
            db.execute(
                "INSERT INTO events (id, type, created, received_at, body) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET "
                "received_at = COALESCE(received_at, excluded.received_at), "
                "body = COALESCE(body, excluded.body)",
                (event_id, event_type, created, at, body),
            )

    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        with self._write() as db:
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

    def failures(self, since: str = "", now: float | None = None) -> list[LedgerEntry]:
        stalled = self._stalled(time.time() if now is None else now)
        placeholders = ", ".join("?" * len(stalled))
        entries = self._entries(
            "WHERE seen_at >= ? AND (id IN (SELECT event_id FROM outcomes WHERE status = 'error')"
            f" OR id IN ({placeholders})) ORDER BY seen_at DESC, id DESC",
            (since, *stalled),
        )
        with_runs = [dataclasses.replace(e, stalled=tuple(stalled.get(e.id, ()))) for e in entries]
        return [e for e in with_runs if e.needs_replay]

    def _stalled(self, now: float) -> dict[str, list[StalledRun]]:
        """Event id -> its runs that died, from the claims left in RUNS."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, body FROM items WHERE collection = ? "
                "AND json_extract(body, '$.claim') = ? AND json_extract(body, '$.lease_until') < ?",
                (RUNS, CLAIMED, now),
            ).fetchall()
        stalled: dict[str, list[StalledRun]] = {}
        for key, body in rows:
            run = stalled_run(key, json.loads(body), now)
            if run is not None:
                stalled.setdefault(split_run_key(key)[0], []).append(run)
        return stalled

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        with self._connect() as db:
            return self._get(db, collection, key)

    def _get(self, db: sqlite3.Connection, collection: str, key: str) -> dict[str, Any] | None:
        row = db.execute(
            "SELECT body FROM items WHERE collection = ? AND key = ?",
            (check_collection(collection), key),
        ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def put(self, collection: str, key: str, item: dict[str, Any]) -> None:
        with self._write() as db:
            self._replace(db, collection, key, item)

    def put_if_newer(self, collection: str, key: str, item: dict[str, Any], order: str) -> bool:
        return self._write_if_newer("items", {"collection": collection, "key": key}, item, order)

    def put_child_if_newer(
        self, collection: str, parent: str, key: str, item: dict[str, Any], order: str
    ) -> bool:
        keys = {"collection": collection, "parent": parent, "key": key}
        return self._write_if_newer("children", keys, item, order)

    def _write_if_newer(
        self, table: str, keys: dict[str, str], item: dict[str, Any], order: str
    ) -> bool:
        """One statement: insert, or replace only a row whose order is not greater."""
        check_collection(keys["collection"])
        columns = [*keys, "body", "order_key"]
        with self._write() as db:
            written = db.execute(
                f"INSERT INTO {table} ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))}) "
                f"ON CONFLICT ({', '.join(keys)}) DO UPDATE SET "
                "body = excluded.body, order_key = excluded.order_key "
                f"WHERE {table}.order_key IS NULL OR {table}.order_key <= excluded.order_key",
                (*keys.values(), _json(item), order),
            ).rowcount
        return written == 1

    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        with self._connect() as db:
            rows = db.execute(
                "SELECT key, body FROM children WHERE collection = ? AND parent = ? ORDER BY key",
                (check_collection(collection), parent),
            ).fetchall()
        return {key: dict(json.loads(body)) for key, body in rows}

    def claim(
        self,
        collection: str,
        key: str,
        owner: str,
        lease_seconds: float,
        now: float | None = None,
        about: dict[str, Any] | None = None,
    ) -> Claim:
        now = time.time() if now is None else now
        with self._write() as db:
            stored = self._get(db, collection, key)
            if not can_take(stored, owner, now):
                return refusal(stored)
            self._replace(db, collection, key, claim_item(owner, now + lease_seconds, about))
        return Claim.TAKEN

    def finish_claim(self, collection: str, key: str, owner: str, result: dict[str, Any]) -> None:
        with self._write() as db:
            self._replace(db, collection, key, {**result, "claim": DONE, "owner": owner})

    def release_claim(self, collection: str, key: str, owner: str) -> None:
        with self._write() as db:
            stored = self._get(db, collection, key)
            if held_by(stored, owner):
                db.execute(
                    "DELETE FROM items WHERE collection = ? AND key = ?",
                    (check_collection(collection), key),
                )

    def _replace(
        self, db: sqlite3.Connection, collection: str, key: str, item: dict[str, Any]
    ) -> None:
        db.execute(
            "INSERT OR REPLACE INTO items (collection, key, body) VALUES (?, ?, ?)",
            (check_collection(collection), key, _json(item)),
        )
