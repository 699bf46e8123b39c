"""POST /stripe/webhook through chalice.test.Client: every accepted and rejected case."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.test import Client

from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import samples
from tests.helpers import (
    ROOT,
    SECRET,
    RecordingPublisher,
    load_app,
    local_stage_env,
    sign,
    signed_headers,
)

URL = "/stripe/webhook"
MARKER = "payload-marker-4f1c"  # put in bodies to check that answers never echo them


@dataclass
class Webhook:
    module: ModuleType
    client: Client
    publisher: RecordingPublisher

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        response = self.client.http.post(URL, headers=headers, body=body)
        return response.status_code, json.loads(response.body)


Factory = Callable[..., Webhook]


@pytest.fixture
def webhook(tmp_path: Path) -> Iterator[Factory]:
    def make(**env: str) -> Webhook:
        base = local_stage_env()
        base.update(STRIPE_WEBHOOK_SECRET=SECRET, STRIPE_EVENTS_STATE_DIR=str(tmp_path))
        module = load_app({**base, **env})
        publisher = RecordingPublisher()
        # Replace the cached LocalBus and store: whatever the bus, nothing leaves the machine.
        module.events.publisher = publisher
        module.events.store = SqliteStore(tmp_path / "ledger.sqlite3")
        return Webhook(
            module, Client(module.app, stage_name="local", project_dir=str(ROOT)), publisher
        )

    yield make


def event_body(**fields: Any) -> bytes:
    event = samples.sample_event("customer.created")
    event["data"]["object"]["description"] = MARKER
    event.update(fields)
    return samples.encode(event)


def test_a_signed_event_is_published_as_received(webhook: Factory) -> None:
    hook = webhook()
    body = event_body()
    status, answer = hook.post(body, signed_headers(body))
    event = json.loads(body)
    assert (status, answer) == (200, {"received": True, "id": event["id"]})
    [entry] = hook.publisher.entries
    assert entry == {
        "Source": "stripe.webhook",
        "DetailType": "customer.created",
        "Detail": body.decode(),
        "Time": datetime.fromtimestamp(event["created"], UTC),
        "EventBusName": "local",
    }


def test_any_of_several_secrets_passes_while_one_is_rolled(webhook: Factory) -> None:
    hook = webhook(STRIPE_WEBHOOK_SECRET="whsec_old, whsec_new")
    old, new, other = event_body(), event_body(), event_body()
    assert hook.post(old, signed_headers(old, "whsec_old"))[0] == 200
    assert hook.post(new, signed_headers(new, "whsec_new"))[0] == 200
    status, answer = hook.post(other, signed_headers(other, "whsec_other"))
    assert (status, answer["error"]) == (400, "signature_mismatch")
    assert len(hook.publisher.entries) == 2


def test_any_v1_of_several_may_match(webhook: Factory) -> None:
    hook = webhook()
    body = event_body()
    t = int(time.time())
    good = sign(body, timestamp=t).split("v1=")[1]
    header = f"t={t},v1={'0' * 64},v0=ignored,v1={good}"
    assert hook.post(body, {"Stripe-Signature": header})[0] == 200


def test_a_wrong_content_type_does_not_matter_to_a_signed_event(webhook: Factory) -> None:
    hook = webhook()
    body = event_body()
    headers = {**signed_headers(body), "Content-Type": "text/plain"}
    assert hook.post(body, headers)[0] == 200


def test_timestamps_inside_the_tolerance_pass(webhook: Factory) -> None:
    hook = webhook()
    body = event_body()
    now = int(time.time())
    for t in (now - 290, now + 290):
        assert hook.post(body, signed_headers(body, timestamp=t))[0] == 200


def _future(body: bytes) -> dict[str, str]:
    return signed_headers(body, timestamp=int(time.time()) + 400)


def _stale(body: bytes) -> dict[str, str]:
    return signed_headers(body, timestamp=int(time.time()) - 400)


def _tampered(body: bytes) -> dict[str, str]:
    return signed_headers(body.replace(b"customer.created", b"customer.updated"))


BAD_HEADERS: dict[str, tuple[Callable[[bytes], dict[str, str]], str]] = {
    "missing": (lambda b: {"Content-Type": "application/json"}, "missing_signature"),
    "empty": (lambda b: {"Stripe-Signature": ""}, "missing_signature"),
    "no timestamp": (lambda b: {"Stripe-Signature": "v1=" + "a" * 64}, "malformed_signature"),
    "timestamp not a number": (
        lambda b: {"Stripe-Signature": "t=soon,v1=" + "a" * 64},
        "malformed_signature",
    ),
    "no v1": (
        lambda b: {"Stripe-Signature": f"t={int(time.time())},v0=abc"},
        "malformed_signature",
    ),
    "garbage": (lambda b: {"Stripe-Signature": "garbage"}, "malformed_signature"),
    "too long": (lambda b: {"Stripe-Signature": "t=1," + "v1=a," * 5000}, "malformed_signature"),
    "wrong secret": (lambda b: signed_headers(b, "whsec_wrong"), "signature_mismatch"),
    "body changed after signing": (_tampered, "signature_mismatch"),
    "stale": (_stale, "stale_timestamp"),
    "future": (_future, "future_timestamp"),
}


@pytest.mark.parametrize("case", BAD_HEADERS)
def test_bad_signatures_are_rejected_with_400(webhook: Factory, case: str) -> None:
    hook = webhook()
    body = event_body()
    make_headers, code = BAD_HEADERS[case]
    status, answer = hook.post(body, make_headers(body))
    assert (status, answer["error"]) == (400, code)
    assert answer["message"]
    assert hook.publisher.entries == []


def test_the_tolerance_is_configurable(webhook: Factory) -> None:
    hook = webhook(STRIPE_WEBHOOK_TOLERANCE="10")
    body = event_body()
    status, answer = hook.post(body, signed_headers(body, timestamp=int(time.time()) - 60))
    assert (status, answer["error"]) == (400, "stale_timestamp")
    assert "at most 10 s" in answer["message"]


BAD_BODIES: dict[str, tuple[bytes, str]] = {
    "not utf-8": (b'{"object": "event", "id": "evt_\xff\xfe"}', "invalid_encoding"),
    "not json": (b'{"object": "event", ' + MARKER.encode(), "invalid_json"),
    "deeply nested": (b"[" * 100_000 + b"]" * 100_000, "invalid_json"),
    "huge integer": (b'{"created": ' + b"9" * 5000 + b"}", "invalid_json"),
    "a list": (b'["evt_1"]', "not_an_event"),
    "not an event object": (
        json.dumps({"object": "customer", "id": "evt_1"}).encode(),
        "not_an_event",
    ),
    "a thin object in a snapshot's dress": (event_body(object="v2.event"), "not_an_event"),
    "id without evt_": (event_body(id="cus_123"), "not_an_event"),
    "id not a string": (event_body(id=123), "not_an_event"),
    "no type": (event_body(type=None), "not_an_event"),
    "empty type": (event_body(type=""), "not_an_event"),
    "created not an integer": (event_body(created="2026-01-01"), "not_an_event"),
    "created a float": (event_body(created=1.5), "not_an_event"),
    "created a boolean": (event_body(created=True), "not_an_event"),
}


@pytest.mark.parametrize("case", BAD_BODIES)
def test_bad_bodies_are_rejected_with_400(webhook: Factory, case: str) -> None:
    hook = webhook()
    body, code = BAD_BODIES[case]
    status, answer = hook.post(
        body,
        signed_headers(body)
        if code != "invalid_encoding"
        else {"Stripe-Signature": f"t={int(time.time())},v1=" + _hmac(body)},
    )
    assert (status, answer["error"]) == (400, code)
    assert MARKER not in json.dumps(answer)
    assert hook.publisher.entries == []


def _hmac(body: bytes) -> str:
    # stripe's own helper wants a str payload, which a non-UTF-8 body is not.
    from stripe_events._signature import expected_signature

    return expected_signature(body, int(time.time()), SECRET)


def thin_body(**fields: Any) -> bytes:
    notification = samples.sample_event("v1.billing.meter.error_report_triggered")
    notification.update(fields)
    return samples.encode(notification)


def test_a_signed_thin_event_notification_is_published_as_received(webhook: Factory) -> None:
    hook = webhook()
    body = thin_body(created="2026-01-31T12:00:05.123Z", context="acct_1Nv0FGQ9RKHgCVdK")
    status, answer = hook.post(body, signed_headers(body))
    notification = json.loads(body)
    assert (status, answer) == (200, {"received": True, "id": notification["id"]})
    [entry] = hook.publisher.entries
    assert entry == {
        "Source": "stripe.webhook",
        "DetailType": "v1.billing.meter.error_report_triggered",
        "Detail": body.decode(),
        "Time": datetime(2026, 1, 31, 12, 0, 5, tzinfo=UTC),
        "EventBusName": "local",
    }


BAD_THIN_BODIES: dict[str, tuple[bytes, str]] = {
    "id without evt_": (thin_body(id="mtr_123"), '"id" like "evt_"'),
    "no type": (thin_body(type=None), '"type" like "v1.billing.meter.no_meter_found"'),
    "a snapshot type": (thin_body(type="invoice.paid"), '"type" like'),
    "created in seconds": (thin_body(created=1769860800), "RFC 3339"),
    "created without an offset": (thin_body(created="2026-01-31T12:00:00"), "RFC 3339"),
    "created not a date": (thin_body(created="2026-02-30T12:00:00Z"), "RFC 3339"),
    "related object a string": (thin_body(related_object="mtr_1"), '"related_object"'),
    "related object without url": (
        thin_body(related_object={"id": "mtr_1", "type": "billing.meter"}),
        '"related_object"',
    ),
    "context not a string": (thin_body(context={"account": "acct_1"}), '"context"'),
}


@pytest.mark.parametrize("case", BAD_THIN_BODIES)
def test_bad_thin_envelopes_are_rejected_with_400(webhook: Factory, case: str) -> None:
    hook = webhook()
    body, says = BAD_THIN_BODIES[case]
    status, answer = hook.post(body, signed_headers(body))
    assert (status, answer["error"]) == (400, "invalid_thin_event")
    assert says in answer["message"]
    assert hook.publisher.entries == []


def test_livemode_must_match_the_stage(webhook: Factory) -> None:
    hook = webhook(STRIPE_LIVEMODE="true")
    test_mode = event_body(livemode=False)
    status, answer = hook.post(test_mode, signed_headers(test_mode))
    assert (status, answer["error"]) == (400, "livemode_mismatch")
    live = event_body(livemode=True)
    assert hook.post(live, signed_headers(live))[0] == 200
    thin = thin_body(livemode=False)
    status, answer = hook.post(thin, signed_headers(thin))
    assert (status, answer["error"]) == (400, "livemode_mismatch")
    assert len(hook.publisher.entries) == 1


def test_a_body_over_the_limit_gets_413(webhook: Factory) -> None:
    hook = webhook(STRIPE_WEBHOOK_MAX_BYTES="1000")
    body = event_body()
    assert len(body) > 1000
    status, answer = hook.post(body, signed_headers(body))
    assert (status, answer["error"]) == (413, "payload_too_large")
    assert hook.publisher.entries == []


def test_a_publish_failure_gets_503_so_that_stripe_retries(webhook: Factory) -> None:
    hook = webhook()
    hook.publisher.fail = True
    body = event_body()
    status, answer = hook.post(body, signed_headers(body))
    assert (status, answer["error"]) == (503, "publish_failed")
    assert "Throttling" not in answer["message"]  # internals stay in the logs


def test_no_secret_configured_gets_503(webhook: Factory) -> None:
    hook = webhook(STRIPE_WEBHOOK_SECRET="")
    body = event_body()
    status, answer = hook.post(body, signed_headers(body))
    assert (status, answer["error"]) == (503, "not_configured")
    assert hook.publisher.entries == []


def test_answers_never_contain_the_secret_or_the_payload(webhook: Factory) -> None:
    hook = webhook()
    body = event_body()
    cases = [signed_headers(body, "whsec_wrong"), signed_headers(body), {}]
    for headers in cases:
        response = hook.client.http.post(URL, headers=headers, body=body)
        text = response.body.decode()
        assert SECRET not in text
        assert MARKER not in text


def test_a_repeated_delivery_is_acknowledged_and_not_published_again(webhook: Factory) -> None:
    hook = webhook()
    body = event_body()
    event_id = json.loads(body)["id"]
    assert hook.post(body, signed_headers(body)) == (200, {"received": True, "id": event_id})
    again = hook.post(body, signed_headers(body))
    assert again == (200, {"received": True, "id": event_id, "duplicate": True})
    assert len(hook.publisher.entries) == 1


def test_a_failed_publish_is_not_recorded_so_the_retry_publishes(webhook: Factory) -> None:
    hook = webhook()
    body = event_body()
    hook.publisher.fail = True
    assert hook.post(body, signed_headers(body))[0] == 503
    assert hook.module.events.store.event(json.loads(body)["id"]) is None
    hook.publisher.fail = False
    assert hook.post(body, signed_headers(body))[1].get("duplicate") is None
    assert len(hook.publisher.entries) == 1
