"""Billing flows end to end: signed events through the webhook and the local bus.

Each flow is also delivered shuffled and duplicated (Stripe's retries at the webhook, and
EventBridge's at-least-once delivery behind it): the end state must be the same.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.test import Client

from chalicelib.resources.billing_state import customer_state
from stripe_events._envelope import parse_event, to_entry
from stripe_events_testing import samples
from tests.helpers import ROOT, load_app, local_stage_env, signed_headers

CUSTOMER, SUBSCRIPTION, INVOICE_1, INVOICE_2 = "cus_F", "sub_F", "in_F1", "in_F2"
CHARGE, PAYMENT, REFUND, DISPUTE, SESSION = "ch_F", "pi_F", "re_F", "dp_F", "cs_F"
T0 = 1_767_225_600  # 2026-01-01
PRO = {"id": "price_pro", "product": "prod_pro", "lookup_key": "pro", "object": "price"}


def subscription(status: str) -> dict[str, Any]:
    item = {"id": "si_F", "object": "subscription_item", "price": PRO, "quantity": 1}
    items = {"object": "list", "data": [item], "has_more": False}
    return {"id": SUBSCRIPTION, "customer": CUSTOMER, "status": status, "items": items}


def invoice(invoice_id: str, status: str, attempts: int) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "customer": CUSTOMER,
        "subscription": SUBSCRIPTION,
        "status": status,
        "attempt_count": attempts,
        "amount_due": 2000,
        "amount_paid": 2000 if status == "paid" else 0,
        "amount_remaining": 0 if status == "paid" else 2000,
        "hosted_invoice_url": f"https://invoice.stripe.com/i/{invoice_id}",
        "next_payment_attempt": None if status == "paid" else T0 + 86_400 * 40,
    }


Step = tuple[str, dict[str, Any]]

SIGN_UP: list[Step] = [
    ("customer.created", {"id": CUSTOMER, "email": "flo@example.com"}),
    (
        "checkout.session.completed",
        {
            "id": SESSION,
            "customer": CUSTOMER,
            "subscription": SUBSCRIPTION,
            "payment_status": "paid",
            "status": "complete",
            "mode": "subscription",
        },
    ),
    ("customer.subscription.created", subscription("active")),
    ("invoice.paid", invoice(INVOICE_1, "paid", 1)),
]
RENEWAL_FAILS: list[Step] = [
    ("invoice.payment_failed", invoice(INVOICE_2, "open", 1)),
    ("customer.subscription.updated", subscription("past_due")),
]
RECOVERED: list[Step] = [
    ("invoice.paid", invoice(INVOICE_2, "paid", 2)),
    ("customer.subscription.updated", subscription("active")),
]
REFUND_AFTER_CHARGE: list[Step] = [
    ("charge.succeeded", {"id": CHARGE, "customer": CUSTOMER, "payment_intent": PAYMENT}),
    (
        "refund.created",
        {"id": REFUND, "charge": CHARGE, "payment_intent": PAYMENT, "status": "succeeded"},
    ),
]
DISPUTE_WON: list[Step] = [
    ("charge.dispute.created", {"id": DISPUTE, "charge": CHARGE, "status": "needs_response"}),
    ("charge.dispute.closed", {"id": DISPUTE, "charge": CHARGE, "status": "won"}),
]


def events_of(*flows: list[Step]) -> list[dict[str, Any]]:
    """The flows one after the other, a second apart, as Stripe would send them."""
    steps = [step for flow in flows for step in flow]
    return [
        samples.sample_event(event_type, event_id=f"evt_F{i:02d}", created=T0 + i, changes=changes)
        for i, (event_type, changes) in enumerate(steps)
    ]


@dataclass
class LocalApp:
    module: ModuleType
    client: Client

    def post(self, event: dict[str, Any]) -> None:
        body = samples.encode(event)
        headers = signed_headers(body, self.module.events.settings.webhook_secrets[0])
        response = self.client.http.post("/stripe/webhook", headers=headers, body=body)
        assert response.status_code == 200, response.body

    def redeliver(self, event: dict[str, Any]) -> None:
        """EventBridge delivers the same entry again, behind the webhook's duplicate check."""
        text = json.dumps(event)
        settings = self.module.events.settings
        self.module.events.publisher.publish(to_entry(text, parse_event(text, None), settings))

    def state(self) -> dict[str, Any]:
        store = self.module.events.store
        found = customer_state(store, CUSTOMER)
        assert found is not None
        notices = self.module.events.notifier.sent()
        return {
            **found,
            "refunds": sorted(store.children("payment_refunds", PAYMENT)),
            "fulfilled": store.get("fulfilments", SESSION) is not None,
            "dispute_alerts": sum(n.kind == "dispute_created" for n in notices),
            "dunning_notices": sum(n.kind == "dunning" for n in notices),
        }


