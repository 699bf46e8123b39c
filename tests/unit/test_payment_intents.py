"""The payment_intents module, called directly: no AWS, no Chalice."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import stripe

from chalicelib.resources import payment_intents
from stripe_events._context import Context
from stripe_events_testing import event_of, module_context, run_handlers

ROUTER = payment_intents.router
DECLINED = {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return module_context(tmp_path)


def payment(ctx: Context, intent_id: str = "pi_A", customer: str = "cus_A") -> dict[str, Any]:
    return ctx.store.children("customer_payments", customer)[intent_id]


def intent(event_type: str, created: int, **changes: Any) -> stripe.Event:
    return event_of(event_type, created, **({"id": "pi_A", "customer": "cus_A"} | changes))


def test_the_module_handles_the_payment_intent_lifecycle() -> None:
    assert ROUTER.name == "payment_intents"
    assert ROUTER.event_types() == [
        "payment_intent.canceled",
        "payment_intent.created",
        "payment_intent.payment_failed",
        "payment_intent.processing",
        "payment_intent.requires_action",
        "payment_intent.succeeded",
    ]


@pytest.mark.parametrize(
    ("event_type", "status", "error", "last_error"),
    [
        ("payment_intent.created", "requires_payment_method", None, None),
        ("payment_intent.processing", "processing", None, None),
        ("payment_intent.requires_action", "requires_action", None, None),
        ("payment_intent.succeeded", "succeeded", None, None),
        ("payment_intent.payment_failed", "requires_payment_method", DECLINED, DECLINED["message"]),
        ("payment_intent.canceled", "canceled", None, None),
    ],
)
def test_each_event_keeps_the_payment_under_its_customer(
    ctx: Context,
    event_type: str,
    status: str,
    error: dict[str, str] | None,
    last_error: str | None,
) -> None:
    event = intent(event_type, 100, status=status, amount=2500, last_payment_error=error)
    run_handlers(ROUTER, event, ctx)

    assert payment(ctx) == {
        "id": "pi_A",
        "status": status,
        "amount": 2500,
        "currency": "usd",
        "last_error": last_error,
    }
    stored = ctx.store.get("payment_intents", "pi_A")
    assert stored is not None
    assert stored["version"]["event_id"] == event.id


def test_an_error_without_a_message_is_kept_as_none(ctx: Context) -> None:
    # Stripe's example object has an error with a type and no message.
    run_handlers(ROUTER, intent("payment_intent.payment_failed", 100), ctx)
    assert payment(ctx)["last_error"] is None


def test_a_retried_payment_forgets_the_earlier_failure(ctx: Context) -> None:
    failed = intent(
        "payment_intent.payment_failed",
        100,
        status="requires_payment_method",
        last_payment_error=DECLINED,
    )
    run_handlers(ROUTER, failed, ctx)
    assert payment(ctx)["last_error"] == "Your card was declined."

    paid = intent("payment_intent.succeeded", 200, status="succeeded", last_payment_error=None)
    run_handlers(ROUTER, paid, ctx)
    assert (payment(ctx)["status"], payment(ctx)["last_error"]) == ("succeeded", None)


def test_an_older_event_arriving_late_changes_nothing(ctx: Context) -> None:
    run_handlers(ROUTER, intent("payment_intent.succeeded", 200, status="succeeded"), ctx)
    late = intent(
        "payment_intent.payment_failed",
        100,
        status="requires_payment_method",
        last_payment_error=DECLINED,
    )
    run_handlers(ROUTER, late, ctx)

    assert (payment(ctx)["status"], payment(ctx)["last_error"]) == ("succeeded", None)


@pytest.mark.parametrize("succeeded_first", [True, False])
def test_within_one_second_success_wins_in_any_order(ctx: Context, succeeded_first: bool) -> None:
    events = [
        intent("payment_intent.succeeded", 100, status="succeeded"),
        intent("payment_intent.processing", 100, status="processing"),
    ]
    for event in events if succeeded_first else reversed(events):
        run_handlers(ROUTER, event, ctx)
    assert payment(ctx)["status"] == "succeeded"


def test_a_duplicate_delivery_changes_nothing(ctx: Context) -> None:
    event = intent("payment_intent.processing", 100, status="processing")
    run_handlers(ROUTER, event, ctx)
    first = ctx.store.get("payment_intents", "pi_A")
    run_handlers(ROUTER, event, ctx)
    assert ctx.store.get("payment_intents", "pi_A") == first
    assert list(ctx.store.children("customer_payments", "cus_A")) == ["pi_A"]


def test_a_guest_payment_is_kept_under_no_customer(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_index(*args: Any) -> None:
        raise AssertionError(f"indexed a payment without a customer: {args}")

    monkeypatch.setattr(ctx.store, "put_child_if_newer", no_index)
    run_handlers(ROUTER, intent("payment_intent.succeeded", 100, customer=None), ctx)
    assert ctx.store.get("payment_intents", "pi_A") is not None
