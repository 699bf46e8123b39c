"""What the ledger records: each event published or received, and each handler's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

Status = Literal["ok", "error"]


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="microseconds")


@dataclass(frozen=True)
class Outcome:
    status: Status
    attempts: int
    at: str
    error_type: str | None = None
    error: str | None = None


@dataclass(frozen=True)
class StalledRun:
    """A function's run of an event that ended without releasing its claim (it crashed,
    timed out or ran out of memory), whose lease has ended: no run holds the event now."""

    router: str
    lease_until: float  # epoch seconds
    handlers: tuple[str, ...]  # the router's handlers for the event, as the run saw them


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    type: str
    created: int
    published_at: str | None = None  # when our webhook (or a backfill) put it on the bus
    received_at: str | None = None  # when a function first received it
    body: str | None = None  # the detail as delivered, for replay
    handlers: dict[str, Outcome] = field(default_factory=dict)
    stalled: tuple[StalledRun, ...] = ()

    @property
    def seen_at(self) -> str:
        return self.received_at or self.published_at or ""

    @property
    def failing(self) -> dict[str, Outcome]:
        return {name: o for name, o in self.handlers.items() if o.status == "error"}

    @property
    def waiting(self) -> list[str]:
        """The handlers of stalled runs that have not succeeded: nothing will run them
        unless the event is delivered or replayed again."""
        return [
            name
            for run in self.stalled
            for name in run.handlers
            if name not in self.handlers or self.handlers[name].status != "ok"
        ]

    @property
    def needs_replay(self) -> bool:
        return bool(self.failing or self.waiting)
