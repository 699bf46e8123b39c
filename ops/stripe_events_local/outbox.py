"""The outbox of stage `local`: notifications kept in SQLite, which `stripe-events outbox`
lists, where AWS would publish them to SNS."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path

from stripe_events._notifier import Notification, Notifier

OUTBOX_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    id TEXT PRIMARY KEY, kind TEXT NOT NULL, customer TEXT, subject TEXT NOT NULL,
    message TEXT NOT NULL, at TEXT NOT NULL
)
"""


class OutboxNotifier(Notifier):
    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as db:
            db.execute(OUTBOX_SCHEMA)

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        with closing(sqlite3.connect(self.path, timeout=30)) as db, db:
            yield db

    def send(self, notification: Notification) -> None:
        n = notification
        with self._connect() as db:
            db.execute(
                "INSERT OR IGNORE INTO outbox VALUES (?, ?, ?, ?, ?, ?)",
                (n.id, n.kind, n.customer, n.subject, json.dumps(n.message, sort_keys=True), n.at),
            )

    def sent(self, limit: int = 100) -> list[Notification]:
        """The newest notifications first."""
        with self._connect() as db:
            rows = db.execute(
                "SELECT id, kind, subject, message, customer, at FROM outbox "
                "ORDER BY at DESC, id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            Notification(id_, kind, subject, json.loads(message), customer, at)
            for id_, kind, subject, message, customer, at in rows
        ]
