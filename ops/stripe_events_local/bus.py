"""The bus of stage `local`: each entry goes to the app's own `on_cw_event` functions whose
pattern matches, in process, as EventBridge would deliver it in AWS."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from stripe_events._bus import Publisher
from stripe_events._dispatch import LocalLambdaContext
from stripe_events._envelope import Entry
from stripe_events._errors import HandlerBusy, PublishFailed
from stripe_events._pattern import matches

if TYPE_CHECKING:
    from chalice.app import Chalice

log = logging.getLogger("stripe_events.bus")

# How the local bus retries a function whose handler must wait for another delivery.
BUSY_WAITS_SECONDS = (0.2, 0.5, 1.0, 2.0)


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
