"""Runs a resource module's handlers for one event: once each, with every outcome recorded."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Any

import stripe
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

import stripe_events.observability as observability
from stripe_events.context import Context
from stripe_events.envelope import unwrap
from stripe_events.errors import HandlerBusy, HandlerFailed, RetryLater
from stripe_events.idempotency import LocalLambdaContext, run_once
from stripe_events.ledger import Outcome, utc_now
from stripe_events.notifier import Notifier
from stripe_events.payloads import PAYLOAD_KEY, PayloadStore, restore
from stripe_events.router import Handler, Router
from stripe_events.stores import Store

log = logging.getLogger("stripe_events.dispatch")


# Clocks of two Lambda containers may differ a little; a lease outlasts its run by this.
CLOCK_SKEW_SECONDS = 1.0


class Dispatcher:
    def __init__(
        self,
        store: Store,
        idempotency: BasePersistenceLayer,
        payloads: Callable[[], PayloadStore],
        *,
        retention_days: int = 35,
        stripe_client: stripe.StripeClient | None = None,
        stripe_live: bool = False,
        notifier: Callable[[], Notifier] | None = None,
    ) -> None:
        self.store = store
        self.idempotency = idempotency
        self.payloads = payloads
        self.retention_days = retention_days
        self.stripe_client = stripe_client
        self.stripe_live = stripe_live  # the mode of the client's key
        self.notifier = notifier

    def dispatch(
        self, router: Router, detail: dict[str, Any] | str, lambda_context: Any = None
    ) -> dict[str, Outcome]:
        """Run every handler of `router` that matches the event's type, once per event id.

        A handler that completed for this event id is not run again, whether the event
        comes again from Stripe, EventBridge, a Lambda retry or a replay. Every handler
        runs even when an earlier one fails; then HandlerFailed is raised.
        """
        data = json.loads(detail) if isinstance(detail, str) else detail
        # The ledger keeps the detail as delivered: for an oversized event, the reference.
        body = detail if isinstance(detail, str) else json.dumps(detail)
        if PAYLOAD_KEY in data:
            data = restore(data, self.payloads())
        event = unwrap(data)
        self.store.record_received(event.id, event.type, event.created, utc_now(), body)
        previous = self.store.outcomes(event.id)
        results: dict[str, Outcome] = {}
        errors: dict[str, str] = {}
        busy: list[str] = []
        for handler in router.handlers_for(event.type):
            before = previous.get(handler.name)
            try:
                outcome = self._run(handler, event, before, lambda_context)
            except (IdempotencyAlreadyInProgressError, RetryLater) as wait:
                log.warning("%s must wait for %s, retry later: %s", handler.name, event.id, wait)
                busy.append(handler.name)
                continue
            results[handler.name] = outcome
            if outcome is before:
                continue
            if outcome.status == "error":
                errors[handler.name] = f"{outcome.error_type}: {outcome.error}"
            self.store.record_outcome(event.id, handler.name, outcome)
        if errors:
            raise HandlerFailed(event.id, errors)
        if busy:
            raise HandlerBusy(f"event {event.id}: still running elsewhere: {', '.join(busy)}")
        return results

    def _run(
        self, handler: Handler, event: stripe.Event, before: Outcome | None, lambda_context: Any
    ) -> Outcome:
        """The new outcome, or `before` itself when the handler had already completed."""
        ran = False
        lambda_context = lambda_context or LocalLambdaContext()

        def run() -> dict[str, Any]:
            nonlocal ran
            ran = True
            logger = logging.getLogger(f"stripe_events.{handler.name}")
            # A test key cannot see live objects, nor the reverse: a 404 would mean nothing.
            client = self.stripe_client if self.stripe_live == event.livemode else None
            # Lambda ends this run by its deadline: a claim it takes is free after that.
            lease = lambda_context.get_remaining_time_in_millis() / 1000 + CLOCK_SKEW_SECONDS
            context = Context(
                self.store, logger, handler.name, client, self.notifier, event.id, lease
            )
            handler.func(event, context)
            return {"status": "ok"}

        attempts = 1 if before is None else before.attempts + 1
        fields = {"event_id": event.id, "event_type": event.type, "handler": handler.name}
        started = time.perf_counter()
        try:
            run_once(
                self.idempotency,
                {"event": event.id, "handler": handler.name},
                run,
                retention_days=self.retention_days,
                lambda_context=lambda_context,
            )
        except (IdempotencyAlreadyInProgressError, RetryLater):
            raise
        except Exception as error:
            # The handler's own error, or the idempotency store's: either way, retry later.
            log.exception(
                "%s failed for %s %s",
                handler.name,
                event.type,
                event.id,
                extra={**fields, "outcome": "error", "attempts": attempts},
            )
            observability.count("HandlerError", handler=handler.name)
            return Outcome("error", attempts, utc_now(), type(error).__name__, str(error))
        if not ran:
            log.info(
                "skip %s for %s %s: already done",
                handler.name,
                event.type,
                event.id,
                extra={**fields, "outcome": "skipped"},
            )
            if before is not None and before.status == "ok":
                return before
            # Done, but the ledger missed it (its write failed after the run): mend it.
            return Outcome("ok", attempts - 1 or 1, utc_now())
        duration_ms = (time.perf_counter() - started) * 1000
        log.info(
            "%s ok for %s %s",
            handler.name,
            event.type,
            event.id,
            extra={**fields, "outcome": "ok", "attempts": attempts, "duration_ms": duration_ms},
        )
        observability.count("HandlerOk", handler=handler.name)
        observability.milliseconds("HandlerDuration", duration_ms, handler=handler.name)
        return Outcome("ok", attempts, utc_now())
