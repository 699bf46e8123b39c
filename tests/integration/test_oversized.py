"""Large events end to end: published as a reference, restored for the handler, unchanged;
and a 1 MB invoice handled and stored by the real handlers on both stores."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import stripe
from chalice.test import Client

from chalicelib.resources import customers, invoices
from stripe_events._context import Context
from stripe_events._payloads import PAYLOAD_KEY, restore
from stripe_events_testing import samples
from tests.conftest import REGION
from tests.helpers import (
    ROOT,
    create_table,
    deployed_stage_env,
    invoice_with_lines,
    load_app,
    local_stage_env,
    signed_headers,
    swap_handler,
)
from tests.sqs_poller import clients, create_route, delete_route, drain, lambda_payload, unique

LIMIT = 256 * 1024


def big_customer_event() -> dict[str, Any]:
    """customer.updated with 600 KB of metadata-like notes: realistic bytes, Stripe's shape."""
    notes = {f"note_{i:04d}": "Ünïcødé order notes 🧾 " * 24 for i in range(480)}
    event = samples.sample_event("customer.updated", changes={"metadata": notes})
    assert len(samples.encode(event)) > 600_000
    return event


def record_events(monkeypatch: pytest.MonkeyPatch) -> list[stripe.Event]:
    seen: list[stripe.Event] = []

    def record(event: stripe.Event, ctx: Context) -> None:
        seen.append(event)

    swap_handler(monkeypatch, customers.router, "customer.updated", record)
    return seen


def test_locally_the_handler_sees_the_whole_event(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = load_app({**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(tmp_path)})
    seen = record_events(monkeypatch)
    event = big_customer_event()
    body = samples.encode(event)
    client = Client(module.app, stage_name="local", project_dir=str(ROOT))
    headers = signed_headers(body, module.events.settings.webhook_secrets[0])
    response = client.http.post("/stripe/webhook", headers=headers, body=body)
    assert response.status_code == 200, response.body
    [received] = seen
    assert received.to_dict() == stripe.Event.construct_from(event, None).to_dict()
    ledger = module.events.store.event(event["id"])
    assert ledger is not None and ledger.body is not None
    assert PAYLOAD_KEY in json.loads(ledger.body)  # the ledger keeps the small reference
    assert len(ledger.body) < 2000
    assert list((tmp_path / "bodies").rglob("*.json"))


def test_on_emulated_aws_the_body_goes_to_s3_and_comes_back(
    moto_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    bucket, table = unique("bodies"), unique("oversized")
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=bucket)
    create_table(table, REGION)
    module = load_app(deployed_stage_env(STRIPE_EVENTS_TABLE=table, STRIPE_EVENTS_BUCKET=bucket))
    events_client, sqs = clients()
    route = create_route(
        events_client, sqs, unique("oversized"), customers.router.pattern(module.events.settings)
    )
    try:
        seen = record_events(monkeypatch)
        event = big_customer_event()
        body = samples.encode(event)
        client = Client(module.app, stage_name="dev", project_dir=str(ROOT))
        response = client.http.post("/stripe/webhook", headers=signed_headers(body), body=body)
        assert response.status_code == 200, response.body
        [message] = drain(sqs, route.queue_url, expect=1)
        assert len(json.dumps(message["detail"])) < LIMIT
        assert message["detail"][PAYLOAD_KEY]["bucket"] == bucket
        client.lambda_.invoke("customers", lambda_payload(message))
        [received] = seen
        assert received.to_dict() == stripe.Event.construct_from(event, None).to_dict()
    finally:
        delete_route(events_client, sqs, route)


def megabyte_invoice() -> tuple[dict[str, Any], bytes]:
    """An invoice.paid event of about 1 MB, as Stripe sends it: pretty-printed UTF-8 JSON."""
    event = invoice_with_lines(480)
    body = json.dumps(event, indent=2, ensure_ascii=False).encode()
    assert 950_000 < len(body) <= 1_048_576  # STRIPE_WEBHOOK_MAX_BYTES, the largest accepted
    return event, body


def assert_handled(module: ModuleType, event: dict[str, Any]) -> None:
    """The invoice is stored whole, its summary listed, and the ledger can replay it."""
    store = module.events.store
    invoice = event["data"]["object"]
    stored = store.get("invoices", invoice["id"])
    assert stored is not None and stored["object"] == invoice
    assert (
        store.children("customer_invoices", invoice["customer"])[invoice["id"]]["status"]
        == (invoice["status"])
    )
    entry = store.event(event["id"])
    assert entry is not None and entry.body is not None
    statuses = {name: outcome.status for name, outcome in entry.handlers.items()}
    assert statuses == {"invoices.save_invoice": "ok"}
    assert restore(json.loads(entry.body), module.events.payloads) == event


def test_locally_a_megabyte_invoice_is_handled_and_stored(tmp_path: Path) -> None:
    module = load_app({**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(tmp_path)})
    event, body = megabyte_invoice()
    client = Client(module.app, stage_name="local", project_dir=str(ROOT))
    headers = signed_headers(body, module.events.settings.webhook_secrets[0])
    response = client.http.post("/stripe/webhook", headers=headers, body=body)
    assert response.status_code == 200, response.body
    assert_handled(module, event)


@pytest.mark.parametrize("max_entry_bytes", ["262144", "1048576"])
def test_on_emulated_aws_a_megabyte_invoice_is_handled_and_stored(
    moto_url: str, s3_bucket: str, max_entry_bytes: str
) -> None:
    # With 1 MB entries (where AWS allows them) the event arrives whole, and the ledger
    # must keep its body aside; with 256 KB ones it arrives as a reference.
    table = unique("megabyte")
    create_table(table, REGION)
    module = load_app(
        deployed_stage_env(
            STRIPE_EVENTS_TABLE=table,
            STRIPE_EVENTS_BUCKET=s3_bucket,
            STRIPE_EVENTS_MAX_ENTRY_BYTES=max_entry_bytes,
        )
    )
    events_client, sqs = clients()
    pattern = invoices.router.pattern(module.events.settings)
    route = create_route(events_client, sqs, unique("megabyte"), pattern)
    try:
        event, body = megabyte_invoice()
        client = Client(module.app, stage_name="dev", project_dir=str(ROOT))
        response = client.http.post("/stripe/webhook", headers=signed_headers(body), body=body)
        assert response.status_code == 200, response.body
        [message] = drain(sqs, route.queue_url, expect=1)
        assert (PAYLOAD_KEY in message["detail"]) == (max_entry_bytes == "262144")
        client.lambda_.invoke("invoices", lambda_payload(message))
        assert_handled(module, event)
    finally:
        delete_route(events_client, sqs, route)
