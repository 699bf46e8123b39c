"""Stripe event <-> EventBridge entry: the envelope checks, the entry, and unwrapping.

The ingestion path parses only what the checks need and never builds a full
`stripe.Event` (that costs about 0.5 ms per event). The entry's Detail is the raw
body, exactly as received, so handlers see the same event whether it came through
our webhook or through Stripe's own EventBridge destination.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stripe_events.errors import Rejected

if TYPE_CHECKING:
    import stripe

    from stripe_events.settings import Settings

Entry = dict[str, Any]

# What Stripe sends; anything else could not be stored (a lone surrogate), or would be
# refused by EventBridge on every retry (a DetailType over 128 characters).
EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")
EVENT_TYPE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)+")
MAX_TYPE_CHARS = 128
MAX_CREATED = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime can hold


@dataclass(frozen=True)
class EventHeader:
    """What the webhook needs to know about an event before publishing it."""

    id: str
    type: str
    created: int
    livemode: bool


def _bad(code: str, message: str) -> Rejected:
    return Rejected(400, code, message)


def decode_body(body: bytes) -> str:
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise _bad(
            "invalid_encoding", f"The body is not UTF-8 (bad byte at offset {error.start})."
        ) from None


def parse_event(text: str, livemode: bool | None) -> EventHeader:
    """Check that `text` is a Stripe event envelope and return its header fields."""
    try:
        data = json.loads(text)
    except RecursionError:
        raise _bad("invalid_json", "The body is not JSON: it is nested too deeply.") from None
    except json.JSONDecodeError as error:
        message = f"The body is not JSON: {error.msg} at offset {error.pos}."
        raise _bad("invalid_json", message) from None
    except ValueError as error:  # e.g. an integer with more digits than Python converts
        raise _bad("invalid_json", f"The body is not usable JSON: {error}.") from None
    if not isinstance(data, dict):
        raise _bad("not_an_event", "The body is JSON but not an object; a Stripe event is.")
    if data.get("object") != "event":
        raise _bad("not_an_event", 'The body is not a Stripe event: "object" is not "event".')
    event_id = data.get("id")
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise _bad("not_an_event", 'The event has no "id" like "evt_" followed by letters.')
    event_type = data.get("type")
    if (
        not isinstance(event_type, str)
        or len(event_type) > MAX_TYPE_CHARS
        or not EVENT_TYPE.fullmatch(event_type)
    ):
        raise _bad("not_an_event", 'The event has no "type" like "invoice.paid".')
    created = data.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 <= created <= MAX_CREATED:
        raise _bad("not_an_event", 'The event has no "created" timestamp (whole seconds).')
    event_livemode = data.get("livemode")
    if livemode is not None and event_livemode is not livemode:
        expected = "live" if livemode else "test"
        raise _bad(
            "livemode_mismatch",
            f"This endpoint accepts {expected}-mode events only; the event has "
            f"livemode={json.dumps(event_livemode)}.",
        )
    return EventHeader(event_id, event_type, created, event_livemode is True)


def to_entry(text: str, header: EventHeader, settings: Settings) -> Entry:
    """One PutEvents entry: the raw body as Detail, the event type as DetailType."""
    return {
        "Source": settings.source,
        "DetailType": header.type,
        "Detail": text,
        "Time": datetime.fromtimestamp(header.created, UTC),
        "EventBusName": settings.bus,
    }


def unwrap(detail: dict[str, Any] | str) -> stripe.Event:
    """The typed event from an EventBridge event's detail (ours or Stripe's destination)."""
    import stripe

    data = json.loads(detail) if isinstance(detail, str) else detail
    return stripe.Event.construct_from(data, stripe.api_key)
