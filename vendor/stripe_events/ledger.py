"""What the ledger records: each event published or received, and each handler's outcome."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

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
class LedgerEntry:
    id: str
    type: str
    created: int
    published_at: str | None = None  # when our webhook (or a backfill) put it on the bus
    received_at: str | None = None  # when a function first received it
    body: str | None = None  # the detail as delivered, for replay
    handlers: dict[str, Outcome] = field(default_factory=dict)

    @property
    def seen_at(self) -> str:
        return self.received_at or self.published_at or ""

    @property
    def failing(self) -> dict[str, Outcome]:
        return {name: o for name, o in self.handlers.items() if o.status == "error"}

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": self.type,
            "created": self.created,
            "published_at": self.published_at,
            "received_at": self.received_at,
            "handlers": {name: o.status for name, o in self.handlers.items()},
            "errors": {
                name: {"type": o.error_type, "message": o.error, "attempts": o.attempts, "at": o.at}
                for name, o in self.failing.items()
            },
        }
