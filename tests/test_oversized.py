"""A 600 KB event end to end: published as a reference, restored for the handler, unchanged."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import boto3
import pytest
import stripe
from chalice.test import Client

from chalicelib.resources import customers
from chalicelib.stripe_events import samples
from chalicelib.stripe_events.context import Context
from chalicelib.stripe_events.payloads import PAYLOAD_KEY
from chalicelib.stripe_events.store_dynamodb import create_table
from tests.conftest import REGION
from tests.helpers import ROOT, SECRET, load_app, local_stage_env, signed_headers, swap_handler
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
    module = load_app(
        {
            "STRIPE_EVENTS_STAGE": "test",
            "STRIPE_EVENTS_BUS": "default",
            "STRIPE_EVENTS_TABLE": table,
            "STRIPE_EVENTS_BUCKET": bucket,
            "STRIPE_WEBHOOK_SECRET": SECRET,
        }
    )
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
