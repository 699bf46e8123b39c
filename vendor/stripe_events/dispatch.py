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
from stripe._base_address import BaseAddresses
from stripe.v2.core import EventNotification

import stripe_events.observability as observability
from stripe_events.context import Context
from stripe_events.envelope import EventHeader, check_envelope, unwrap
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
        api_base: str = "",
    ) -> None:
        self.store = store
        self.idempotency = idempotency
        self.payloads = payloads
        self.retention_days = retention_days
        self.stripe_client = stripe_client
        self.stripe_live = stripe_live  # the mode of the client's key
        self.notifier = notifier
        # Where a thin notification's fetches go when no client of the event's mode is set.
        self.bases: BaseAddresses | None = {"api": api_base} if api_base else None

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
        header = check_envelope(data, None)
        # A test key cannot see live objects, nor the reverse: a 404 would mean nothing.
        client = self.stripe_client if self.stripe_live == header.livemode else None
        event = unwrap(data, client or stripe.StripeClient("", base_addresses=self.bases))
        self.store.record_received(header.id, header.type, header.created, utc_now(), body)
        previous = self.store.outcomes(header.id)
        results: dict[str, Outcome] = {}
        errors: dict[str, str] = {}
        busy: list[str] = []
        for handler in router.handlers_for(header.type):
            before = previous.get(handler.name)
            try:
                outcome = self._run(handler, header, event, client, before, lambda_context)
            except (IdempotencyAlreadyInProgressError, RetryLater) as wait:
                log.warning("%s must wait for %s, retry later: %s", handler.name, header.id, wait)
                busy.append(handler.name)
                continue
            results[handler.name] = outcome
            if outcome is before:
                continue
            if outcome.status == "error":
                errors[handler.name] = f"{outcome.error_type}: {outcome.error}"
            self.store.record_outcome(header.id, handler.name, outcome)
        if errors:
            raise HandlerFailed(header.id, errors)
        if busy:
            raise HandlerBusy(f"event {header.id}: still running elsewhere: {', '.join(busy)}")
        return results

    def _run(
        self,
        handler: Handler,
        header: EventHeader,
        event: Any,
        client: stripe.StripeClient | None,
        before: Outcome | None,
        lambda_context: Any,
    ) -> Outcome:
        """The new outcome, or `before` itself when the handler had already completed.

        `event` is what the handler receives: a stripe.Event, or a thin EventNotification.
        """
        ran = False
        lambda_context = lambda_context or LocalLambdaContext()

        def run() -> dict[str, Any]:
            nonlocal ran
            ran = True
            logger = logging.getLogger(f"stripe_events.{handler.name}")
            # Lambda ends this run by its deadline: a claim it takes is free after that.
            lease = lambda_context.get_remaining_time_in_millis() / 1000 + CLOCK_SKEW_SECONDS
            stripe_client = bound_client(client, event)
            context = Context(
                self.store, logger, handler.name, stripe_client, self.notifier, header.id, lease
            )
            handler.func(event, context)
            return {"status": "ok"}

        attempts = 1 if before is None else before.attempts + 1
        fields = {"event_id": header.id, "event_type": header.type, "handler": handler.name}
        started = time.perf_counter()
        try:
            run_once(
                self.idempotency,
                {"event": header.id, "handler": handler.name},
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
                header.type,
                header.id,
                extra={**fields, "outcome": "error", "attempts": attempts},
            )
            observability.count("HandlerError", handler=handler.name)
            return Outcome("error", attempts, utc_now(), type(error).__name__, str(error))
        if not ran:
            log.info(
                "skip %s for %s %s: already done",
                handler.name,
                header.type,
                header.id,
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
            header.type,
            header.id,
            extra={**fields, "outcome": "ok", "attempts": attempts, "duration_ms": duration_ms},
        )
        observability.count("HandlerOk", handler=handler.name)
        observability.milliseconds("HandlerDuration", duration_ms, handler=handler.name)
        return Outcome("ok", attempts, utc_now())


def bound_client(client: stripe.StripeClient | None, event: Any) -> stripe.StripeClient | None:
    """The client for a handler: for a thin event, bound to its context (the connected
    account it happened in), as the notification's own fetches are."""
    context = getattr(event, "context", None) if isinstance(event, EventNotification) else None
    return client.with_stripe_context(context) if client is not None and context else client
