"""Runs a resource module's handlers for one event and records each outcome."""

from __future__ import annotations

import logging
from typing import Any

from chalicelib.stripe_events.context import Context
from chalicelib.stripe_events.envelope import unwrap
from chalicelib.stripe_events.ledger import Outcome, utc_now
from chalicelib.stripe_events.router import Router
from chalicelib.stripe_events.store import Store

log = logging.getLogger("stripe_events.dispatch")


class HandlerFailed(Exception):
    """One or more handlers raised. Raised again so that Lambda retries the function."""

    def __init__(self, event_id: str, errors: dict[str, str]) -> None:
        listed = "; ".join(f"{name}: {error}" for name, error in errors.items())
        super().__init__(f"event {event_id}: {len(errors)} handler(s) failed: {listed}")
        self.event_id = event_id
        self.errors = errors


def dispatch(router: Router, detail: dict[str, Any] | str, store: Store) -> dict[str, Outcome]:
    """Run every handler of `router` that matches the event's type, once per event id.

    A handler whose last outcome for this event is "ok" is skipped, so a delivery
    repeated by Stripe, EventBridge or a Lambda retry does not run it again. Every
    handler runs even when an earlier one fails; then HandlerFailed is raised.
    """
    event = unwrap(detail)
    store.record_received(event.id, event.type, event.created, utc_now())
    previous = store.outcomes(event.id)
    results: dict[str, Outcome] = {}
    errors: dict[str, str] = {}
    for handler in router.handlers_for(event.type):
        before = previous.get(handler.name)
        if before is not None and before.status == "ok":
            log.info("skip %s for %s %s: already ok", handler.name, event.type, event.id)
            results[handler.name] = before
            continue
        attempts = 1 if before is None else before.attempts + 1
        context = Context(store, logging.getLogger(f"stripe_events.{handler.name}"), handler.name)
        try:
            handler.func(event, context)
        except Exception as error:
            message = f"{type(error).__name__}: {error}"
            outcome = Outcome("error", attempts, utc_now(), message)
            errors[handler.name] = message
            log.exception("%s failed for %s %s", handler.name, event.type, event.id)
        else:
            outcome = Outcome("ok", attempts, utc_now())
            log.info("%s ok for %s %s", handler.name, event.type, event.id)
        store.record_outcome(event.id, handler.name, outcome)
        results[handler.name] = outcome
    if errors:
        raise HandlerFailed(event.id, errors)
    return results
