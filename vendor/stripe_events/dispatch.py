"""Runs a resource module's handlers for one event: once each, with every outcome recorded.

A function's run for an event first claims it (`Store.claim` on `runs`, keyed by the
event and the router), with a lease that ends when its Lambda would time out, and
releases it when done. While one run holds it, another delivery of the same event is
busy (Lambda retries it later). Holding the claim, the run reads the outcomes the
ledger has for the event and runs each handler that has not succeeded, recording its
outcome as it goes. So each handler costs one write, its outcome, which is also what
makes a later delivery, retry or replay skip it; the event costs three (received,
claim, release). A run that dies leaves its claim until the lease ends, and the
handlers it had not finished run in the next one.

This is what Powertools' idempotency utility did per handler, with an in-progress
record, a completion record and our outcome: three writes per handler, all idempotency
records in one DynamoDB partition, and its import in every cold start. A test checks
that both answer the same for the same deliveries.
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
from stripe._base_address import BaseAddresses
from stripe.v2.core import EventNotification

import stripe_events.observability as observability
from stripe_events.context import Context
from stripe_events.envelope import EventHeader, check_envelope, unwrap
from stripe_events.errors import HandlerBusy, HandlerFailed, RetryLater
from stripe_events.ledger import Outcome, utc_now
from stripe_events.notifier import Notifier
from stripe_events.payloads import PAYLOAD_KEY, PayloadStore, restore
from stripe_events.router import Handler, Router
from stripe_events.stores import Claim, Store

log = logging.getLogger("stripe_events.dispatch")

# The claims of runs in progress: `<event id>:<router>`, deleted when the run ends.
RUNS = "runs"
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
    ) -> None:
        self._api_key = api_key
        self.bases: BaseAddresses | None = {"api": api_base} if api_base else None
        self.setting = setting  # where the key comes from, as messages name it

    @cached_property
    def _client(self) -> tuple[stripe.StripeClient | None, bool]:
        key = self._api_key()
        client = stripe.StripeClient(key, base_addresses=self.bases) if key else None
        return client, "_live_" in key

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
        """Run every handler of `router` that matches the event's type, once per event id.

        A handler that completed for this event id is not run again, whether the event
        comes again from Stripe, EventBridge, a Lambda retry or a replay. Every handler
        runs even when an earlier one fails; then HandlerFailed is raised. HandlerBusy
        means another run has the event in hand: try again later.
        """
        data = json.loads(detail) if isinstance(detail, str) else detail
        # The ledger keeps the detail as delivered: for an oversized event, the reference.
        body = detail if isinstance(detail, str) else json.dumps(detail)
        if PAYLOAD_KEY in data:
            data = restore(data, self.payloads())
        header = check_envelope(data, None)
        api = self.stripe_api
        if header.thin:  # its fetches go through the client it is made with
            client = api.for_mode(header.livemode)
            event = unwrap(data, client or stripe.StripeClient("", base_addresses=api.bases))
        else:
            event = unwrap(data, stripe.StripeClient(""))  # a snapshot event calls nothing
        self.store.record_received(header.id, header.type, header.created, utc_now(), body)
        handlers = router.handlers_for(header.type)
        if not handlers:
            return {}
        lambda_context = lambda_context or LocalLambdaContext()
        # Lambda ends this run by its deadline: its claims are free after that.
        lease = lambda_context.get_remaining_time_in_millis() / 1000 + CLOCK_SKEW_SECONDS
        # Lambda's retries of one invocation keep its request id: a retry after a crash
        # takes the claim back at once; another delivery waits for the lease.
        owner = str(getattr(lambda_context, "aws_request_id", "") or uuid.uuid4().hex)
        run = f"{header.id}:{router.name}"
        if self.store.claim(RUNS, run, owner, lease) is not Claim.TAKEN:
            raise HandlerBusy(f"event {header.id}: {router.name} is running it elsewhere")
        try:
            results = self._run_all(handlers, header, event, lease)
        except Exception:
            self.store.release_claim(RUNS, run, owner)
            raise
        # Not on SystemExit or KeyboardInterrupt: like a Lambda that is killed, the run
        # keeps its claim until the lease ends.
        self.store.release_claim(RUNS, run, owner)
        return results

    def _run_all(
        self,
        handlers: list[Handler],
        header: EventHeader,
        event: Any,
        lease: float,
    ) -> dict[str, Outcome]:
        # Read under the claim: what every run before this one recorded.
        previous = self.store.outcomes(header.id)
        results: dict[str, Outcome] = {}
        errors: dict[str, str] = {}
        busy: list[str] = []
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
            try:
                outcome = self._run(handler, header, event, before, lease)
            except RetryLater as wait:
                log.warning("%s must wait for %s, retry later: %s", handler.name, header.id, wait)
                busy.append(handler.name)
                continue
            results[handler.name] = outcome
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
        before: Outcome | None,
        lease: float,
    ) -> Outcome:
        """Run one handler; its outcome. RetryLater goes on (the handler is busy).

        `event` is what the handler receives: a stripe.Event, or a thin EventNotification.
        """
        attempts = 1 if before is None else before.attempts + 1
        fields = {"event_id": header.id, "event_type": header.type, "handler": handler.name}
        logger = logging.getLogger(f"stripe_events.{handler.name}")
        api = self.stripe_api
        context = Context(
            self.store,
            logger,
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
            log.exception(
                "%s failed for %s %s",
                handler.name,
                header.type,
                header.id,
                extra={**fields, "outcome": "error", "attempts": attempts},
            )
            observability.count("HandlerError", handler=handler.name)
            return Outcome("error", attempts, utc_now(), type(error).__name__, str(error))
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
