"""Publishing: EventBridgePublisher on AWS; stage `local`'s in-process bus is in
stripe_events_local.bus."""

from __future__ import annotations

import logging
import random
import time
from abc import ABC, abstractmethod
from collections.abc import Callable

from stripe_events._envelope import Entry, EventHeader
from stripe_events._errors import PublishFailed
from stripe_events._ledger import utc_now
from stripe_events._payloads import PayloadStore, entry_size, shrink
from stripe_events._stores import Store

log = logging.getLogger("stripe_events.bus")

# Stripe waits about 10 s for an answer; stay well inside that before answering 503.
RETRY_BUDGET_SECONDS = 2.0
FIRST_BACKOFF_SECONDS = 0.05


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

        import stripe_events._aws as aws

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
