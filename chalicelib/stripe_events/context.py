"""What a handler gets besides the event: the store, a logger, and Stripe when configured.

No AWS in sight: a resource module can be tested with a SQLite store and nothing else.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import stripe

from chalicelib.stripe_events.store import Store


@dataclass(frozen=True)
class Context:
    store: Store
    log: logging.Logger
    handler: str  # "<router>.<function>", as the ledger names it
    # A client for the Stripe API when STRIPE_API_KEY is set (to re-fetch an object), else None.
    stripe: stripe.StripeClient | None = None
