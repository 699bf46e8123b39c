"""The charges module (charges and refunds), called directly: no AWS, no Chalice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import stripe

from chalicelib.resources import charges
from stripe_events._context import Context
from stripe_events_testing import event_of, module_context, run_handlers, samples

ROUTER = charges.router


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return module_context(tmp_path)


def charge(event_type: str, created: int, **changes: Any) -> stripe.Event:
    defaults = {"id": "ch_A", "customer": "cus_A", "payment_intent": "pi_A"}
    return event_of(event_type, created, **(defaults | changes))


def refund(event_type: str, created: int, **changes: Any) -> stripe.Event:
    defaults = {"id": "re_1", "charge": "ch_A", "payment_intent": "pi_A", "amount": 400}
    return event_of(event_type, created, **(defaults | changes))


def listed(refund_id: str, **changes: Any) -> dict[str, Any]:
    """A refund as a charge's `refunds` list carries it."""
    fields = {"id": refund_id, "charge": "ch_A", "payment_intent": "pi_A"}
    return samples.example_objects()["refund"] | fields | changes


def refunds_of(ctx: Context, payment: str = "pi_A") -> dict[str, dict[str, Any]]:
    return ctx.store.children("payment_refunds", payment)


def stored(ctx: Context, collection: str, key: str) -> dict[str, Any]:
    item = ctx.store.get(collection, key)
    assert item is not None
    return item


def test_the_module_handles_charges_and_refunds() -> None:
    assert ROUTER.name == "charges"
    assert ROUTER.event_types() == [
        "charge.captured",
        "charge.failed",
        "charge.refunded",
        "charge.succeeded",
        "refund.created",
        "refund.failed",
        "refund.updated",
    ]


@pytest.mark.parametrize(
    ("event_type", "status"),
    [
        ("charge.succeeded", "succeeded"),
        ("charge.failed", "failed"),
        ("charge.captured", "succeeded"),
        ("charge.refunded", "succeeded"),
    ],
)
def test_each_charge_event_keeps_the_charge(ctx: Context, event_type: str, status: str) -> None:
    event = charge(event_type, 100, status=status)
    run_handlers(ROUTER, event, ctx)
    item = stored(ctx, "charges", "ch_A")
    assert (item["object"]["status"], item["object"]["customer"]) == (status, "cus_A")
    assert item["version"]["event_id"] == event.id


def test_a_refund_after_a_charge_is_listed_under_its_payment(ctx: Context) -> None:
    run_handlers(ROUTER, charge("charge.succeeded", 100), ctx)
    run_handlers(ROUTER, refund("refund.created", 200, status="pending", reason="duplicate"), ctx)
    assert refunds_of(ctx) == {
        "re_1": {
            "id": "re_1",
            "status": "pending",
            "amount": 400,
            "currency": "usd",
            "charge": "ch_A",
            "payment_intent": "pi_A",
            "reason": "duplicate",
        }
    }
    run_handlers(ROUTER, refund("refund.updated", 300, status="succeeded"), ctx)
    assert refunds_of(ctx)["re_1"]["status"] == "succeeded"
    assert stored(ctx, "refunds", "re_1")["object"]["status"] == "succeeded"


def test_a_failed_refund_says_so(ctx: Context) -> None:
    run_handlers(ROUTER, refund("refund.created", 100, status="pending"), ctx)
    run_handlers(ROUTER, refund("refund.failed", 200, status="failed"), ctx)
    assert refunds_of(ctx)["re_1"]["status"] == "failed"


def test_a_refund_of_a_charge_without_payment_intent_is_listed_under_the_charge(
    ctx: Context,
) -> None:
    run_handlers(ROUTER, refund("refund.created", 100, payment_intent=None), ctx)
    assert list(refunds_of(ctx, "ch_A")) == ["re_1"]
    assert refunds_of(ctx, "pi_A") == {}


def test_a_refunded_charge_lists_the_refunds_it_carries(ctx: Context) -> None:
    refunds = {"object": "list", "data": [listed("re_1"), listed("re_2", amount=50)]}
    run_handlers(ROUTER, charge("charge.refunded", 100, refunded=True, refunds=refunds), ctx)

    assert {k: v["amount"] for k, v in refunds_of(ctx).items()} == {"re_1": 100, "re_2": 50}
    assert stored(ctx, "refunds", "re_2")["object"]["amount"] == 50
    assert stored(ctx, "charges", "ch_A")["object"]["refunded"] is True


def test_a_refunded_charge_without_a_list_lists_nothing(ctx: Context) -> None:
    # Since API version 2022-11-15 a charge carries its refunds only when expanded.
    run_handlers(ROUTER, charge("charge.refunded", 100, refunds=None), ctx)
    assert refunds_of(ctx) == {}
    assert stored(ctx, "charges", "ch_A")["object"]["refunds"] is None


def test_an_older_charge_event_arriving_late_changes_nothing(ctx: Context) -> None:
    run_handlers(ROUTER, charge("charge.refunded", 200, refunded=True, amount_refunded=100), ctx)
    run_handlers(ROUTER, charge("charge.succeeded", 100, refunded=False, amount_refunded=0), ctx)
    assert stored(ctx, "charges", "ch_A")["object"]["amount_refunded"] == 100


def test_an_older_refund_event_arriving_late_changes_nothing(ctx: Context) -> None:
    run_handlers(ROUTER, refund("refund.updated", 200, status="succeeded"), ctx)
    run_handlers(ROUTER, refund("refund.created", 100, status="pending"), ctx)
    assert refunds_of(ctx)["re_1"]["status"] == "succeeded"
    assert stored(ctx, "refunds", "re_1")["object"]["status"] == "succeeded"


def test_a_late_refunded_charge_does_not_undo_a_newer_refund_event(ctx: Context) -> None:
    run_handlers(ROUTER, refund("refund.updated", 200, status="failed"), ctx)
    refunds = {"object": "list", "data": [listed("re_1", status="pending")]}
    run_handlers(ROUTER, charge("charge.refunded", 100, refunds=refunds), ctx)
    assert refunds_of(ctx)["re_1"]["status"] == "failed"


def test_a_stale_refunded_charge_still_lists_a_refund_never_seen(ctx: Context) -> None:
    # Each refund in the list is ordered on its own, not with the charge that carries it.
    run_handlers(ROUTER, charge("charge.succeeded", 200), ctx)
    refunds = {"object": "list", "data": [listed("re_9")]}
    run_handlers(ROUTER, charge("charge.refunded", 100, refunds=refunds), ctx)
    assert list(refunds_of(ctx)) == ["re_9"]
    assert stored(ctx, "charges", "ch_A")["version"]["event_type"] == "charge.succeeded"


def test_a_duplicate_delivery_changes_nothing(ctx: Context) -> None:
    event = refund("refund.created", 100, status="pending")
    run_handlers(ROUTER, event, ctx)
    first = (stored(ctx, "refunds", "re_1"), refunds_of(ctx))
    run_handlers(ROUTER, event, ctx)
    assert (stored(ctx, "refunds", "re_1"), refunds_of(ctx)) == first
