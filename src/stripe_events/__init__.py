"""stripe-events: Stripe's events verified, put on EventBridge and handled once per
resource module. A handler imports from here; `app.py` wires the modules with
StripeEvents. The test kit's names come from the development install, never from a
deployment package. Everything else is internal: its modules' names start with `_`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stripe_events._context import Context
from stripe_events._core import StripeEvents
from stripe_events._errors import RetryLater, StripeEventsError
from stripe_events._router import Router
from stripe_events._stores import State

if TYPE_CHECKING:
    from stripe_events_testing import (
        InProcessStripe,
        event_of,
        module_context,
        outbox,
        run_handlers,
    )

TEST_KIT = ("event_of", "module_context", "run_handlers", "outbox", "InProcessStripe")

__all__ = [
    "Context",
    "InProcessStripe",
    "RetryLater",
    "Router",
    "State",
    "StripeEvents",
    "StripeEventsError",
    "event_of",
    "module_context",
    "outbox",
    "run_handlers",
]


def __getattr__(name: str) -> Any:
    # The test kit is imported when a test asks for it: Lambda never has it.
    if name in TEST_KIT:
        import stripe_events_testing

        return getattr(stripe_events_testing, name)
    raise AttributeError(f"module 'stripe_events' has no attribute {name!r}")
