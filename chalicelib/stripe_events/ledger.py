"""What the ledger records: each event seen by a function, and each handler's outcome."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
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
    error: str | None = None


@dataclass(frozen=True)
class LedgerEntry:
    id: str
    type: str
    created: int
    received_at: str
    handlers: dict[str, Outcome] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["handlers"] = {name: o.status for name, o in self.handlers.items()}
        data["errors"] = {n: o.error for n, o in self.handlers.items() if o.error is not None}
        return data
