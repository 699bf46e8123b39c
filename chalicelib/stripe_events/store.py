"""The store interface: the ledger, and the projections that resource modules keep.

Two implementations: DynamoDB on AWS (store_dynamodb.py) and SQLite in stage
`local` (store_sqlite.py). `open_store` picks one from the settings.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from chalicelib.stripe_events.ledger import LedgerEntry, Outcome
from chalicelib.stripe_events.settings import Settings, SettingsError


class Store(ABC):
    @abstractmethod
    def record_published(self, event_id: str, event_type: str, created: int, at: str) -> None:
        """Record that the event was put on the bus; the first record wins."""

    @abstractmethod
    def record_received(
        self, event_id: str, event_type: str, created: int, at: str, body: str
    ) -> None:
        """Record that a function received the event, and its body; the first record wins."""

    @abstractmethod
    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        """Record (replace) one handler's outcome for one event."""

    @abstractmethod
    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        """Every handler's latest outcome for this event."""

    @abstractmethod
    def event(self, event_id: str) -> LedgerEntry | None:
        """One event with its body and outcomes, or None if the ledger never saw it."""

    def seen(self, event_id: str) -> bool:
        return self.event(event_id) is not None

    @abstractmethod
    def recent(self, limit: int, since: str = "") -> list[LedgerEntry]:
        """Events seen at or after `since` (ISO time), newest first; ties by id, descending."""

    @abstractmethod
    def failures(self, since: str = "") -> list[LedgerEntry]:
        """Events seen at or after `since` with a handler whose latest outcome is an error."""

    @abstractmethod
    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """One projected item, or None."""

    @abstractmethod
    def put(self, collection: str, key: str, item: dict[str, Any]) -> None:
        """Create or replace one projected item."""

    @abstractmethod
    def put_child(self, collection: str, parent: str, key: str, item: dict[str, Any]) -> None:
        """Create or replace one item under `parent`, e.g. a subscription under its customer."""

    @abstractmethod
    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        """Every item under `parent`, by key, in key order."""


def check_collection(name: str) -> str:
    """Collection names are plain words: the DynamoDB key is `<collection>#<key>`."""
    if not name or "#" in name:
        raise ValueError(f"a collection name must be non-empty and without '#': {name!r}")
    return name


def open_store(settings: Settings) -> Store:
    if settings.is_local:
        from chalicelib.stripe_events.store_sqlite import SqliteStore

        return SqliteStore(settings.state_dir / "stripe-events.sqlite3")
    if not settings.table:
        raise SettingsError(
            "STRIPE_EVENTS_TABLE is not set: name the DynamoDB table for the ledger in "
            ".chalice/config.json, or set STRIPE_EVENTS_BUS=local to use SQLite."
        )
    from chalicelib.stripe_events.store_dynamodb import DynamoStore

    return DynamoStore(settings.table, settings.region)
