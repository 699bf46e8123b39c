"""`--since 2h`: how far back a command looks."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}
DURATION = re.compile(r"(\d+)([smhd])")


def parse_since(text: str, now: datetime | None = None) -> datetime:
    """A duration back from now (`30m`, `2h`, `3d`, `1d12h`) or an ISO 8601 time."""
    now = now or datetime.now(UTC)
    compact = text.strip().lower()
    parts = DURATION.findall(compact)
    if parts and "".join(n + u for n, u in parts) == compact:
        return now - sum((timedelta(**{UNITS[u]: int(n)}) for n, u in parts), timedelta())
    try:
        moment = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(
            f"{text!r} is neither a duration (30m, 2h, 3d) nor an ISO time (2026-11-27T08:00Z)"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
