"""Notifications: one interface, two implementations.

SnsNotifier publishes to an SNS topic (STRIPE_EVENTS_TOPIC_ARN) with the kind and the
customer as message attributes, so that subscribers can filter. OutboxNotifier (stage
`local`) appends to an outbox table in SQLite, which `stripe-events outbox` lists.
"""

from __future__ import annotations

import json
import sqlite3
from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import closing, contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from stripe_events.errors import SettingsError
from stripe_events.ledger import utc_now
from stripe_events.settings import Settings


@dataclass(frozen=True)
class Notification:
    id: str  # "<event id>:<handler>:<kind>": the same on every retry, so it is sent once
    kind: str  # e.g. "dunning", "dispute_created"; subscribers filter on it
    subject: str
    message: dict[str, Any]
    customer: str | None = None
    at: str = field(default_factory=utc_now)


class Notifier(ABC):
    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver the notification (at least once; the caller keeps it from repeating)."""


class SnsNotifier(Notifier):
    def __init__(self, topic_arn: str, region: str) -> None:
        import stripe_events.aws as aws

        self.topic_arn = topic_arn
        self.client = aws.client("sns", region)

    def send(self, notification: Notification) -> None:
        attributes = {"type": {"DataType": "String", "StringValue": notification.kind}}
        if notification.customer:
            attributes["customer"] = {"DataType": "String", "StringValue": notification.customer}
        self.client.publish(
            TopicArn=self.topic_arn,
            Subject=notification.subject[:100],  # SNS's limit for e-mail subjects
            Message=json.dumps({**asdict(notification)}, sort_keys=True),
            MessageAttributes=attributes,
        )


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


def open_notifier(settings: Settings) -> Notifier:
    if settings.is_local:
        return OutboxNotifier(settings.state_dir / "outbox.sqlite3")
    if not settings.topic_arn:
        raise SettingsError(
            "STRIPE_EVENTS_TOPIC_ARN is not set: name the SNS topic for notifications in "
            ".chalice/config.json, or set STRIPE_EVENTS_BUS=local to use the local outbox."
        )
    return SnsNotifier(settings.topic_arn, settings.region)
