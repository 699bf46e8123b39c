"""What a handler gets besides the event: the store and a logger. No AWS in sight."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from chalicelib.stripe_events.store import Store


@dataclass(frozen=True)
class Context:
    store: Store
    log: logging.Logger
    handler: str  # "<router>.<function>", as the ledger names it
