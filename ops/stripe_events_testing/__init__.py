"""The test kit: test your handlers without AWS and without Chalice. It comes with the
development install, never in a deployment package; `stripe_events` gives its names.

    from stripe_events import event_of, module_context, outbox, run_handlers

    def test_an_early_fraud_warning_flags_its_charge(tmp_path):
        ctx = module_context(tmp_path)
        run_handlers(router, event_of("radar.early_fraud_warning.created", charge="ch_1"), ctx)
        assert ctx.store.get("flagged_charges", "ch_1") is not None

Events are built around Stripe's own example object of each resource (from Stripe's
OpenAPI repository), with your changes merged in; the context keeps its state in
SQLite and its notifications in an outbox, in the folder you give it. `InProcessStripe`
makes thin events' typed notifications and answers the API calls of the handlers. To
run a module's handlers as Lambda does, with idempotency and the ledger, use
`local_dispatcher`.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import stripe
from stripe.v2.core import EventNotification

from stripe_events._context import Context
from stripe_events._dispatch import Dispatcher, bound_client
from stripe_events._envelope import unwrap
from stripe_events._notifier import Notification
from stripe_events._router import Router
from stripe_events._stores import Store
from stripe_events_local.outbox import OutboxNotifier
from stripe_events_local.payloads import LocalPayloadStore
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import samples

__all__ = [
    "InProcessStripe",
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


class InProcessStripe(stripe.HTTPClient):
    """Stripe's API in process, for tests of handlers that call it: GETs are answered from
    `objects` (path -> JSON object), anything else as Stripe answers an unknown object
    (404). `client` is the StripeClient to give a context; `requests` lists the calls.

        stripe_api = InProcessStripe()
        notification = stripe_api.notification("v1.billing.meter.no_meter_found")
        ctx = module_context(tmp_path, client=stripe_api.client)
        run_handlers(router, notification, ctx)
    """

    name = "in-process"

    def __init__(self) -> None:
        super().__init__()
        self.objects: dict[str, dict[str, Any]] = {}
        self.requests: list[tuple[str, str, dict[str, str]]] = []  # method, path, headers
        self.client = stripe.StripeClient(
            "sk_test_testing_kit", http_client=self, max_network_retries=0
        )

    def notification(
        self, event_type: str, created: int | None = None, **fields: Any
    ) -> EventNotification:
        """A thin event's typed notification, as a handler of its type receives it.

        `fields` replace the notification's own (`context="acct_…"`). Its event (with the
        data `samples.THIN_EVENT_DATA` has for the type) and its related object are
        served, so `fetch_event()` and `fetch_related_object()` work.
        """
        notification = {**samples.sample_thin_event(event_type, created=created), **fields}
        self.objects[f"/v2/core/events/{notification['id']}"] = samples.thin_event(notification)
        related = notification.get("related_object")
        if related:  # Stripe's example of it; of a v2 object (none there), its id and type
            example = samples.example_objects().get(related["type"], {})
            self.objects[related["url"]] = {
                **example,
                "id": related["id"],
                "object": related["type"],
            }
        typed: EventNotification = unwrap(notification, self.client)
        return typed

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        path = urlsplit(url).path
        self.requests.append((method.upper(), path, dict(headers or {})))
        found = self.objects.get(path) if method.upper() == "GET" else None
        if found is None:
            missing = {
                "type": "invalid_request_error",
                "code": "resource_missing",
                "message": f"No such object: '{path}' (not in InProcessStripe.objects)",
            }
            return json.dumps({"error": missing}), 404, {}
        return json.dumps(found), 200, {"Request-Id": "req_in_process"}

    def close(self) -> None:
        """Nothing to close: no connection is ever opened."""


def module_context(
    state_dir: Path, handler: str = "test.handler", client: stripe.StripeClient | None = None
) -> Context:
    """A handler's context on SQLite and a local outbox, kept in `state_dir`; `client` is
    its `ctx.stripe` (None: as with no STRIPE_API_KEY)."""
    notifier = OutboxNotifier(Path(state_dir) / "outbox.sqlite3")
    store = SqliteStore(Path(state_dir) / "stripe-events.sqlite3")
    return Context(store, logging.getLogger(handler), handler, lambda: client, lambda: notifier)


def run_handlers(router: Router, event: stripe.Event | EventNotification, ctx: Context) -> None:
    """Call each of the router's handlers of the event's type, as the dispatcher would
    (without its idempotency and ledger: call it twice to see a retry). For a thin event,
    `ctx.stripe` is bound to the event's context (its connected account), as in Lambda."""
    client = bound_client(ctx.stripe, event)
    for handler in router.handlers_for(event.type):
        run = replace(ctx, handler=handler.name, event_id=event.id, stripe_api=lambda: client)
        handler.func(event, run)


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
        lambda: LocalPayloadStore(state_dir / "bodies"),
        notifier=lambda: OutboxNotifier(state_dir / "outbox.sqlite3"),
    )
