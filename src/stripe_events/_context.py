"""What a handler gets besides the event: the store, a logger, notifications, and Stripe.

No AWS in sight: a resource module can be tested with SQLite and a local outbox.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING, Any

import stripe_events._claims as claims
import stripe_events._projection as projection
from stripe_events._notifier import Notification, Notifier
from stripe_events._stores import Store

if TYPE_CHECKING:
    import stripe

    # Inside Context, `stripe` names its client.
    from stripe import Event

NOTIFICATIONS = "notifications"
# How long a claim (`once_per_object`) is held when the run's deadline is unknown:
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
    # Where the key comes from, for messages about it (in a deployed stage, SSM's name).
    stripe_setting: str = "STRIPE_API_KEY"

    @cached_property
    def stripe(self) -> stripe.StripeClient | None:
        """A Stripe client when the stage has a key of the event's mode, else None. Made
        when a handler first asks: a function whose handlers never call Stripe never reads
        the key."""
        return self.stripe_api()

    def notify(
        self, kind: str, subject: str, message: dict[str, Any], customer: str | None = None
    ) -> bool:
        """Send a notification once per event, even when the handler is retried; False
        when it had been sent already. A crash between sending and recording it can send
        it twice, never zero times."""
        if self.notifier is None:
            raise RuntimeError("this context has no notifier")
        notification_id = f"{self.event_id}:{self.handler}:{kind}"
        # Reading, then writing, is safe: the dispatcher's claim on the run sees to it that
        # no two runs of one (event, handler) overlap.
        if self.store.get(NOTIFICATIONS, notification_id) is not None:
            return False
        self.notifier().send(Notification(notification_id, kind, subject, message, customer))
        self.store.put(NOTIFICATIONS, notification_id, {"kind": kind, "customer": customer})
        return True

    def apply_snapshot(
        self, collection: str, event: Event, *, refetch: bool = False, key: str | None = None
    ) -> bool:
        """Keep the event's object under its id (or `key`) unless a newer snapshot is kept
        (see "State and ordering" in the docs); True when it is kept now, or was by this
        very event. With `refetch=True` and a key of the event's mode, the object is
        fetched from Stripe instead; one Stripe no longer has is kept as deleted."""
        return projection.apply_snapshot(self, collection, event, refetch=refetch, key=key)

    @staticmethod
    def status_of(obj: dict[str, Any]) -> str | None:
        """An object's status as snapshots are ordered by it: invoices of API versions
        before 2018-11-08 have none, but `paid` and `forgiven` booleans."""
        return projection.status_of(obj)

    def keep_if_newer(
        self,
        collection: str,
        key: str,
        item: dict[str, Any],
        event: Event,
        *,
        parent: str | None = None,
    ) -> bool:
        """Keep `item`, derived from the event's object (a summary under its customer,
        given as `parent`), unless one from a newer event of that object is kept."""
        order = projection.order_key(event)
        if parent is None:
            return self.store.put_if_newer(collection, key, item, order)
        return self.store.put_child_if_newer(collection, parent, key, item, order)

    def once_per_object(
        self, collection: str, key: str, action: Callable[[], dict[str, Any] | None]
    ) -> bool:
        """Run `action` once per Stripe object, whichever of its events comes first (an
        order fulfilled by `checkout.session.completed` or `async_payment_succeeded`).

        True when it ran now, False when it was done already. While another run holds the
        object, the handler waits (RetryLater: Lambda runs it again). What `action` returns
        is kept with the record. A crash after `action` and before the record can run it
        twice: make what it does idempotent by the object's id.
        """
        return claims.once_per_object(self, collection, key, action)
