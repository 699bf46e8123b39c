"""The disputes module, called directly: no AWS, no Chalice."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import stripe
from stripe._http_client import HTTPClient

from chalicelib.resources import charges, disputes
from stripe_events._context import Context
from stripe_events_local.outbox import OutboxNotifier
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import (
    event_of,
    local_dispatcher,
    module_context,
    outbox,
    run_handlers,
    samples,
)

ROUTER = disputes.router
DUE_BY = samples.example_objects()["dispute"]["evidence_details"]["due_by"]  # 2024-08-14


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return module_context(tmp_path)


def dispute(event_type: str, created: int, **changes: Any) -> stripe.Event:
    return event_of(event_type, created, **({"id": "dp_A", "charge": "ch_A"} | changes))


def charge_seen(ctx: Context, customer: str | None = "cus_A") -> None:
    """The charges module has stored charge ch_A."""
    event = event_of("charge.succeeded", 50, id="ch_A", customer=customer)
    run_handlers(charges.router, event, ctx)


def disputes_of(ctx: Context, customer: str = "cus_A") -> dict[str, dict[str, Any]]:
    return ctx.store.children("customer_disputes", customer)


def test_the_module_handles_the_dispute_lifecycle() -> None:
    assert ROUTER.name == "disputes"
    assert ROUTER.event_types() == [
        "charge.dispute.closed",
        "charge.dispute.created",
        "charge.dispute.funds_withdrawn",
        "charge.dispute.updated",
    ]


def test_a_dispute_created_then_won_alerts_once_and_ends_won(ctx: Context) -> None:
    charge_seen(ctx)
    run_handlers(ROUTER, dispute("charge.dispute.created", 100, status="needs_response"), ctx)
    run_handlers(ROUTER, dispute("charge.dispute.closed", 200, status="won"), ctx)

    assert disputes_of(ctx) == {
        "dp_A": {
            "id": "dp_A",
            "status": "won",
            "amount": 1000,
            "currency": "usd",
            "reason": "general",
            "charge": "ch_A",
            "evidence_due_by": DUE_BY,
        }
    }
    [alert] = outbox(ctx)
    assert (alert.kind, alert.customer) == ("dispute_created", "cus_A")
    assert alert.message["evidence_due_by"] == DUE_BY
    assert (alert.message["id"], alert.message["status"]) == ("dp_A", "needs_response")
    assert "evidence due by 2024-08-14" in alert.subject


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("charge.dispute.created", "needs_response"),
        ("charge.dispute.updated", "under_review"),
        ("charge.dispute.funds_withdrawn", "needs_response"),
        ("charge.dispute.closed", "lost"),
    ],
)
def test_each_event_keeps_the_dispute_under_its_customer(
    ctx: Context, event_type: str, status: str
) -> None:
    charge_seen(ctx)
    event = dispute(event_type, 100, status=status)
    run_handlers(ROUTER, event, ctx)
    assert disputes_of(ctx)["dp_A"]["status"] == status
    stored = ctx.store.get("disputes", "dp_A")
    assert stored is not None
    assert stored["version"]["event_id"] == event.id
    assert len(outbox(ctx)) == (event_type == "charge.dispute.created")


def test_a_duplicate_created_event_alerts_once(ctx: Context) -> None:
    charge_seen(ctx)
    event = dispute("charge.dispute.created", 100)
    run_handlers(ROUTER, event, ctx)
    run_handlers(ROUTER, event, ctx)
    assert len(outbox(ctx)) == 1
    assert list(disputes_of(ctx)) == ["dp_A"]


def test_a_created_event_arriving_after_the_close_keeps_won_and_still_alerts(
    ctx: Context,
) -> None:
    charge_seen(ctx)
    run_handlers(ROUTER, dispute("charge.dispute.closed", 200, status="won"), ctx)
    run_handlers(ROUTER, dispute("charge.dispute.created", 100, status="needs_response"), ctx)

    assert disputes_of(ctx)["dp_A"]["status"] == "won"
    [alert] = outbox(ctx)
    assert alert.kind == "dispute_created"


def test_funds_withdrawn_in_the_same_second_as_created_keeps_the_withdrawal(
    ctx: Context,
) -> None:
    charge_seen(ctx)
    withdrawn = dispute("charge.dispute.funds_withdrawn", 100, status="needs_response")
    run_handlers(ROUTER, withdrawn, ctx)
    run_handlers(ROUTER, dispute("charge.dispute.created", 100, status="needs_response"), ctx)
    stored = ctx.store.get("disputes", "dp_A")
    assert stored is not None
    assert stored["version"]["event_id"] == withdrawn.id
    assert len(outbox(ctx)) == 1


def test_an_unknown_charge_leaves_the_dispute_under_no_customer_until_it_is_known(
    ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    created = dispute("charge.dispute.created", 100, status="needs_response")
    with caplog.at_level(logging.WARNING):
        run_handlers(ROUTER, created, ctx)
    assert "charge ch_A is not known yet, so no customer for this dispute" in caplog.text
    assert ctx.store.get("disputes", "dp_A") is not None
    assert disputes_of(ctx) == {}
    [alert] = outbox(ctx)
    assert alert.customer is None

    charge_seen(ctx)
    run_handlers(ROUTER, dispute("charge.dispute.updated", 200, status="under_review"), ctx)
    assert disputes_of(ctx)["dp_A"]["status"] == "under_review"


def test_a_charge_without_customer_indexes_nothing(ctx: Context) -> None:
    charge_seen(ctx, customer=None)
    run_handlers(ROUTER, dispute("charge.dispute.created", 100), ctx)
    assert ctx.store.get("disputes", "dp_A") is not None
    assert disputes_of(ctx) == {}
    assert outbox(ctx)[0].customer is None


class FakeStripe(HTTPClient):
    """Answers GET /v1/charges/<id> from `charges`, with 404 for any other charge."""

    name = "fake"

    def __init__(self, charges: dict[str, dict[str, Any]]) -> None:
        super().__init__()
        self.charges = charges
        self.requests: list[tuple[str, dict[str, str]]] = []

    def request(
        self,
        method: str,
        url: str,
        headers: Mapping[str, str] | None,
        post_data: Any = None,
        *,
        _usage: list[str] | None = None,
    ) -> tuple[str, int, Mapping[str, str]]:
        self.requests.append((url, dict(headers or {})))
        charge_id = url.split("?")[0].rpartition("/")[2]
        if charge_id in self.charges:
            return json.dumps(self.charges[charge_id]), 200, {}
        error = {"type": "invalid_request_error", "code": "resource_missing", "message": "No such"}
        return json.dumps({"error": error}), 404, {}

    def close(self) -> None:
        pass


def with_api(ctx: Context, charges: dict[str, dict[str, Any]]) -> tuple[Context, FakeStripe]:
    http = FakeStripe(charges)
    client = stripe.StripeClient("sk_test_fake", http_client=http, max_network_retries=0)
    return replace(ctx, stripe_api=lambda: client), http


def test_with_an_api_key_an_unknown_charge_is_asked_for(ctx: Context) -> None:
    charge = samples.example_objects()["charge"] | {"id": "ch_A", "customer": "cus_B"}
    api_ctx, http = with_api(ctx, {"ch_A": charge})
    data = samples.sample_event("charge.dispute.created", created=100, changes={"charge": "ch_A"})
    event = stripe.Event.construct_from(data | {"account": "acct_1"}, None)

    run_handlers(ROUTER, event, api_ctx)

    assert list(disputes_of(api_ctx, "cus_B")) == [event.data.object["id"]]
    assert outbox(api_ctx)[0].customer == "cus_B"
    assert {url.split("?")[0].rpartition("/v1/")[2] for url, _ in http.requests} == {"charges/ch_A"}
    assert all(headers["Stripe-Account"] == "acct_1" for _, headers in http.requests)


def test_with_an_api_key_a_charge_the_api_does_not_have_is_under_no_customer(
    ctx: Context,
) -> None:
    api_ctx, http = with_api(ctx, {})
    run_handlers(ROUTER, dispute("charge.dispute.created", 100), api_ctx)
    assert http.requests
    assert ctx.store.get("disputes", "dp_A") is not None
    assert outbox(api_ctx)[0].customer is None


def test_a_stored_charge_costs_no_api_call(ctx: Context) -> None:
    charge_seen(ctx)
    api_ctx, http = with_api(ctx, {})
    run_handlers(ROUTER, dispute("charge.dispute.created", 100), api_ctx)
    assert http.requests == []
    assert list(disputes_of(api_ctx)) == ["dp_A"]


def test_through_the_dispatcher_a_redelivered_created_event_alerts_once(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "stripe-events.sqlite3")
    dispatcher = local_dispatcher(store, tmp_path)
    event = samples.sample_event("charge.dispute.created", created=100, changes={"id": "dp_A"})
    for _ in range(2):
        outcomes = dispatcher.dispatch(ROUTER, event)
        assert {o.status for o in outcomes.values()} == {"ok"}
    [alert] = OutboxNotifier(tmp_path / "outbox.sqlite3").sent()
    assert alert.message["id"] == "dp_A"
    assert store.get("disputes", "dp_A") is not None
