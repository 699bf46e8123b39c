"""Publishing: one interface, two implementations.

EventBridgePublisher puts the entry on EventBridge. LocalBus (stage `local`) hands it
to the app's own `on_cw_event` functions whose pattern matches, in process, as
EventBridge would in AWS.
"""

from __future__ import annotations

import json
import logging
import random
import time
import uuid
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stripe_events.envelope import Entry, EventHeader
from stripe_events.errors import HandlerBusy, PublishFailed
from stripe_events.ledger import utc_now
from stripe_events.pattern import matches
from stripe_events.payloads import PayloadStore, entry_size, shrink
from stripe_events.stores import Store

if TYPE_CHECKING:
    from chalice.app import Chalice

log = logging.getLogger("stripe_events.bus")

# Stripe waits about 10 s for an answer; stay well inside that before answering 503.
RETRY_BUDGET_SECONDS = 2.0
FIRST_BACKOFF_SECONDS = 0.05
# How the local bus retries a function whose handler must wait for another delivery.
BUSY_WAITS_SECONDS = (0.2, 0.5, 1.0, 2.0)


class Publisher(ABC):
    @abstractmethod
    def publish(self, entry: Entry) -> None:
        """Publish one entry, or raise PublishFailed."""


def publish_event(
    entry: Entry,
    header: EventHeader,
    publisher: Publisher,
    store: Store,
    payloads: Callable[[], PayloadStore] | None,
    max_entry_bytes: int,
) -> None:
    """Put one event on the bus, as the webhook, replay and backfill all do; then record it.

    An entry too large for EventBridge carries a reference; the body goes to `payloads`.
    The ledger write is best effort: once the event is on the bus, failing the caller
    would only make Stripe send it again.
    """
    if payloads is not None and entry_size(entry) > max_entry_bytes:
        entry = shrink(entry, header, payloads(), max_entry_bytes)
    publisher.publish(entry)
    try:
        store.record_published(header.id, header.type, header.created, utc_now())
    except Exception:
        log.exception("published %s but could not record it in the ledger", header.id)


class EventBridgePublisher(Publisher):
    def __init__(
        self,
        region: str,
        budget_seconds: float = RETRY_BUDGET_SECONDS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        from botocore.config import Config

        import stripe_events.aws as aws

        # Our own loop retries within the budget, so botocore must not retry on its own.
        config = Config(
            retries={"total_max_attempts": 1},
            connect_timeout=0.5,
            read_timeout=1.0,
        )
        self.client = aws.client("events", region, config)
        self.budget_seconds = budget_seconds
        self.sleep = sleep

    def _put_once(self, entry: Entry) -> str | None:
        """Put the entry; return None on success, or why it failed."""
        try:
            response = self.client.put_events(Entries=[entry])
        except Exception as error:  # any client, network or throttling error is retried
            return f"{type(error).__name__}: {error}"
        if response.get("FailedEntryCount", 0) == 0:
            return None
        result = (response.get("Entries") or [{}])[0]
        return f"{result.get('ErrorCode', 'FailedEntry')}: {result.get('ErrorMessage', '')}"

    def publish(self, entry: Entry) -> None:
        # Time spent is counted as the calls' own time plus the waits, so that the budget
        # holds with whatever `sleep` is given. A last call can still take up to its
        # timeouts (1.5 s) past the budget, well inside the ~10 s Stripe waits.
        spent = 0.0
        backoff = FIRST_BACKOFF_SECONDS
        attempt = 0
        while True:
            attempt += 1
            started = time.monotonic()
            failure = self._put_once(entry)
            spent += time.monotonic() - started
            if failure is None:
                return
            delay = backoff * (1 + random.random())  # jitter spreads out concurrent retries
            if spent + delay > self.budget_seconds:
                log.error("PutEvents failed %d time(s), giving up: %s", attempt, failure)
                raise PublishFailed(f"EventBridge did not accept the event: {failure}")
            log.warning("PutEvents attempt %d failed, retrying: %s", attempt, failure)
            self.sleep(delay)
            spent += delay
            backoff *= 2


class LocalLambdaContext:
    """Outside Lambda (local bus, CLI, tests): a run's lease ends as a Lambda's would."""

    def __init__(self, timeout_seconds: float = 60.0) -> None:
        self.deadline = time.monotonic() + timeout_seconds
        self.aws_request_id = uuid.uuid4().hex

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


class LocalBus(Publisher):
    """Delivers to the app's `on_cw_event` functions, through the same patterns."""

    def __init__(
        self,
        app: Callable[[], Chalice],
        region: str,
        busy_waits: tuple[float, ...] = BUSY_WAITS_SECONDS,
    ) -> None:
        self.app = app
        self.region = region
        self.busy_waits = busy_waits

    def publish(self, entry: Entry) -> None:
        from chalice.app import CloudWatchEventConfig

        event = self.to_cloudwatch_event(entry)
        app = self.app()
        for source in app.event_sources:
            if isinstance(source, CloudWatchEventConfig) and matches(source.event_pattern, event):
                self._deliver(app, source.name, event)

    def _deliver(self, app: Chalice, function: str, event: dict[str, Any]) -> None:
        # One context for the delivery and its retries, as Lambda keeps the request id of
        # an invocation it retries: the retry takes back the run's claim at once.
        context = LocalLambdaContext()
        for wait in (*self.busy_waits, None):
            try:
                app.handler_map[function](event, context)
                return
            except HandlerBusy as busy:
                # Another delivery (a thread of this server, or a server that was killed
                # mid-run) holds what the handler needs; Lambda would retry later, so wait
                # for it here, a few times.
                if wait is None:
                    # Not published: the webhook answers 503 and Stripe delivers it again,
                    # rather than a 2xx for an event that nothing has handled.
                    raise PublishFailed(
                        f"function {function} is still busy with {event['detail-type']} "
                        f"{event['detail'].get('id')}: {busy}"
                    ) from None
                time.sleep(wait)
            except Exception:
                # As in AWS, a function's failure does not change the webhook's answer;
                # the dispatcher has already recorded it in the ledger.
                log.exception("function %s failed for %s", function, event["detail-type"])
                return

    def to_cloudwatch_event(self, entry: Entry) -> dict[str, Any]:
        """The event as EventBridge would deliver it to a Lambda function."""
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": entry["DetailType"],
            "source": entry["Source"],
            "account": "000000000000",
            "time": entry["Time"].strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self.region,
            "resources": [],
            "detail": json.loads(entry["Detail"]),
        }
