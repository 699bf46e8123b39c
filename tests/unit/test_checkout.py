"""The checkout module, called directly: fulfilment once per paid session, in any order."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import stripe

from chalicelib.resources import checkout
from stripe_events._context import Context
from stripe_events_testing import event_of, module_context, run_handlers, samples

SESSION = "cs_test_A"
COMPLETED = "checkout.session.completed"
SUCCEEDED = "checkout.session.async_payment_succeeded"
FAILED = "checkout.session.async_payment_failed"
EXPIRED = "checkout.session.expired"


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return module_context(tmp_path)


@pytest.fixture
def fulfilled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Stands in for fulfil_order (yours or the default): the session ids it was called with."""
    calls: list[str] = []

    def counting(session: dict[str, Any], ctx: Context) -> None:
        calls.append(session["id"])

    monkeypatch.setattr(checkout, "fulfil_order", counting)
    return calls


def session_event(event_type: str, created: int, **changes: Any) -> stripe.Event:
    paid = event_type == SUCCEEDED
    fields: dict[str, Any] = {"id": SESSION, "status": "complete", "customer": "cus_A"}
    fields["payment_status"] = "paid" if paid else "unpaid"
    return event_of(event_type, created, **{**fields, **changes})


def fulfilment(ctx: Context, session: str) -> tuple[str, str]:
    """The event that fulfilled the session, and its type."""
    record = ctx.store.get("fulfilments", session)
    assert record is not None and record["claim"] == "done", record
    return record["event_id"], record["event_type"]


def stored_session(ctx: Context) -> dict[str, Any]:
    item = ctx.store.get("checkout_sessions", SESSION)
    assert item is not None
    return item


def test_the_module_handles_the_four_session_events() -> None:
    assert checkout.router.event_types() == [FAILED, SUCCEEDED, COMPLETED, EXPIRED]


def test_the_default_fulfil_order_records_the_order(ctx: Context) -> None:
    # Replace this test with one of your own when you replace fulfil_order.
    completed = session_event(COMPLETED, 100, payment_status="paid", amount_total=2000)
    run_handlers(checkout.router, completed, ctx)
    order = ctx.store.get("orders", SESSION)
    assert order is not None
    assert (order["session"], order["customer"], order["amount_total"]) == (SESSION, "cus_A", 2000)
    assert order["email"] == "example@example.com"  # from Stripe's example customer_details


@pytest.mark.parametrize("payment_status", ["paid", "no_payment_required"])
def test_a_completed_and_settled_session_is_fulfilled_once(
    ctx: Context, fulfilled: list[str], payment_status: str
) -> None:
    completed = session_event(COMPLETED, 100, payment_status=payment_status)
    run_handlers(checkout.router, completed, ctx)
    run_handlers(checkout.router, completed, ctx)  # delivered again
    assert fulfilled == [SESSION]
    assert fulfilment(ctx, SESSION) == (completed.id, COMPLETED)
    assert stored_session(ctx)["object"]["payment_status"] == payment_status


def test_an_unpaid_completion_waits_for_the_async_payment(
    ctx: Context, fulfilled: list[str]
) -> None:
    run_handlers(checkout.router, session_event(COMPLETED, 100), ctx)
    assert fulfilled == []
    assert ctx.store.get("fulfilments", SESSION) is None

    succeeded = session_event(SUCCEEDED, 200)
    run_handlers(checkout.router, succeeded, ctx)
    assert fulfilled == [SESSION]
    assert fulfilment(ctx, SESSION) == (succeeded.id, SUCCEEDED)
    assert stored_session(ctx)["object"]["payment_status"] == "paid"


@pytest.mark.parametrize("completed_status", ["unpaid", "paid"])
def test_both_events_in_any_order_and_duplicated_fulfil_once(
    ctx: Context, fulfilled: list[str], completed_status: str
) -> None:
    # Every distinct order of two deliveries of each event: 6 sequences, one session each.
    arrivals = sorted(set(itertools.permutations([COMPLETED, COMPLETED, SUCCEEDED, SUCCEEDED])))
    assert len(arrivals) == 6
    for n, arrival in enumerate(arrivals):
        session = f"cs_test_{n}"
        events = {
            COMPLETED: session_event(COMPLETED, 100, id=session, payment_status=completed_status),
            SUCCEEDED: session_event(SUCCEEDED, 200, id=session),
        }
        fulfilled.clear()
        for event_type in arrival:
            run_handlers(checkout.router, events[event_type], ctx)
        assert fulfilled == [session], f"arrival order {arrival}"
        # The first settling event to arrive fulfils.
        first = next(t for t in arrival if t == SUCCEEDED or completed_status == "paid")
        assert fulfilment(ctx, session) == (events[first].id, first)
        # Whatever the order, the newest snapshot stays: the settled one.
        stored = ctx.store.get("checkout_sessions", session)
        assert stored is not None
        assert stored["version"]["event_id"] == events[SUCCEEDED].id
        assert stored["object"]["payment_status"] == "paid"


