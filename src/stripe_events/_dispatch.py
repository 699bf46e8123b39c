"""Runs a resource module's handlers for one event: once each, with every outcome recorded.

A run first claims the event for its router (`Store.claim_run`), with a lease that ends
when its Lambda would time out. Under the claim it records the event as received, reads
the outcomes the ledger has for it and runs each handler that has not succeeded, recording
each outcome as it goes: that outcome is what makes a later delivery, retry or replay skip
the handler. See "Exactly once" in the docs.
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from functools import cached_property
from typing import Any

import stripe
from stripe.v2.core import EventNotification

import stripe_events._observability as observability
from stripe_events._context import Context
from stripe_events._envelope import MAX_NESTING, EventHeader, check_envelope, nests_too_deep, unwrap
from stripe_events._errors import HandlerBusy, HandlerFailed, Rejected, RetryLater, UnreadableEvent
from stripe_events._ledger import Outcome, utc_now
from stripe_events._notifier import Notifier
from stripe_events._payloads import PAYLOAD_KEY, PayloadStore, restore
from stripe_events._router import Handler, Router
from stripe_events._settings import DEFAULT_NETWORK_RETRIES
from stripe_events._stores import Claim, Store

log = logging.getLogger("stripe_events.dispatch")

# Clocks of two Lambda containers may differ a little; a lease outlasts its run by this.
CLOCK_SKEW_SECONDS = 1.0


class LocalLambdaContext:
    """Outside Lambda (local bus, CLI, tests): a run's lease ends as a Lambda's would."""

    def __init__(self, timeout_seconds: float = 60.0) -> None:
        self.deadline = time.monotonic() + timeout_seconds
        self.aws_request_id = uuid.uuid4().hex

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class StripeApi:
    """The stage's Stripe client, made on first use: only the functions whose handlers call
    Stripe (or receive thin events) read the API key, from SSM in a deployed stage."""

    def __init__(
        self,
        api_key: Callable[[], str] = str,
        api_base: str = "",
        setting: str = "STRIPE_API_KEY",
        max_network_retries: int = DEFAULT_NETWORK_RETRIES,
    ) -> None:
        self._api_key = api_key
        self.api_base = api_base  # another Stripe-compatible server, for tests
        self.setting = setting  # where the key comes from, as messages name it
        self.max_network_retries = max_network_retries

    def _new(self, key: str) -> stripe.StripeClient:
        # The SDK retries connection errors, 409 and 5xx, and a 429 only when Stripe says
        # so (Stripe-Should-Retry), with backoff; without a count it never retries.
        return stripe.StripeClient(
            key,
            base_addresses={"api": self.api_base} if self.api_base else None,
            max_network_retries=self.max_network_retries,
        )

    @cached_property
    def _client(self) -> tuple[stripe.StripeClient | None, bool]:
        key = self._api_key()
        return (self._new(key) if key else None), "_live_" in key

    def keyless(self) -> stripe.StripeClient:
        """What a snapshot event is made with (it calls nothing), and a thin one when the
        stage has no key of its mode (its fetches then fail with Stripe's own message)."""
        return self._new("")

    def for_mode(self, livemode: bool) -> stripe.StripeClient | None:
        """The client, if its key is of the event's mode: a test key cannot see live
        objects, nor the reverse, and a 404 would mean nothing."""
        client, live = self._client
        return client if live == livemode else None


class Dispatcher:
    def __init__(
        self,
        store: Store,
        payloads: Callable[[], PayloadStore],
        *,
        stripe_api: StripeApi | None = None,
        notifier: Callable[[], Notifier] | None = None,
    ) -> None:
        self.store = store
        self.payloads = payloads
        self.stripe_api = stripe_api or StripeApi()
        self.notifier = notifier

    def dispatch(
        self, router: Router, detail: dict[str, Any] | str, lambda_context: Any = None
    ) -> dict[str, Outcome]:
        """Run every handler of `router` that matches the event's type and has not
        succeeded for this event id. Every handler runs even when an earlier one fails;
        then HandlerFailed is raised. HandlerBusy: another run has the event in hand."""
        data = json.loads(detail) if isinstance(detail, str) else detail
        # The ledger keeps the detail as delivered: for an oversized event, the reference.
        body = detail if isinstance(detail, str) else json.dumps(detail)
        if PAYLOAD_KEY in data:
            data = restore(data, self.payloads())
        header = self._header(router, data)
        handlers = router.handlers_for(header.type)
        if not handlers:
            self._record_received(header, body)
            return {}
        lambda_context = lambda_context or LocalLambdaContext()
        # Lambda ends this run by its deadline: its claims are free after that.
        lease = lambda_context.get_remaining_time_in_millis() / 1000 + CLOCK_SKEW_SECONDS
        # Lambda's retries of one invocation keep its request id: a retry after a crash
        # takes the claim back at once; another delivery waits for the lease.
        owner = str(getattr(lambda_context, "aws_request_id", "") or uuid.uuid4().hex)
        names = [h.name for h in handlers]
        if self.store.claim_run(header.id, router.name, owner, lease, names) is not Claim.TAKEN:
            raise HandlerBusy(f"event {header.id}: {router.name} is running it elsewhere")
        try:
            # Under the claim: a run that dies from here on leaves it, and `failures` can
            # list the event.
            self._record_received(header, body)
            results, errors, busy = self._run_all(handlers, header, data, lease)
        except Exception:
            self.store.release_run(header.id, router.name, owner)
            raise
        # Not on SystemExit or KeyboardInterrupt: like a killed Lambda, the run keeps its
        # claim until the lease ends. Nor while a handler must wait: the claim says what is
        # left, for Lambda's retry (which takes it back) or, should none come, `failures`.
        if not busy:
            self.store.release_run(header.id, router.name, owner)
        if errors:
            raise HandlerFailed(header.id, errors)
        if busy:
            raise HandlerBusy(f"event {header.id}: still running elsewhere: {', '.join(busy)}")
        return results

    def _record_received(self, header: EventHeader, body: str) -> None:
        self.store.record_received(header.id, header.type, header.created, utc_now(), body)

    def _header(self, router: Router, data: Any) -> EventHeader:
        try:
            return check_envelope(data, None)
        except Rejected as rejected:
            # One the webhook would have refused comes from elsewhere (Stripe's own
            # destination, another publisher). With no id or type to record it under, it
            # is logged, counted and raised, and ends in the dead-letter queue.
            event_type = data.get("type") if isinstance(data, dict) else None
            log.error(
                "%s cannot read an event: %s",
                router.name,
                rejected.message,
                extra={"outcome": "unreadable", "reason": rejected.code},
            )
            for handler in router.handlers_for(str(event_type)) or router.handlers:
                observability.count("HandlerError", handler=handler.name)
            raise UnreadableEvent(f"{router.name}: {rejected.message}") from None

    def _event(self, header: EventHeader, data: dict[str, Any]) -> Any:
        """A stripe.Event, or a thin event's EventNotification; else UnreadableEvent."""
        if nests_too_deep(data):
            raise UnreadableEvent(
                f"the event nests objects more than {MAX_NESTING} levels deep (MAX_NESTING)"
            )
        api = self.stripe_api
        # A thin event's fetches go through the client it is made with; a snapshot event
        # calls nothing.
        client = api.for_mode(header.livemode) if header.thin else None
        try:
            return unwrap(data, client or api.keyless())
        except Exception as error:  # whatever the SDK raises, recursion included
            raise UnreadableEvent(
                f"the SDK cannot make an event of it: {type(error).__name__}: {error}"
            ) from None

    def _run_all(
        self, handlers: list[Handler], header: EventHeader, data: dict[str, Any], lease: float
    ) -> tuple[dict[str, Outcome], dict[str, str], list[str]]:
        """The handlers' outcomes, the errors among them, and those that must wait."""
        # Read under the claim: what every run before this one recorded.
        previous = self.store.outcomes(header.id)
        results: dict[str, Outcome] = {}
        errors: dict[str, str] = {}
        busy: list[str] = []
        event: Any = None
        for handler in handlers:
            before = previous.get(handler.name)
            if before is not None and before.status == "ok":
                log.info(
                    "skip %s for %s %s: already done",
                    handler.name,
                    header.type,
                    header.id,
                    extra={"event_id": header.id, "handler": handler.name, "outcome": "skipped"},
                )
                results[handler.name] = before
                continue
            attempts = 1 if before is None else before.attempts + 1
            try:
                # Made once, and only when a handler needs it.
                event = self._event(header, data) if event is None else event
                outcome = self._run(handler, header, event, attempts, lease)
            except RetryLater as wait:
                log.warning("%s must wait for %s, retry later: %s", handler.name, header.id, wait)
                busy.append(handler.name)
                continue
            except UnreadableEvent as unreadable:
                outcome = self._failed(handler, header, attempts, unreadable)
            results[handler.name] = outcome
            if outcome.status == "error":
                errors[handler.name] = f"{outcome.error_type}: {outcome.error}"
            self.store.record_outcome(header.id, handler.name, outcome)
        return results, errors, busy

    def _run(
        self,
        handler: Handler,
        header: EventHeader,
        event: Any,
        attempts: int,
        lease: float,
    ) -> Outcome:
        """Run one handler; its outcome. RetryLater goes on (the handler is busy)."""
        api = self.stripe_api
        context = Context(
            self.store,
            logging.getLogger(f"stripe_events.{handler.name}"),
            handler.name,
            lambda: bound_client(api.for_mode(header.livemode), event),
            self.notifier,
            header.id,
            lease,
            api.setting,
        )
        started = time.perf_counter()
        try:
            handler.func(event, context)
        except RetryLater:
            raise
        except Exception as error:
            return self._failed(handler, header, attempts, error)
        duration_ms = (time.perf_counter() - started) * 1000
        log.info(
            "%s ok for %s %s",
            handler.name,
            header.type,
            header.id,
            extra={**_fields(header, handler, "ok", attempts), "duration_ms": duration_ms},
        )
        observability.count("HandlerOk", handler=handler.name)
        observability.milliseconds("HandlerDuration", duration_ms, handler=handler.name)
        return Outcome("ok", attempts, utc_now())

    def _failed(
        self, handler: Handler, header: EventHeader, attempts: int, error: Exception
    ) -> Outcome:
        log.error(
            "%s failed for %s %s",
            handler.name,
            header.type,
            header.id,
            # The traceback, unless the handler never ran: then the reason says it all.
            exc_info=not isinstance(error, UnreadableEvent),
            extra=_fields(header, handler, "error", attempts),
        )
        observability.count("HandlerError", handler=handler.name)
        return Outcome("error", attempts, utc_now(), type(error).__name__, str(error))


def _fields(header: EventHeader, handler: Handler, outcome: str, attempts: int) -> dict[str, Any]:
    return {
        "event_id": header.id,
        "event_type": header.type,
        "handler": handler.name,
        "outcome": outcome,
        "attempts": attempts,
    }


def bound_client(client: stripe.StripeClient | None, event: Any) -> stripe.StripeClient | None:
    """The client for a handler: for a thin event, bound to its context (the connected
    account it happened in), as the notification's own fetches are."""
    context = getattr(event, "context", None) if isinstance(event, EventNotification) else None
    return client.with_stripe_context(context) if client is not None and context else client
