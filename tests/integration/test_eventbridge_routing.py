"""Routing on emulated AWS: the webhook, EventBridge rules and the functions, through moto.

moto's EventBridge has its own pattern matcher, written independently of ours, so
every router pattern is checked against it for every event type in the catalog, and
our local bus matcher must agree with it.
"""

from __future__ import annotations

import importlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from types import ModuleType
from typing import Any

import boto3
import pytest
import stripe
from chalice.app import CloudWatchEventConfig
from chalice.test import Client

import stripe_events._catalog as catalog
from stripe_events import Context
from stripe_events._pattern import matches
from stripe_events._router import Router
from stripe_events._settings import DEFAULT_SOURCE, PARTNER_SOURCE_PREFIX
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_local.bus import LocalBus
from stripe_events_testing import samples
from tests.conftest import REGION
from tests.helpers import ROOT, create_table, deployed_stage_env, load_app, signed_headers
from tests.sqs_poller import (
    Route,
    clients,
    create_route,
    delete_route,
    drain,
    lambda_payload,
    put_entries,
    unique,
)

PARTNER_SOURCE = PARTNER_SOURCE_PREFIX + "ed_test123"
STRIPE_SOURCES = (DEFAULT_SOURCE, PARTNER_SOURCE)
# Near misses of ours and Stripe's, besides a plain stranger.
FOREIGN_SOURCES = ("someone.else", "aws.partner/stripe.company/ed_test123", "stripe.webhooks")


def _router(name: str, *groups: tuple[str, ...]) -> Router:
    router = Router(name)
    for i, names in enumerate(groups):

        def handler(event: stripe.Event, ctx: Context) -> None:
            """Routing is what is tested here; no handler runs."""

        # The router refuses one function name registered twice.
        handler.__name__ = f"handler_{i}"
        router.on(*names)(handler)
    return router


# Wildcards as the router means them (prefixes): "customer.*" also covers
# "customer.subscription.updated", and EventBridge must see it the same way.
TEST_ROUTERS = (
    _router("invoices_any", ("invoice.*",)),
    _router("disputes", ("charge.dispute.*", "charge.refunded")),
    _router("everything", ("*",)),
    _router("subs", ("customer.subscription.*",)),
    _router("customer_any", ("customer.*",)),
    _router("overlapping", ("customer.created",), ("customer.*", "invoice.paid")),
    _router("meters", ("v1.billing.meter.*",)),
    # Thin names hold brackets, which a glob would read as a set of characters.
    _router("account_configs", ("v2.core.account.created", "v2.core.account[configuration.*")),
)


@dataclass(frozen=True)
class Stack:
    app: ModuleType
    table: str
    events: Any
    sqs: Any
    # router name -> (router, its rule and queue); the app's own functions come first.
    routes: dict[str, tuple[Router, Route]]

    def drain_all(self) -> dict[str, list[dict[str, Any]]]:
        return {name: drain(self.sqs, route.queue_url) for name, (_, route) in self.routes.items()}


def _app_router(source: CloudWatchEventConfig) -> Router:
    """The router behind one of app.py's functions: each is named after its resource module."""
    module = importlib.import_module(f"chalicelib.resources.{source.name}")
    router: Router = module.router
    return router


@pytest.fixture(scope="module")
def stack(moto_url: str) -> Iterator[Stack]:
    table = unique("stripe-events-routing")
    app = load_app(deployed_stage_env(STRIPE_EVENTS_TABLE=table))
    create_table(table, REGION)
    events, sqs = clients()
    routes: dict[str, tuple[Router, Route]] = {}
    try:
        for source in app.app.event_sources:
            if isinstance(source, CloudWatchEventConfig):
                router = _app_router(source)
                # What is deployed must be what the router says.
                assert source.event_pattern == router.pattern(app.events.settings)
                route = create_route(events, sqs, unique(source.name), source.event_pattern)
                routes[source.name] = (router, route)
        assert routes, "app.py declares no on_cw_event function"
        for router in TEST_ROUTERS:
            pattern = router.pattern(app.events.settings)
            routes[router.name] = (router, create_route(events, sqs, unique(router.name), pattern))
        yield Stack(app, table, events, sqs, routes)
    finally:
        for _, route in routes.values():
            delete_route(events, sqs, route)
        boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)


def _iso(created: int) -> str:
    return datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def test_webhook_event_reaches_the_function_once(stack: Stack) -> None:
    stack.drain_all()
    customer_id = "cus_" + unique("e2e").replace("-", "")
    event = samples.sample_event(
        "customer.created",
        created=1_760_000_000,
        changes={"id": customer_id, "email": "jenny.rosen@example.com", "name": "Jenny Rösen"},
    )
    body = samples.encode(event)
    client = Client(stack.app.app, stage_name="dev", project_dir=str(ROOT))

    response = client.http.post("/stripe/webhook", headers=signed_headers(body), body=body)

    assert response.status_code == 200, response.body
    assert response.json_body == {"received": True, "id": event["id"]}
    _, route = stack.routes["customers"]
    [message] = drain(stack.sqs, route.queue_url, expect=1)
    assert message["detail"] == json.loads(body)
    assert message["detail-type"] == "customer.created"
    assert message["source"] == DEFAULT_SOURCE
    assert message["time"] == _iso(event["created"])  # Time=created, not the time of receipt

    payload = lambda_payload(message)
    first = client.lambda_.invoke("customers", payload)

    assert first.payload == {"customers.save_customer": "ok"}
    store = DynamoStore(stack.table, REGION)
    item = store.get("customers", customer_id)
    assert item is not None
    assert (item["object"]["email"], item["object"]["name"]) == (
        "jenny.rosen@example.com",
        "Jenny Rösen",
    )
    assert item["deleted"] is False
    assert item["version"] == {
        "created": event["created"],
        "rank": [1, 0, 0],
        "event_id": event["id"],
        "event_type": "customer.created",
    }
    outcomes = store.outcomes(event["id"])
    assert set(outcomes) == {"customers.save_customer"}
    assert outcomes["customers.save_customer"].status == "ok"
    assert outcomes["customers.save_customer"].attempts == 1
    assert outcomes["customers.save_customer"].error is None
    [entry] = [e for e in store.recent(50) if e.id == event["id"]]
    assert (entry.type, entry.created) == ("customer.created", event["created"])

    # Had the handler run again, it would have written the record back over this one.
    marker = {"id": customer_id, "name": "changed after the first delivery"}
    store.put("customers", customer_id, marker)
    again = client.lambda_.invoke("customers", payload)

    assert again.payload == {"customers.save_customer": "ok"}
    assert store.outcomes(event["id"]) == outcomes
    assert store.get("customers", customer_id) == marker


