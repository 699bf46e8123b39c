"""The test kit: test your handlers without AWS and without Chalice.

    from stripe_events.testing import event_of, module_context, outbox, run_handlers

    def test_an_early_fraud_warning_flags_its_charge(tmp_path):
        ctx = module_context(tmp_path)
        run_handlers(router, event_of("radar.early_fraud_warning.created", charge="ch_1"), ctx)
        assert ctx.store.get("flagged_charges", "ch_1") is not None

Events are built around Stripe's own example object of each resource (from Stripe's
OpenAPI repository), with your changes merged in; the context keeps its state in
SQLite and its notifications in an outbox, in the folder you give it. To run a module's
handlers as Lambda does, with idempotency and the ledger, use `local_dispatcher`.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Any

import stripe

from stripe_events import samples
from stripe_events.context import Context
from stripe_events.dispatch import Dispatcher
from stripe_events.idempotency_sqlite import SqlitePersistenceLayer
from stripe_events.notifier import Notification, OutboxNotifier
from stripe_events.payloads import LocalPayloadStore
from stripe_events.router import Router
from stripe_events.stores import Store
from stripe_events.stores.sqlite import SqliteStore

__all__ = [
    "event_of",
    "local_dispatcher",
    "module_context",
    "outbox",
    "run_handlers",
    "sample_event",
]

sample_event = samples.sample_event


def event_of(event_type: str, created: int | None = None, **changes: Any) -> stripe.Event:
    """A typed event around Stripe's example object, with `changes` merged into the object.

    `event_of("invoice.paid", id="in_1", customer="cus_1")`: a new event id each time,
    `created` now unless given.
    """
    return stripe.Event.construct_from(
        samples.sample_event(event_type, created=created, changes=changes), None
    )


def module_context(state_dir: Path, handler: str = "test.handler") -> Context:
    """A handler's context on SQLite and a local outbox, kept in `state_dir`."""
    notifier = OutboxNotifier(Path(state_dir) / "outbox.sqlite3")
    store = SqliteStore(Path(state_dir) / "stripe-events.sqlite3")
    return Context(store, logging.getLogger(handler), handler, None, lambda: notifier)


def run_handlers(router: Router, event: stripe.Event, ctx: Context) -> None:
    """Call each of the router's handlers of the event's type, as the dispatcher would
    (without its idempotency and ledger: call it twice to see a retry)."""
    for handler in router.handlers_for(event.type):
        handler.func(event, replace(ctx, handler=handler.name, event_id=event.id))


def outbox(ctx: Context) -> list[Notification]:
    """The notifications sent through `ctx` (a `module_context`), newest first."""
    if ctx.notifier is None:
        raise ValueError("this context has no notifier; make it with module_context")
    notifier = ctx.notifier()
    if not isinstance(notifier, OutboxNotifier):
        raise ValueError(f"this context notifies through {type(notifier).__name__}, not an outbox")
    return notifier.sent()


def local_dispatcher(store: Store, state_dir: Path) -> Dispatcher:
    """A dispatcher on SQLite and local files, as stage `local` builds it."""
    state_dir = Path(state_dir)
    return Dispatcher(
        store,
        SqlitePersistenceLayer(state_dir / "idempotency.sqlite3"),
        lambda: LocalPayloadStore(state_dir / "bodies"),
        notifier=lambda: OutboxNotifier(state_dir / "outbox.sqlite3"),
    )
