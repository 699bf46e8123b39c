"""The payouts module, called directly: keep each payout, alert once per failure."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import stripe

from chalicelib.resources import payouts
from stripe_events._context import Context
from stripe_events_testing import event_of, module_context, outbox, run_handlers, samples

PAYOUT = "po_A"


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return module_context(tmp_path)


def payout_event(event_type: str, created: int, **changes: Any) -> stripe.Event:
    status = "failed" if event_type == "payout.failed" else "paid"
    return event_of(event_type, created, **{"id": PAYOUT, "status": status, **changes})


def failed(created: int) -> stripe.Event:
    return payout_event(
        "payout.failed",
        created,
        amount=125000,
        currency="eur",
        arrival_date=1760000000,
        failure_code="account_closed",
        failure_message="The bank account has been closed.",
    )


def stored_payout(ctx: Context) -> dict[str, Any]:
    item = ctx.store.get("payouts", PAYOUT)
    assert item is not None
    return item


def test_the_module_handles_paid_and_failed_payouts() -> None:
    assert payouts.router.event_types() == ["payout.failed", "payout.paid"]


def test_a_paid_payout_is_kept_without_an_alert(ctx: Context) -> None:
    paid = payout_event("payout.paid", 100)
    run_handlers(payouts.router, paid, ctx)
    assert stored_payout(ctx)["object"]["status"] == "paid"
    assert stored_payout(ctx)["version"]["event_id"] == paid.id
    assert outbox(ctx) == []


def test_a_failed_payout_alerts_once_even_when_delivered_twice(ctx: Context) -> None:
    event = failed(200)
    run_handlers(payouts.router, event, ctx)
    run_handlers(payouts.router, event, ctx)
    [alert] = outbox(ctx)
    assert alert.kind == "payout_failed"
    assert alert.customer is None
    assert "po_A" in alert.subject and "account_closed" in alert.subject
    assert alert.message == {
        "payout": PAYOUT,
        "amount": 125000,
        "currency": "eur",
        "arrival_date": 1760000000,
        "failure_code": "account_closed",
        "failure_message": "The bank account has been closed.",
        "destination": "ba_1Pgc79B7WZ01zgkWoU5vBiXt",
    }
    assert stored_payout(ctx)["object"]["status"] == "failed"


def test_a_payout_that_fails_after_it_was_paid_is_kept_failed(ctx: Context) -> None:
    run_handlers(payouts.router, payout_event("payout.paid", 100), ctx)
    run_handlers(payouts.router, failed(200), ctx)
    assert stored_payout(ctx)["object"]["status"] == "failed"
    assert len(outbox(ctx)) == 1


def test_an_older_event_arriving_late_changes_nothing(ctx: Context) -> None:
    failure = failed(200)
    run_handlers(payouts.router, failure, ctx)
    run_handlers(payouts.router, payout_event("payout.paid", 100), ctx)
    assert stored_payout(ctx)["version"]["event_id"] == failure.id
    assert stored_payout(ctx)["object"]["status"] == "failed"
    assert len(outbox(ctx)) == 1


def test_a_failure_in_the_same_second_as_paid_wins_and_alerts(ctx: Context) -> None:
    def same_second(event_type: str, event_id: str, status: str) -> stripe.Event:
        changes = {"id": PAYOUT, "status": status}
        data = samples.sample_event(event_type, event_id=event_id, created=100, changes=changes)
        return stripe.Event.construct_from(data, None)

    run_handlers(payouts.router, same_second("payout.paid", "evt_b", "paid"), ctx)
    run_handlers(payouts.router, same_second("payout.failed", "evt_a", "failed"), ctx)
    # A failed payout is final (STATUS_RANK), whatever the event ids say.
    assert stored_payout(ctx)["version"]["event_id"] == "evt_a"
    assert stored_payout(ctx)["object"]["status"] == "failed"
    assert [n.kind for n in outbox(ctx)] == ["payout_failed"]


def test_two_failure_events_alert_twice(ctx: Context) -> None:
    # Once per event, not once per payout: a second failed event is a new fact to report.
    run_handlers(payouts.router, failed(200), ctx)
    run_handlers(payouts.router, failed(300), ctx)
    assert len(outbox(ctx)) == 2