# moto's SQS receive costs time in proportion to the queue's length, so the queues are
# drained after every hundred events rather than once at the end.
DRAIN_EVERY = 100


@pytest.fixture(scope="module")
def deliveries(stack: Stack) -> dict[str, list[dict[str, Any]]]:
    """Every catalog type put once per source; what each router's queue then received."""
    stack.drain_all()
    entries = [
        {
            "Source": source,
            "DetailType": event_type,
            "Detail": json.dumps(samples.sample_event(event_type)),
        }
        for source in STRIPE_SOURCES + FOREIGN_SOURCES
        for event_type in catalog.all_event_types()
    ]
    received: dict[str, list[dict[str, Any]]] = {name: [] for name in stack.routes}
    for start in range(0, len(entries), DRAIN_EVERY):
        put_entries(stack.events, entries[start : start + DRAIN_EVERY])
        for name, messages in stack.drain_all().items():
            received[name].extend(messages)
    return received


def _expected(router: Router) -> set[tuple[str, str]]:
    # A rule of "*" has no detail-type: it also brings thin events, which no handler of
    # snapshot events takes (the function records them and runs nothing).
    everything = catalog.WILDCARD in router.patterns
    return {
        (source, event_type)
        for source in STRIPE_SOURCES
        for event_type in catalog.all_event_types()
        if router.handlers_for(event_type) or (everything and catalog.is_thin(event_type))
    }


def _received(messages: list[dict[str, Any]]) -> set[tuple[str, str]]:
    return {(m["source"], m["detail-type"]) for m in messages}


def test_catalog_is_the_full_list() -> None:
    # Guards the tests below against silently checking a handful of types (stripe 16.1.0: 275).
    assert len(catalog.event_types()) >= 250


def test_eventbridge_delivers_exactly_what_each_router_handles(
    stack: Stack, deliveries: dict[str, list[dict[str, Any]]]
) -> None:
    wrong = {}
    for name, (router, _) in stack.routes.items():
        received, expected = _received(deliveries[name]), _expected(router)
        if received != expected:
            wrong[name] = {"missing": expected - received, "unexpected": received - expected}
    assert wrong == {}
    for name, messages in deliveries.items():
        assert len(messages) == len(_received(messages)), f"{name}: an event came twice"
        assert all(m["detail"]["type"] == m["detail-type"] for m in messages), name


def test_wildcards_are_prefixes_as_the_router_means_them(
    deliveries: dict[str, list[dict[str, Any]]],
) -> None:
    def types(name: str) -> set[str]:
        return {t for source, t in _received(deliveries[name]) if source == DEFAULT_SOURCE}

    assert types("customers") == {"customer.created", "customer.updated", "customer.deleted"}
    assert "customer.subscription.updated" in types("customer_any")
    assert "customer.subscription.updated" in types("subs")
    assert "customer.updated" not in types("subs")
    assert "invoice.payment_failed" in types("invoices_any")
    assert not {t for t in types("invoices_any") if t.startswith("invoiceitem.")}
    assert {"charge.refunded", "charge.dispute.created"} <= types("disputes")
    assert "charge.refund.updated" not in types("disputes")
    assert types("everything") == set(catalog.all_event_types())
    assert types("meters") == {t for t in catalog.thin_event_types() if ".billing.meter." in t}
    assert types("account_configs") == {
        t for t in catalog.thin_event_types() if t.startswith("v2.core.account[configuration.")
    } | {"v2.core.account.created"}
    assert {"customer.created", "invoice.paid", "customer.source.created"} <= types("overlapping")


def test_other_sources_reach_no_queue(deliveries: dict[str, list[dict[str, Any]]]) -> None:
    strays = {
        (name, m["source"], m["detail-type"])
        for name, messages in deliveries.items()
        for m in messages
        if m["source"] not in STRIPE_SOURCES
    }
    assert strays == set()


def test_local_bus_matcher_agrees_with_eventbridge(
    stack: Stack, deliveries: dict[str, list[dict[str, Any]]]
) -> None:
    bus = LocalBus(lambda: stack.app.app, REGION)
    disagreements = []
    for name, (_, route) in stack.routes.items():
        delivered = _received(deliveries[name])
        for source in STRIPE_SOURCES + FOREIGN_SOURCES:
            for event_type in catalog.all_event_types():
                event = bus.to_cloudwatch_event(
                    {
                        "Source": source,
                        "DetailType": event_type,
                        "Detail": "{}",
                        "Time": datetime.now(UTC),
                    }
                )
                ours = matches(route.pattern, event)
                if ours != ((source, event_type) in delivered):
                    disagreements.append((name, source, event_type, ours))
    assert disagreements == []
