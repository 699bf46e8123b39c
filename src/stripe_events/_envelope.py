"""Stripe event <-> EventBridge entry: the envelope checks, the entry, and unwrapping.
The webhook parses only what its checks need, never a whole `stripe.Event` (0.5 ms);
the entry's Detail is the body as received, as Stripe's own destination sends it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stripe_events._errors import Rejected

if TYPE_CHECKING:
    import stripe

    from stripe_events._settings import Settings

Entry = dict[str, Any]

# What Stripe sends; anything else could not be stored (a lone surrogate), or would be
# refused by EventBridge on every retry (a DetailType over 128 characters).
EVENT_ID = re.compile(r"evt_[A-Za-z0-9_]{1,250}")
EVENT_TYPE = re.compile(r"[a-z0-9_]+(?:\.[a-z0-9_]+)+")
# A thin type: its API version, then names, some with a bracketed part, as
# `v2.core.account[configuration.customer].updated`.
THIN_EVENT_TYPE = re.compile(r"v\d+(?:\.[a-z0-9_]+(?:\[[a-z0-9_.]+\])?)+")
MAX_TYPE_CHARS = 128
MAX_CREATED = 253_402_300_799  # 9999-12-31T23:59:59Z, the last second datetime can hold
# RFC 3339's date-time: the date, "T", the time, fractions optional, and an offset (Z or ±hh:mm).
RFC3339 = re.compile(
    r"\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(?:\.\d{1,9})?(?:[Zz]|[+-]\d{2}:\d{2})"
)
THIN_CODE = "invalid_thin_event"
# How deep objects and arrays may nest in an event, for the webhook and the functions
# alike. Stripe's deepest events (expanded invoice lines) nest about a dozen levels;
# stripe.Event.construct_from exceeds Python's recursion limit at about 300.
MAX_NESTING = 64


@dataclass(frozen=True)
class EventHeader:
    """What the webhook needs to know about an event before publishing it."""

    id: str
    type: str
    created: int  # seconds; a thin notification's RFC 3339 time, rounded down
    livemode: bool
    thin: bool = False  # a thin event notification ("v2.core.event"), not a snapshot


SNAPSHOT_OBJECT = "event"
THIN_OBJECT = "v2.core.event"


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
    # Counting brackets is cheap, and bounds the depth: most events need no walk at all.
    if text.count("{") + text.count("[") > MAX_NESTING and nests_too_deep(data):
        raise _bad(
            "too_deeply_nested",
            f"The body nests objects and arrays more than {MAX_NESTING} levels deep; "
            "no Stripe event does.",
        )
    return check_envelope(data, livemode)


def nests_too_deep(value: Any) -> bool:
    """Whether `value` has containers more than MAX_NESTING levels deep (the value itself
    is the first). Level by level, not recursively: recursion is what such values break."""
    level = [value] if isinstance(value, dict | list) else []
    for _ in range(MAX_NESTING):
        level = [
            child
            for container in level
            for child in (container.values() if isinstance(container, dict) else container)
            if isinstance(child, dict | list)
        ]
        if not level:
            return False
    return True


def check_envelope(data: Any, livemode: bool | None) -> EventHeader:
    """The header of a snapshot event or a thin event notification; Rejected if it is neither."""
    if not isinstance(data, dict):
        raise _bad("not_an_event", "The body is JSON but not an object; a Stripe event is.")
    kind = data.get("object")
    if kind == THIN_OBJECT:
        return _thin_header(data, livemode)
    if kind != SNAPSHOT_OBJECT:
        raise _bad(
            "not_an_event",
            'The body is not a Stripe event: "object" is neither "event" (a snapshot event) '
            'nor "v2.core.event" (a thin event notification).',
        )
    event_id, event_type = _id_and_type(data, "not_an_event", "event")
    created = data.get("created")
    if not isinstance(created, int) or isinstance(created, bool) or not 0 <= created <= MAX_CREATED:
        raise _bad("not_an_event", 'The event has no "created" timestamp (whole seconds).')
    return EventHeader(event_id, event_type, created, _livemode(data, livemode))


def _id_and_type(data: dict[str, Any], code: str, what: str) -> tuple[str, str]:
    event_id = data.get("id")
    if not isinstance(event_id, str) or not EVENT_ID.fullmatch(event_id):
        raise _bad(code, f'The {what} has no "id" like "evt_" followed by letters.')
    event_type = data.get("type")
    pattern = THIN_EVENT_TYPE if code == THIN_CODE else EVENT_TYPE
    if (
        not isinstance(event_type, str)
        or len(event_type) > MAX_TYPE_CHARS
        or not pattern.fullmatch(event_type)
    ):
        example = "v1.billing.meter.no_meter_found" if code == THIN_CODE else "invoice.paid"
        raise _bad(code, f'The {what} has no "type" like "{example}".')
    return event_id, event_type


def _thin_header(data: dict[str, Any], livemode: bool | None) -> EventHeader:
    """A thin notification: an id, a type, an RFC 3339 `created`; optionally the related
    object (id, type, url) and the context (the connected account it happened in)."""
    what = "thin event notification"
    event_id, event_type = _id_and_type(data, THIN_CODE, what)
    created = _rfc3339_seconds(data.get("created"))
    if created is None:
        raise _bad(
            THIN_CODE,
            f'The {what} has no "created" time in RFC 3339, like "2026-01-31T12:00:00.000Z".',
        )
    related = data.get("related_object")
    if related is not None and not (
        isinstance(related, dict)
        and all(isinstance(related.get(field), str) for field in ("id", "type", "url"))
    ):
        raise _bad(THIN_CODE, f'The {what}\'s "related_object" is not an id, a type and a url.')
    context = data.get("context")
    if context is not None and not (isinstance(context, str) and context.isprintable()):
        raise _bad(THIN_CODE, f'The {what}\'s "context" is not an account id.')
    return EventHeader(event_id, event_type, created, _livemode(data, livemode), thin=True)


def _rfc3339_seconds(value: Any) -> int | None:
    """The whole seconds of an RFC 3339 time with its offset, or None for anything else."""
    if not isinstance(value, str) or len(value) > 40 or not RFC3339.fullmatch(value):
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    # Whole seconds first: a float timestamp of the last second's fractions rounds up past
    # MAX_CREATED, and int() of a time just before 1970 rounds up to 0.
    seconds = int(moment.replace(microsecond=0).timestamp())
    return seconds if 0 <= seconds <= MAX_CREATED else None


def _livemode(data: dict[str, Any], livemode: bool | None) -> bool:
    event_livemode = data.get("livemode")
    if livemode is not None and event_livemode is not livemode:
        expected = "live" if livemode else "test"
        raise _bad(
            "livemode_mismatch",
            f"This endpoint accepts {expected}-mode events only; the event has "
            f"livemode={json.dumps(event_livemode)}.",
        )
    return event_livemode is True


def to_entry(text: str, header: EventHeader, settings: Settings) -> Entry:
    """One PutEvents entry: the raw body as Detail, the event type as DetailType."""
    return {
        "Source": settings.source,
        "DetailType": header.type,
        "Detail": text,
        "Time": datetime.fromtimestamp(header.created, UTC),
        "EventBusName": settings.bus,
    }


def unwrap(data: dict[str, Any], client: stripe.StripeClient) -> Any:
    """What a handler receives for an EventBridge event's detail (ours or Stripe's
    destination): a typed stripe.Event, or a thin event's typed EventNotification, which
    calls Stripe through `client` bound to the event's context (its connected account)."""
    if data.get("object") == THIN_OBJECT:
        return client.parse_event_notification_without_verification(json.dumps(data))
    import stripe

    return stripe.Event.construct_from(data, stripe.api_key)
