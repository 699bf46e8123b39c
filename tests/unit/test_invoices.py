"""The invoices module, called directly: statuses, amounts, dunning, upcoming invoices.

The renewal scenarios also run the subscriptions module: Stripe announces a failed
renewal with both an invoice event and a subscription update.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import stripe

from chalicelib.resources import invoices, subscriptions
from stripe_events._context import Context
from stripe_events_testing import event_of, module_context, outbox, run_handlers, samples

T = 1_760_000_000
URL = "https://invoice.stripe.com/i/acct_1/test_in_A"
RENEWAL = {"type": "subscription_details", "subscription_details": {"subscription": "sub_A"}}


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return module_context(tmp_path)


def inv_event(
    event_type: str, created: int, status: str, attempts: int = 0, **changes: Any
) -> stripe.Event:
    fields: dict[str, Any] = {"id": "in_A", "customer": "cus_A", "hosted_invoice_url": URL}
    fields |= {"parent": RENEWAL, "status": status, "attempt_count": attempts, **changes}
    return event_of(f"invoice.{event_type}", created, **fields)


def handle(ctx: Context, *events: stripe.Event) -> None:
    for e in events:
        for router in (invoices.router, subscriptions.router):
            run_handlers(router, e, ctx)


def summary(ctx: Context, invoice: str = "in_A") -> dict[str, Any]:
    return ctx.store.children("customer_invoices", "cus_A")[invoice]


def test_the_module_handles_the_invoice_lifecycle() -> None:
    assert invoices.router.event_types() == [
        f"invoice.{action}"
        for action in (
            "created",
            "finalized",
            "marked_uncollectible",
            "paid",
            "payment_failed",
            "payment_succeeded",
            "upcoming",
            "voided",
        )
    ]


def test_an_invoice_is_indexed_under_its_customer(ctx: Context) -> None:
    handle(ctx, inv_event("finalized", T, "open", next_payment_attempt=T + 3600))
    assert summary(ctx) == {
        "id": "in_A",
        "status": "open",
        "currency": "usd",
        "amount_due": 1000,
        "amount_paid": 0,
        "amount_remaining": 1000,
        "attempt_count": 0,
        "next_payment_attempt": T + 3600,
        "hosted_invoice_url": URL,
        "subscription": "sub_A",
    }
    assert ctx.store.get("invoices", "in_A") is not None


@pytest.mark.parametrize(
    ("parent", "subscription", "expected"),
    [
        (RENEWAL, None, "sub_A"),  # API 2025-03-31 and later
        (None, "sub_B", "sub_B"),  # earlier API versions
        (None, {"id": "sub_C", "object": "subscription"}, "sub_C"),  # expanded
        (samples.example_objects()["invoice"]["parent"], None, None),  # a quote's invoice
    ],
)
def test_the_subscription_is_read_from_any_api_version(
    ctx: Context, parent: Any, subscription: Any, expected: str | None
) -> None:
    handle(ctx, inv_event("created", T, "draft", parent=parent, subscription=subscription))
    assert summary(ctx)["subscription"] == expected


@pytest.mark.parametrize(
    ("event_type", "status", "paid"),
    [
        ("created", "draft", 0),
        ("finalized", "open", 0),
        ("paid", "paid", 1000),
        ("payment_succeeded", "paid", 1000),
        ("voided", "void", 0),
        ("marked_uncollectible", "uncollectible", 0),
    ],
)
def test_each_event_keeps_the_status_and_amounts(
    ctx: Context, event_type: str, status: str, paid: int
) -> None:
    handle(ctx, inv_event(event_type, T, status, amount_paid=paid, amount_remaining=1000 - paid))
    assert (summary(ctx)["status"], summary(ctx)["amount_paid"]) == (status, paid)
    assert outbox(ctx) == []


def test_an_older_event_arriving_late_changes_nothing(ctx: Context) -> None:
    handle(ctx, inv_event("paid", T + 10, "paid", 1, amount_paid=1000))
    handle(ctx, inv_event("created", T, "draft"), inv_event("finalized", T + 10, "open"))
    assert (summary(ctx)["status"], summary(ctx)["amount_paid"]) == ("paid", 1000)


def test_a_failed_payment_sends_one_dunning_notice_per_event(ctx: Context) -> None:
    failed = inv_event("payment_failed", T, "open", 1, next_payment_attempt=T + 86400)
    handle(ctx, failed, failed)
    [notice] = outbox(ctx)
    assert (notice.kind, notice.customer) == ("dunning", "cus_A")
    assert notice.message == {
        "invoice": "in_A",
        "customer": "cus_A",
        "subscription": "sub_A",
        "amount_due": 1000,
        "currency": "usd",
        "attempt_count": 1,
        "hosted_invoice_url": URL,
        "next_payment_attempt": T + 86400,
    }
    assert summary(ctx)["attempt_count"] == 1
    handle(ctx, inv_event("payment_failed", T + 86400, "open", 2, next_payment_attempt=None))
    assert [n.message["attempt_count"] for n in outbox(ctx)] == [2, 1]


def test_no_dunning_notice_for_a_late_failure(ctx: Context) -> None:
    handle(ctx, inv_event("paid", T + 10, "paid", 1, amount_paid=1000))  # paid out of band
    handle(ctx, inv_event("payment_failed", T, "open", 1))
    handle(ctx, inv_event("voided", T + 10, "void", 1, id="in_V"))
    handle(ctx, inv_event("payment_failed", T, "open", 1, id="in_V"))
    assert outbox(ctx) == []
    handle(ctx, inv_event("payment_failed", T + 30, "open", 4, id="in_B"))
    handle(ctx, inv_event("payment_failed", T + 20, "open", 3, id="in_B"))  # superseded
    assert [n.message["attempt_count"] for n in outbox(ctx)] == [4]
    assert summary(ctx)["status"] == "paid"


def test_a_failed_renewal_suspends_the_entitlements_until_it_is_paid(ctx: Context) -> None:
    sub = samples.example_objects()["subscription"]
    subscription = {"id": "sub_A", "customer": "cus_A", "items": sub["items"]}
    product = sub["items"]["data"][0]["price"]["product"]
    handle(ctx, event_of("customer.subscription.created", T, status="active", **subscription))
    assert subscriptions.entitlements(ctx.store, "cus_A") == {
        "customer": "cus_A",
        "features": [product],
        "subscriptions": ["sub_A"],
    }
    failed = inv_event("payment_failed", T + 100, "open", 1, next_payment_attempt=T + 9000)
    past_due = event_of("customer.subscription.updated", T + 100, status="past_due", **subscription)
    handle(ctx, failed, past_due, failed)  # Stripe delivers the failure twice
    assert subscriptions.entitlements(ctx.store, "cus_A") == {
        "customer": "cus_A",
        "features": [],
        "subscriptions": [],
    }
    [notice] = outbox(ctx)
    assert notice.kind == "dunning"
    assert (notice.message["hosted_invoice_url"], notice.message["next_payment_attempt"]) == (
        URL,
        T + 9000,
    )
    # Recovered: the update arrives before the invoice, then an old retry of the failure.
    active = event_of("customer.subscription.updated", T + 9000, status="active", **subscription)
    handle(ctx, active, inv_event("paid", T + 9000, "paid", 2, amount_paid=1000), failed)
    assert subscriptions.entitlements(ctx.store, "cus_A") == {
        "customer": "cus_A",
        "features": [product],
        "subscriptions": ["sub_A"],
    }
    assert summary(ctx)["status"] == "paid"
    assert len(outbox(ctx)) == 1


def upcoming(created: int, amount: int, **changes: Any) -> stripe.Event:
    """A real upcoming invoice has no id; Stripe's example object has one."""
    data = samples.sample_event("invoice.upcoming", created=created, changes=changes)
    data["data"]["object"].pop("id")
    data["data"]["object"].update(customer="cus_A", amount_due=amount, parent=RENEWAL)
    return stripe.Event.construct_from(data, None)


def test_an_upcoming_invoice_without_an_id_is_kept_per_customer(ctx: Context) -> None:
    older, newer = upcoming(T, 2000), upcoming(T + 10, 3000, next_payment_attempt=T + 99)
    handle(ctx, older, newer, older)
    assert ctx.store.get("upcoming_invoices", "cus_A") == {
        "customer": "cus_A",
        "subscription": "sub_A",
        "currency": "usd",
        "amount_due": 3000,
        "next_payment_attempt": T + 99,
        "created": T + 10,
        "event_id": newer.id,
    }
    assert ctx.store.children("customer_invoices", "cus_A") == {}


def test_an_upcoming_invoice_without_a_customer_is_skipped(ctx: Context) -> None:
    e = upcoming(T, 1000)
    e.data.object["customer"] = None
    handle(ctx, e)
    assert ctx.store.get("upcoming_invoices", "cus_A") is None