def local_app(state_dir: Path) -> LocalApp:
    module = load_app({**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(state_dir)})
    return LocalApp(module, Client(module.app, stage_name="local", project_dir=str(ROOT)))


def deliver_in_order(state_dir: Path, events: list[dict[str, Any]]) -> LocalApp:
    app = local_app(state_dir)
    for event in events:
        app.post(event)
    return app


def test_sign_up_then_renewal_fails_then_recovers(tmp_path: Path) -> None:
    app = deliver_in_order(tmp_path, events_of(SIGN_UP))
    state = app.state()
    assert state["entitlements"] == ["pro"]
    assert [s["status"] for s in state["subscriptions"]] == ["active"]
    assert state["fulfilled"] and state["open_invoices"] == []

    for event in events_of(SIGN_UP, RENEWAL_FAILS)[len(SIGN_UP) :]:
        app.post(event)
        app.post(event)  # Stripe's retry: acknowledged, not handled twice
    state = app.state()
    assert state["entitlements"] == []
    assert [s["status"] for s in state["subscriptions"]] == ["past_due"]
    assert [i["id"] for i in state["open_invoices"]] == [INVOICE_2]
    assert state["dunning_notices"] == 1

    for event in events_of(SIGN_UP, RENEWAL_FAILS, RECOVERED)[len(SIGN_UP) + 2 :]:
        app.post(event)
    state = app.state()
    assert state["entitlements"] == ["pro"]
    assert state["open_invoices"] == []
    assert state["dunning_notices"] == 1


def test_a_refund_after_a_charge_and_a_dispute_won(tmp_path: Path) -> None:
    app = deliver_in_order(tmp_path, events_of(SIGN_UP, REFUND_AFTER_CHARGE, DISPUTE_WON))
    state = app.state()
    assert state["refunds"] == [REFUND]
    assert state["open_disputes"] == []
    assert state["dispute_alerts"] == 1


FLOWS = {
    "sign up": [SIGN_UP],
    "renewal fails": [SIGN_UP, RENEWAL_FAILS],
    "recovered": [SIGN_UP, RENEWAL_FAILS, RECOVERED],
    "refund and dispute": [SIGN_UP, REFUND_AFTER_CHARGE, DISPUTE_WON],
}


@pytest.mark.parametrize("flow", FLOWS)
@pytest.mark.parametrize("seed", range(3))
def test_shuffled_and_duplicated_deliveries_end_in_the_same_state(
    tmp_path: Path, flow: str, seed: int
) -> None:
    events = events_of(*FLOWS[flow])
    expected = deliver_in_order(tmp_path / "ordered", events).state()

    shuffled = events + random.Random(seed).sample(events, k=len(events) // 2)
    random.Random(seed).shuffle(shuffled)
    app = local_app(tmp_path / "shuffled")
    for event in shuffled:
        app.post(event)
    for event in random.Random(seed + 100).sample(events, k=3):
        app.redeliver(event)
    state = app.state()
    # A payment failure that arrives after the invoice was paid sends no dunning notice.
    assert state.pop("dunning_notices") <= expected.pop("dunning_notices")
    assert state == expected
