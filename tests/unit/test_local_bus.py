"""Stage `local`: the webhook publishes to the in-process bus, which runs the functions."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.test import Client

from stripe_events._envelope import parse_event, to_entry
from stripe_events._errors import HandlerBusy
from stripe_events_local.bus import LocalBus
from stripe_events_testing import samples
from tests.helpers import (
    ROOT,
    load_app,
    local_stage_env,
    resource_routers,
    signed_headers,
    swap_handler,
)


@pytest.fixture
def local_app(tmp_path: Path) -> ModuleType:
    return load_app({**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(tmp_path)})


def post(module: ModuleType, event: dict[str, object]) -> int:
    body = samples.encode(event)
    client = Client(module.app, stage_name="local", project_dir=str(ROOT))
    headers = signed_headers(body, module.events.settings.webhook_secrets[0])
    status: int = client.http.post("/stripe/webhook", headers=headers, body=body).status_code
    return status


def test_an_event_reaches_its_resource_function(local_app: ModuleType) -> None:
    event = samples.sample_event("customer.created", changes={"id": "cus_LOCAL"})
    assert post(local_app, event) == 200
    store = local_app.events.store
    assert store.get("customers", "cus_LOCAL")["object"]["id"] == "cus_LOCAL"
    [entry] = store.recent(5)
    assert entry.id == event["id"]
    assert {n: o.status for n, o in entry.handlers.items()} == {"customers.save_customer": "ok"}


def test_every_type_the_app_handles_is_sent_and_handled(local_app: ModuleType) -> None:
    for router in resource_routers():
        for event_type in router.event_types():
            event = samples.sample_event(event_type)
            assert post(local_app, event) == 200, event_type
            outcomes = local_app.events.store.outcomes(event["id"])
            assert outcomes, event_type
            assert {o.status for o in outcomes.values()} == {"ok"}, event_type


def test_an_event_no_function_subscribes_to_is_accepted_and_goes_nowhere(
    local_app: ModuleType,
) -> None:
    event = samples.sample_event("account.updated")
    assert post(local_app, event) == 200
    [entry] = local_app.events.store.recent(5)
    assert (entry.id, entry.received_at, entry.handlers) == (event["id"], None, {})
    assert entry.published_at is not None


def test_a_handler_failure_does_not_change_the_answer_but_is_recorded(
    local_app: ModuleType, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(*args: object) -> None:
        raise RuntimeError("boom")

    swap_handler(monkeypatch, local_app.customers.router, "customer.updated", broken)
    event = samples.sample_event("customer.updated")
    assert post(local_app, event) == 200
    outcome = local_app.events.store.outcomes(event["id"])["customers.save_customer"]
    assert (outcome.status, outcome.error_type, outcome.error) == ("error", "RuntimeError", "boom")


def test_events_from_stripes_partner_source_take_the_same_path(local_app: ModuleType) -> None:
    event = samples.sample_event("customer.created", changes={"id": "cus_PARTNER"})
    text = json.dumps(event)
    settings = local_app.events.settings
    entry = to_entry(text, parse_event(text, None), settings)
    entry["Source"] = "aws.partner/stripe.com/ed_61Abc"
    LocalBus(lambda: local_app.app, "us-east-1").publish(entry)
    assert local_app.events.store.get("customers", "cus_PARTNER") is not None


def test_a_busy_function_is_delivered_again_after_a_wait(local_app: ModuleType) -> None:
    # A handler that must wait for another delivery (a claim, the same event's lock) makes
    # its function raise HandlerBusy: Lambda would retry it later, the local bus waits.
    calls: list[str] = []
    app = local_app.app

    def busy_twice(event: dict[str, Any], context: Any) -> None:
        calls.append(event["detail"]["id"])
        if len(calls) <= 2:
            raise HandlerBusy("still running elsewhere")

    event = samples.sample_event("customer.created")
    text = json.dumps(event)
    entry = to_entry(text, parse_event(text, None), local_app.events.settings)
    bus = LocalBus(lambda: app, "us-east-1", busy_waits=(0.0, 0.0, 0.0))
    original = app.handler_map["customers"]
    app.handler_map["customers"] = busy_twice
    try:
        bus.publish(entry)
    finally:
        app.handler_map["customers"] = original
    assert calls == [event["id"]] * 3
