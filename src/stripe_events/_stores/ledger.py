"""What happened to each event: when it was published and received, its body, and each
handler's outcome; and the queries `ledger` and `failures` make of it."""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import Any

from stripe_events._ledger import LedgerEntry, Outcome


class Ledger(ABC):
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
        """Record a handler's outcome, unless a later one (by `at`) is recorded: a run
        that failed and is recorded late cannot hide the retry that succeeded meanwhile."""

    @abstractmethod
    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        """Every handler's latest outcome for this event."""

    @abstractmethod
    def event(self, event_id: str) -> LedgerEntry | None: ...

    def seen(self, event_id: str) -> bool:
        return self.event(event_id) is not None

    @abstractmethod
    def recent(self, limit: int, since: str = "") -> list[LedgerEntry]:
        """Events seen at or after `since` (ISO time), newest first; ties by id, descending."""

    @abstractmethod
    def _failing_ids(self, since: str) -> set[str]:
        """The events seen at or after `since` with a handler whose latest outcome is an
        error (a few more do no harm: `failures` reads each entry)."""

    @abstractmethod
    def _expired_runs(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        """(key, claim) of the runs' claims whose lease ended before `now`."""