def test_an_older_event_arriving_late_changes_nothing(ctx: Context, fulfilled: list[str]) -> None:
    succeeded = session_event(SUCCEEDED, 200, amount_total=500)
    run_handlers(checkout.router, succeeded, ctx)
    run_handlers(checkout.router, session_event(COMPLETED, 100, amount_total=1), ctx)
    assert stored_session(ctx)["version"]["event_id"] == succeeded.id
    assert stored_session(ctx)["object"]["amount_total"] == 500
    assert fulfilled == [SESSION]


def test_a_settling_event_that_loses_the_same_second_tie_still_fulfils(
    ctx: Context, fulfilled: list[str]
) -> None:
    def same_second(event_type: str, event_id: str, payment_status: str) -> stripe.Event:
        changes = {"id": SESSION, "status": "complete", "payment_status": payment_status}
        data = samples.sample_event(event_type, event_id=event_id, created=100, changes=changes)
        return stripe.Event.construct_from(data, None)

    run_handlers(checkout.router, same_second(COMPLETED, "evt_b", "unpaid"), ctx)
    run_handlers(checkout.router, same_second(SUCCEEDED, "evt_a", "paid"), ctx)
    # The snapshot cannot order these two (same second, same status): the greater id stays.
    assert stored_session(ctx)["version"]["event_id"] == "evt_b"
    assert fulfilled == [SESSION]


def test_a_failed_async_payment_is_recorded_and_never_fulfilled(
    ctx: Context, fulfilled: list[str]
) -> None:
    run_handlers(checkout.router, session_event(COMPLETED, 100), ctx)
    failed = session_event(FAILED, 200, payment_intent="pi_A")
    run_handlers(checkout.router, failed, ctx)
    run_handlers(checkout.router, failed, ctx)
    assert fulfilled == []
    assert ctx.store.get("fulfilments", SESSION) is None
    assert ctx.store.get("checkout_payment_failures", SESSION) == {
        "session": SESSION,
        "customer": "cus_A",
        "payment_intent": "pi_A",
        "event_id": failed.id,
    }
    assert stored_session(ctx)["version"]["event_id"] == failed.id


def test_a_failing_fulfilment_is_not_recorded_and_the_retry_fulfils_once(
    ctx: Context, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[str] = []

    def out_of_stock(session: dict[str, Any], ctx: Context) -> None:
        calls.append(session["id"])
        raise RuntimeError("warehouse unreachable")

    completed = session_event(COMPLETED, 100, payment_status="paid")
    monkeypatch.setattr(checkout, "fulfil_order", out_of_stock)
    with pytest.raises(RuntimeError, match="warehouse unreachable"):
        run_handlers(checkout.router, completed, ctx)
    assert ctx.store.get("fulfilments", SESSION) is None

    monkeypatch.setattr(checkout, "fulfil_order", lambda s, c: calls.append(s["id"]))
    run_handlers(checkout.router, completed, ctx)  # Lambda's retry of the same event
    run_handlers(checkout.router, completed, ctx)
    assert calls == [SESSION, SESSION]  # the failed attempt, then one fulfilment
    assert fulfilment(ctx, SESSION) == (completed.id, COMPLETED)


def test_an_expired_session_is_kept_and_not_fulfilled(ctx: Context, fulfilled: list[str]) -> None:
    expired = session_event(EXPIRED, 100, status="expired")
    run_handlers(checkout.router, expired, ctx)
    run_handlers(checkout.router, expired, ctx)
    stored = stored_session(ctx)
    assert (stored["object"]["status"], stored["version"]["event_id"]) == ("expired", expired.id)
    assert fulfilled == []
