"""Every limit the webhook and the envelope enforce, at exactly the limit and one past it.

Tests far from a limit pass whether it is `>` or `>=`, or off by one; these do not.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stripe_events._bus import publish_event
from stripe_events._envelope import (
    MAX_CREATED,
    MAX_TYPE_CHARS,
    check_envelope,
    decode_body,
    parse_event,
    to_entry,
)
from stripe_events._errors import Rejected
from stripe_events._payloads import PAYLOAD_KEY, entry_size
from stripe_events._settings import Settings
from stripe_events._signature import MAX_HEADER_CHARS, MAX_TIMESTAMP_DIGITS, parse_header, verify
from stripe_events._webhook import ingest
from stripe_events_local.payloads import LocalPayloadStore
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import samples
from tests.helpers import RecordingPublisher

SECRET = "whsec_limits"
T = 1_767_225_600
TOLERANCE = 300


def signature(body: bytes, timestamp: int, secret: str = SECRET) -> str:
    mac = hmac.new(secret.encode(), b"%d." % timestamp + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


@contextmanager
def refused(code: str) -> Iterator[None]:
    with pytest.raises(Rejected) as info:
        yield
    assert info.value.code == code


# The signature header ---------------------------------------------------------------------


def padded(header: str, length: int) -> str:
    """The header, made exactly `length` characters long by an item Stripe may add later
    (unknown keys are ignored)."""
    filler = ",x="
    return header + filler + "a" * (length - len(header) - len(filler))


def test_a_header_of_exactly_the_most_characters_is_parsed_and_one_more_is_refused() -> None:
    header = signature(b"{}", T)
    at_limit = padded(header, MAX_HEADER_CHARS)
    assert len(at_limit) == MAX_HEADER_CHARS
    assert parse_header(at_limit)[0] == T
    with refused("malformed_signature"):
        parse_header(padded(header, MAX_HEADER_CHARS + 1))


def test_a_timestamp_of_exactly_the_most_digits_is_parsed_and_one_more_is_refused() -> None:
    longest = "9" * MAX_TIMESTAMP_DIGITS
    assert parse_header(f"t={longest},v1=ab")[0] == int(longest)
    with refused("malformed_signature"):
        parse_header(f"t={longest}9,v1=ab")


@pytest.mark.parametrize(
    ("now", "code"),
    [
        (T + TOLERANCE, ""),  # exactly as old as allowed
        (T + TOLERANCE + 1, "stale_timestamp"),
        (T + TOLERANCE + 0.001, "stale_timestamp"),  # a millisecond past is past
        (T - TOLERANCE, ""),  # exactly as far in the future as allowed
        (T - TOLERANCE - 1, "future_timestamp"),
        (T - TOLERANCE - 0.001, "future_timestamp"),
    ],
)
def test_the_tolerance_holds_at_its_bound_both_ways(now: float, code: str) -> None:
    body = b'{"id": "evt_1"}'
    header = signature(body, T)
    if not code:
        assert verify(body, header, [SECRET], TOLERANCE, now) == T
        return
    with refused(code):
        verify(body, header, [SECRET], TOLERANCE, now)


def test_a_body_of_exactly_the_most_bytes_is_taken_and_one_more_is_refused() -> None:
    event = samples.sample_event("customer.created", event_id="evt_limit")
    body = samples.encode(event)
    settings = Settings(stage="test", webhook_secrets=(SECRET,), max_body_bytes=len(body))
    header, _ = ingest(body, signature(body, T), settings, T, (SECRET,))
    assert header.id == "evt_limit"
    smaller = Settings(stage="test", webhook_secrets=(SECRET,), max_body_bytes=len(body) - 1)
    with pytest.raises(Rejected) as refused:
        ingest(body, signature(body, T), smaller, T, (SECRET,))
    assert (refused.value.status, refused.value.code) == (413, "payload_too_large")


# The envelope -----------------------------------------------------------------------------


def envelope(**changes: Any) -> dict[str, Any]:
    return {**samples.sample_event("invoice.paid", event_id="evt_limit", created=T), **changes}


def test_a_type_of_exactly_the_most_characters_is_taken_and_one_more_is_refused() -> None:
    longest = "a" * (MAX_TYPE_CHARS - 8) + ".updated"
    assert len(longest) == MAX_TYPE_CHARS
    assert check_envelope(envelope(type=longest), None).type == longest
    with refused("not_an_event"):
        check_envelope(envelope(type="a" + longest), None)


def test_a_thin_type_of_exactly_the_most_characters_is_taken_and_one_more_is_refused() -> None:
    thin = samples.sample_event("v1.billing.meter.no_meter_found")
    longest = "v1." + "a" * (MAX_TYPE_CHARS - 11) + ".updated"
    assert len(longest) == MAX_TYPE_CHARS
    assert check_envelope({**thin, "type": longest}, None).type == longest
    with refused("invalid_thin_event"):
        check_envelope({**thin, "type": longest.replace("v1.", "v1.a")}, None)


@pytest.mark.parametrize(
    ("created", "taken"),
    [(0, True), (-1, False), (MAX_CREATED, True), (MAX_CREATED + 1, False)],
)
def test_created_is_taken_from_zero_to_the_last_second_a_datetime_holds(
    created: int, taken: bool
) -> None:
    if taken:
        header = check_envelope(envelope(created=created), None)
        assert header.created == created
        # ...and it makes an entry: its time is what EventBridge gets.
        text = json.dumps(envelope(created=created))
        to_entry(text, parse_event(text, None), Settings(stage="test"))
        return
    with refused("not_an_event"):
        check_envelope(envelope(created=created), None)


def test_a_thin_notifications_errors_say_what_it_lacks() -> None:
    thin = samples.sample_event("v1.billing.meter.no_meter_found")
    with pytest.raises(Rejected) as no_id:
        check_envelope({**thin, "id": "x"}, None)
    assert no_id.value.message == (
        'The thin event notification has no "id" like "evt_" followed by letters.'
    )
    with pytest.raises(Rejected) as no_type:
        check_envelope({**thin, "type": "invoice.paid"}, None)
    assert no_type.value.message == (
        'The thin event notification has no "type" like "v1.billing.meter.no_meter_found".'
    )


def test_the_last_second_is_taken_in_a_thin_notifications_time_too() -> None:
    thin = samples.sample_event("v1.billing.meter.no_meter_found")
    last = check_envelope({**thin, "created": "9999-12-31T23:59:59.999999999Z"}, None)
    assert last.created == MAX_CREATED
    first = check_envelope({**thin, "created": "1970-01-01T00:00:00Z"}, None)
    assert first.created == 0
    for before in ("1969-12-31T23:59:59Z", "1969-12-31T23:59:59.5Z"):
        with refused("invalid_thin_event"):
            check_envelope({**thin, "created": before}, None)


@pytest.mark.parametrize(
    ("event_id", "taken"),
    [("evt_" + "a" * 250, True), ("evt_" + "a" * 251, False), ("evt_a", True), ("evt_", False)],
)
def test_an_id_is_evt_and_one_to_250_characters(event_id: str, taken: bool) -> None:
    if taken:
        assert check_envelope(envelope(id=event_id), None).id == event_id
        return
    with refused("not_an_event"):
        check_envelope(envelope(id=event_id), None)


# The entry --------------------------------------------------------------------------------


@pytest.mark.parametrize(("allowance", "inline"), [(0, True), (-1, False)])
def test_an_entry_of_exactly_the_most_bytes_is_published_whole_and_one_more_by_reference(
    tmp_path: Path, allowance: int, inline: bool
) -> None:
    event = envelope()
    text = json.dumps(event)
    header = parse_event(text, None)
    entry = to_entry(text, header, Settings(stage="test"))
    publisher = RecordingPublisher()
    payloads = LocalPayloadStore(tmp_path / "bodies")
    store = SqliteStore(tmp_path / "ledger.sqlite3")
    limit = entry_size(entry) + allowance
    publish_event(entry, header, publisher, store, lambda: payloads, limit)
    [published] = publisher.entries
    assert (PAYLOAD_KEY not in json.loads(published["Detail"])) is inline
    assert entry_size(published) <= limit


def test_a_body_that_is_not_json_says_where_and_why() -> None:
    with pytest.raises(Rejected) as not_utf8:
        decode_body(b'{"a": "\xff"}')
    assert not_utf8.value.message == "The body is not UTF-8 (bad byte at offset 7)."
    with pytest.raises(Rejected) as nested:
        parse_event("[" * 100_000, None)
    assert nested.value.message == "The body is not JSON: it is nested too deeply."
    with pytest.raises(Rejected) as cut:
        parse_event('{"a": ', None)
    assert cut.value.message == "The body is not JSON: Expecting value at offset 6."
    with pytest.raises(Rejected) as huge:
        parse_event('{"a": ' + "1" * 5000 + "}", None)
    assert huge.value.message.startswith("The body is not usable JSON: Exceeds the limit")
    assert {e.value.code for e in (nested, cut, huge)} == {"invalid_json"}
    assert not_utf8.value.code == "invalid_encoding"


@pytest.mark.parametrize(
    ("data", "livemode", "code", "message"),
    [
        ([], None, "not_an_event", "The body is JSON but not an object; a Stripe event is."),
        (
            {"object": "list"},
            None,
            "not_an_event",
            'The body is not a Stripe event: "object" is neither "event" (a snapshot event) '
            'nor "v2.core.event" (a thin event notification).',
        ),
        (
            {"id": "x"},
            None,
            "not_an_event",
            'The event has no "id" like "evt_" followed by letters.',
        ),
        ({"type": "X"}, None, "not_an_event", 'The event has no "type" like "invoice.paid".'),
        (
            {"created": "x"},
            None,
            "not_an_event",
            'The event has no "created" timestamp (whole seconds).',
        ),
        (
            {"livemode": False},
            True,
            "livemode_mismatch",
            "This endpoint accepts live-mode events only; the event has livemode=false.",
        ),
        (
            {"livemode": "yes"},
            False,
            "livemode_mismatch",
            'This endpoint accepts test-mode events only; the event has livemode="yes".',
        ),
    ],
)
def test_each_envelope_refusal_says_what_the_event_lacks(
    data: Any, livemode: bool | None, code: str, message: str
) -> None:
    body = {**envelope(), **data} if isinstance(data, dict) else data
    with pytest.raises(Rejected) as caught:
        check_envelope(body, livemode)
    assert (caught.value.status, caught.value.code, caught.value.message) == (400, code, message)
