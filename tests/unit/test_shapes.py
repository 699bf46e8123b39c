"""Every payload shape Stripe has sent: handlers use what a shape has and never fail on it.

Endpoints and accounts pinned to older API versions still receive events in those
versions' shapes: fields that a later version removed or renamed are still there, and
the new ones may be missing. The shapes below follow Stripe's API changelog
(docs.stripe.com/changelog), and real payloads of those versions where the changelog
does not show them. Then every handler gets Stripe's example object with fields taken
away, and must not raise: a handler that raises on a shape would fail on every retry.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import stripe
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.resources import billing_state, checkout, subscriptions
from stripe_events._catalog import is_thin
from stripe_events._context import Context
from stripe_events._router import Router
from stripe_events_testing import module_context, outbox, run_handlers, samples
from tests.helpers import FakeStripe, resource_routers

T = 1_500_000_000
ROUTERS = resource_routers()


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return module_context(tmp_path)


def event(event_type: str, obj: dict[str, Any], api_version: str) -> stripe.Event:
    data = samples.sample_event(event_type, created=T)
    data["data"]["object"] = obj  # the whole object in the old shape, nothing of today's
    data["api_version"] = api_version
    return stripe.Event.construct_from(data, None)


def handle(ctx: Context, *events: stripe.Event) -> None:
    for e in events:
        for router in ROUTERS:
            run_handlers(router, e, ctx)


# Plans, in two shapes: before 2018-02-05 a plan had a name and no product; since then a
# product and a nickname ("Plans now link to individual products", 2018-02-05). Plans
# never had a lookup key; prices do.
PLAN_2017 = {
    "id": "developer",
    "object": "plan",
    "amount": 2500,
    "currency": "usd",
    "interval": "month",
    "interval_count": 1,
    "name": "Developer",
}
PLAN_2018 = {**PLAN_2017, "id": "gold", "product": "prod_gold", "nickname": "Gold"}
del PLAN_2018["name"]


def old_subscription() -> dict[str, Any]:
    return {"id": "sub_old", "object": "subscription", "customer": "cus_old", "status": "active"}


def test_items_with_a_plan_and_no_price_grant_the_plans_product(ctx: Context) -> None:
    # API 2017-08-15 to 2020-03-02: items carry `plan`; `price` came with the Prices API
    # (April 2020). The top-level `plan` and `quantity` were still there.
    item = {"id": "si_old", "object": "subscription_item", "plan": PLAN_2018, "quantity": 2}
    items = {"object": "list", "data": [item], "has_more": False, "total_count": 1}
    sub = old_subscription() | {"items": items, "plan": PLAN_2018, "quantity": 2}
    handle(ctx, event("customer.subscription.created", sub, "2018-02-28"))
    assert subscriptions.entitlements(ctx.store, "cus_old")["features"] == ["prod_gold"]
    [summary] = ctx.store.children("customer_subscriptions", "cus_old").values()
    assert summary["items"] == [
        {"price": "gold", "product": "prod_gold", "lookup_key": None, "quantity": 2}
    ]


def test_a_plan_from_before_products_grants_its_own_id(ctx: Context) -> None:
    item = {"id": "si_old", "object": "subscription_item", "plan": PLAN_2017, "quantity": 1}
    items = {"object": "list", "data": [item], "has_more": False, "total_count": 1}
    handle(
        ctx,
        event("customer.subscription.created", old_subscription() | {"items": items}, "2017-08-15"),
    )
    assert subscriptions.entitlements(ctx.store, "cus_old")["features"] == ["developer"]


def test_a_subscription_with_a_top_level_plan_and_no_items(ctx: Context) -> None:
    # Before subscription items (October 2016): one plan and a quantity on the subscription.
    sub = old_subscription() | {"plan": PLAN_2017, "quantity": 3}
    handle(ctx, event("customer.subscription.created", sub, "2016-07-06"))
    assert subscriptions.entitlements(ctx.store, "cus_old")["features"] == ["developer"]
    [summary] = ctx.store.children("customer_subscriptions", "cus_old").values()
    assert summary["items"][0]["quantity"] == 3


def test_a_subscription_with_neither_items_nor_a_plan_grants_nothing(
    ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        handle(ctx, event("customer.subscription.updated", old_subscription(), "2016-07-06"))
    assert subscriptions.entitlements(ctx.store, "cus_old")["features"] == []
    assert "neither items nor a plan" in caplog.text


def test_a_charge_whose_refunds_are_a_plain_array(ctx: Context) -> None:
    # Before 2014-06-17 `charge.refunds` was an array ("changes the refunds property on the
    # Charge object from an array to a sublist object"), and its refunds did not always
    # name their charge; one here has no id at all.
    charge = {
        "id": "ch_old",
        "object": "charge",
        "amount": 1000,
        "amount_refunded": 1000,
        "currency": "usd",
        "customer": "cus_old",
        "refunded": True,
        "refunds": [
            {"id": "re_old", "object": "refund", "amount": 600, "created": T},
            {"amount": 400, "currency": "usd", "created": T, "balance_transaction": "txn_1"},
        ],
    }
    handle(ctx, event("charge.refunded", charge, "2014-05-19"))
    assert ctx.store.children("payment_refunds", "ch_old") == {
        "re_old": {
            "id": "re_old",
            "status": None,  # refunds got a status in 2016
            "amount": 600,
            "currency": "usd",
            "charge": "ch_old",
            "payment_intent": None,
            "reason": None,
        }
    }


@pytest.mark.parametrize("refunds", ["absent", None, {"object": "list", "data": []}])
def test_a_charge_without_refunds(ctx: Context, refunds: Any) -> None:
    # Since 2022-11-15 charges no longer include their refunds.
    charge = {"id": "ch_new", "object": "charge", "amount": 1000, "currency": "usd"}
    if refunds != "absent":
        charge["refunds"] = refunds
    handle(ctx, event("charge.refunded", charge, "2022-11-15"))
    assert ctx.store.get("charges", "ch_new") is not None
    assert ctx.store.children("payment_refunds", "ch_new") == {}


def old_invoice(**fields: Any) -> dict[str, Any]:
    # A 2017-08-15 invoice: booleans, no status (all invoices have one since November 2018).
    return {
        "id": "in_old",
        "object": "invoice",
        "customer": "cus_old",
        "subscription": "sub_old",
        "amount_due": 2500,
        "currency": "usd",
        "attempt_count": 1,
        "attempted": True,
        "closed": False,
        "forgiven": False,
        "paid": False,
        "date": T,
        **fields,
    }


@pytest.mark.parametrize(
    ("fields", "status"),
    [({}, "open"), ({"paid": True, "closed": True}, "paid"), ({"forgiven": True}, "uncollectible")],
)
def test_an_invoice_without_a_status_gets_the_one_its_booleans_mean(
    ctx: Context, fields: dict[str, Any], status: str
) -> None:
    handle(ctx, event("invoice.payment_failed", old_invoice(**fields), "2017-08-15"))
    [summary] = ctx.store.children("customer_invoices", "cus_old").values()
    assert (summary["status"], summary["subscription"]) == (status, "sub_old")
    state = billing_state.customer_state(ctx.store, "cus_old")
    assert state is not None
    assert [i["id"] for i in state["open_invoices"]] == (["in_old"] if status == "open" else [])


def test_an_old_invoice_paid_in_the_same_second_as_its_failure_stays_paid(ctx: Context) -> None:
    paid = event("invoice.payment_succeeded", old_invoice(paid=True), "2017-08-15")
    failed = event("invoice.payment_failed", old_invoice(), "2017-08-15")
    handle(ctx, paid, failed)  # the failure arrives last; the booleans rank it below
    assert ctx.store.children("customer_invoices", "cus_old")["in_old"]["status"] == "paid"
    assert [n.kind for n in outbox(ctx)] == []  # no dunning notice for a paid invoice


def test_an_old_invoice_without_attempts_still_gets_its_dunning_notice(ctx: Context) -> None:
    invoice = old_invoice()
    del invoice["attempt_count"], invoice["currency"]
    handle(ctx, event("invoice.payment_failed", invoice, "2014-03-28"))
    [notice] = outbox(ctx)
    assert (notice.kind, notice.message["attempt_count"]) == ("dunning", None)


def test_a_dispute_from_before_2014_has_no_id_and_an_evidence_due_by(ctx: Context) -> None:
    # A 2013 dispute: no id of its own, `evidence_due_by` (evidence_details came on
    # 2014-12-08), `balance_transaction` (balance_transactions came on 2014-08-20), and
    # a won dispute of a refunded charge said `charge_refunded` until 2014-11-20.
    handle(
        ctx,
        event(
            "charge.succeeded",
            {"id": "ch_d", "object": "charge", "customer": "cus_old"},
            "2013-08-13",
        ),
    )
    dispute = {
        "object": "dispute",
        "charge": "ch_d",
        "amount": 1000,
        "currency": "usd",
        "status": "needs_response",
        "reason": "general",
        "balance_transaction": "txn_1",
        "evidence_due_by": 1_381_190_399,
        "evidence": None,
    }
    handle(ctx, event("charge.dispute.created", dispute, "2013-08-13"))
    [notice] = outbox(ctx)
    assert notice.subject.endswith("evidence due by 2013-10-07 23:59 UTC")
    state = billing_state.customer_state(ctx.store, "cus_old")
    assert state is not None and [d["id"] for d in state["open_disputes"]] == ["ch_d"]

    closed = event("charge.dispute.closed", dispute | {"status": "charge_refunded"}, "2013-08-13")
    closed.created = T + 1
    handle(ctx, closed)
    state = billing_state.customer_state(ctx.store, "cus_old")
    assert state is not None and state["open_disputes"] == []


def test_a_payment_intent_with_a_status_renamed_in_2019(ctx: Context) -> None:
    intent = {
        "id": "pi_old",
        "object": "payment_intent",
        "amount": 1099,
        "currency": "usd",
        "customer": "cus_old",
        "status": "requires_source",
        "next_source_action": None,
        "charges": {"object": "list", "data": [], "has_more": False},
    }
    handle(ctx, event("payment_intent.payment_failed", intent, "2018-11-08"))
    summary = ctx.store.children("customer_payments", "cus_old")["pi_old"]
    assert summary["status"] == "requires_payment_method"


SESSION_2020 = {
    # Before payment_status (September 2020) and status (November 2021); 2020-08-27
    # removed `display_items`, which older versions still send.
    "id": "cs_old",
    "object": "checkout.session",
    "mode": "payment",
    "customer": "cus_old",
    "payment_intent": "pi_old",
    "display_items": [{"amount": 1500, "currency": "usd", "quantity": 1, "type": "custom"}],
}


@pytest.fixture
def fulfilled(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    calls: list[str] = []
    monkeypatch.setattr(checkout, "fulfil_order", lambda session, ctx: calls.append(session["id"]))
    return calls


def test_an_async_payment_success_without_payment_status_is_paid(
    ctx: Context, fulfilled: list[str]
) -> None:
    handle(ctx, event("checkout.session.async_payment_succeeded", SESSION_2020, "2020-03-02"))
    assert fulfilled == ["cs_old"]


def test_a_completion_without_payment_status_and_no_api_key_is_not_guessed(
    ctx: Context, fulfilled: list[str], caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING):
        handle(ctx, event("checkout.session.completed", SESSION_2020, "2020-03-02"))
    assert fulfilled == []
    assert "has no payment_status" in caplog.text and "STRIPE_API_KEY" in caplog.text


@pytest.mark.parametrize(("status", "fulfils"), [("paid", True), ("unpaid", False)])
def test_a_completion_without_payment_status_asks_the_api(
    tmp_path: Path, fake_stripe: FakeStripe, fulfilled: list[str], status: str, fulfils: bool
) -> None:
    current = {**SESSION_2020, "payment_status": status, "status": "complete"}
    fake_stripe.objects["/v1/checkout/sessions/cs_old"] = (200, current)
    ctx = module_context(tmp_path)
    client = fake_stripe.client()
    ctx = Context(ctx.store, ctx.log, ctx.handler, lambda: client, ctx.notifier)
    handle(ctx, event("checkout.session.completed", SESSION_2020, "2020-03-02"))
    assert fulfilled == (["cs_old"] if fulfils else [])
    assert [path for path, _ in fake_stripe.requests] == ["/v1/checkout/sessions/cs_old"]


# Any field missing: the handlers of every module, on Stripe's example objects --------------

# Snapshot events: a thin notification has no object whose fields could be missing.
HANDLED = sorted({(t, r.name) for r in ROUTERS for t in r.event_types() if not is_thin(t)})
ROUTER_OF = {r.name: r for r in ROUTERS}


def stripped(event_type: str, missing: set[str], key: str) -> stripe.Event:
    """Stripe's example event of `event_type`, its object under id `key`, fields missing."""
    data = samples.sample_event(event_type, created=T)
    obj = data["data"]["object"]
    for name in missing - {"id", "object"}:  # every object has these two
        obj.pop(name, None)
    obj["id"] = key  # each case its own object, so that no case hides behind another's state
    return stripe.Event.construct_from(data, None)


def fields_of(event_type: str) -> list[str]:
    obj = samples.sample_event(event_type)["data"]["object"]
    return sorted(set(obj) - {"id", "object"})


@pytest.mark.parametrize(("event_type", "router"), HANDLED)
def test_no_handler_fails_when_any_one_field_is_missing(
    ctx: Context, event_type: str, router: str
) -> None:
    for name in fields_of(event_type):
        handle_twice(ctx, ROUTER_OF[router], stripped(event_type, {name}, f"obj_{name}"))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_handler_fails_when_several_fields_are_missing(
    ctx: Context, data: st.DataObject
) -> None:
    event_type, router = data.draw(st.sampled_from(HANDLED))
    missing = data.draw(st.sets(st.sampled_from(fields_of(event_type)), min_size=2))
    key = "obj_" + "_".join(sorted(missing))
    handle_twice(ctx, ROUTER_OF[router], stripped(event_type, missing, key))


def handle_twice(ctx: Context, router: Router, e: stripe.Event) -> None:
    run_handlers(router, e, ctx)
    run_handlers(router, e, ctx)  # and again, as a retry would
