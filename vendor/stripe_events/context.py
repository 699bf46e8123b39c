"""What a handler gets besides the event: the store, a logger, notifications, and Stripe.

No AWS in sight: a resource module can be tested with SQLite and a local outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

from stripe_events.notifier import Notification, Notifier
from stripe_events.stores import Store

if TYPE_CHECKING:
    import stripe

NOTIFICATIONS = "notifications"
# How long a claim (`claims.once_per_object`) is held when the run's deadline is unknown:
# Chalice's default Lambda timeout.
DEFAULT_LEASE_SECONDS = 60.0


@dataclass(frozen=True)
class Context:
    store: Store
    log: logging.Logger
    handler: str  # "<router>.<function>", as the ledger names it
    # Makes the client `stripe` gives (its key is read from SSM only then).
    stripe_api: Callable[[], stripe.StripeClient | None] = lambda: None
    notifier: Callable[[], Notifier] | None = None
    event_id: str = ""
    # At least as long as this run can live (the Lambda's remaining time): a claim held
    # this long belongs to a run that has ended.
    lease_seconds: float = DEFAULT_LEASE_SECONDS
    # Where the key comes from in this stage, for messages about it (the SSM parameter's
    # name in a deployed stage).
    stripe_setting: str = "STRIPE_API_KEY"

    @cached_property
    def stripe(self) -> stripe.StripeClient | None:
        """A client for the Stripe API when the stage has a key of the event's mode (to
        re-fetch an object), else None. Made when a handler first asks: a function whose
        handlers never call Stripe never reads the key."""
        return self.stripe_api()

    def notify(
        self, kind: str, subject: str, message: dict[str, Any], customer: str | None = None
    ) -> bool:
        """Send a notification once per event, even when the handler is retried.

        Returns False when it had already been sent for this event. A crash between
        sending and recording it can still send it twice; never zero times. Reading and
        then writing the record is safe here: no two runs of one (event, handler) overlap,
        the dispatcher's claim on the run sees to that.
        """
        if self.notifier is None:
            raise RuntimeError("this context has no notifier")
        notification_id = f"{self.event_id}:{self.handler}:{kind}"
        if self.store.get(NOTIFICATIONS, notification_id) is not None:
            return False
        self.notifier().send(Notification(notification_id, kind, subject, message, customer))
        self.store.put(NOTIFICATIONS, notification_id, {"kind": kind, "customer": customer})
        return True
