"""Checkout: keep each Checkout Session, and fulfil each paid order exactly once.

`fulfil_order` below is THE function to replace: give the customer what they bought
(grant access, ship the parcel, e-mail the licence key). The rest is plumbing.

It is called once per session, once the payment is settled: on `completed` when
`payment_status` is "paid" or "no_payment_required" (cards, free orders), or else on
`async_payment_succeeded` (bank debits, which complete "unpaid" and settle days later).
Each handler runs once per event, but Stripe may send both events, in either order: the
"fulfilments" record, keyed by session id, makes it once per session. Every session,
expired ones too, is kept in "checkout_sessions".
"""

from __future__ import annotations

from typing import Any

import stripe

from chalicelib.stripe_events import Context, Router
from chalicelib.stripe_events.projection import apply_snapshot

router = Router("checkout")

SETTLED = {"paid", "no_payment_required"}


def fulfil_order(session: dict[str, Any], ctx: Context) -> None:
    """Deliver the order of a paid Checkout Session. Replace this body with your own.

    `session` is the Checkout Session as plain JSON. Raise to have it retried. It can
    run twice for one session after a crash (see `fulfil_when_paid`), so key what you do
    by `session["id"]`, e.g. as the Idempotency-Key of the API calls you make.
    """
    ctx.store.put(
        "orders",
        session["id"],
        {
            "session": session["id"],
            "customer": session.get("customer"),
            "email": (session.get("customer_details") or {}).get("email"),
            "client_reference_id": session.get("client_reference_id"),
            "amount_total": session.get("amount_total"),
            "currency": session.get("currency"),
            "metadata": session.get("metadata") or {},
        },
    )
    ctx.log.info("fulfilled the order of checkout session %s", session["id"])


@router.on(
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
)
def save_session(event: stripe.Event, ctx: Context) -> None:
    if not apply_snapshot(ctx, "checkout_sessions", event):
        ctx.log.info("kept the stored session: %s %s is not newer", event.type, event.id)


@router.on("checkout.session.completed", "checkout.session.async_payment_succeeded")
def fulfil_when_paid(event: stripe.Event, ctx: Context) -> None:
    session = event.data.object.to_dict(for_json=True)
    # async_payment_succeeded carries payment_status "paid": one rule covers both events.
    if session["payment_status"] not in SETTLED:
        ctx.log.info("session %s is not paid yet: waiting to fulfil", session["id"])
        return
    # Whatever the arrival order (apply_snapshot's answer does not matter here): once
    # paid, a session stays paid, and the first event that says so fulfils it.
    if ctx.store.get("fulfilments", session["id"]) is not None:
        ctx.log.info("session %s is already fulfilled", session["id"])
        return
    fulfil_order(session, ctx)
    # Recorded only after fulfil_order returned: if it raises, the retry fulfils. A crash
    # between these two lines makes the retry call fulfil_order again (at least once,
    # never zero times), hence "key what you do by the session id" above. Recording first
    # would turn that crash into a paid order never delivered. (Two settling events of one
    # session handled at the same moment could both fulfil too; Stripe sends only one.)
    ctx.store.put("fulfilments", session["id"], {"event_id": event.id, "event_type": event.type})


@router.on("checkout.session.async_payment_failed")
def record_failed_payment(event: stripe.Event, ctx: Context) -> None:
    # The session stays "complete" and "unpaid", like one still waiting to settle; this
    # record tells them apart (and is where to ask the customer for another way to pay).
    session = event.data.object.to_dict(for_json=True)
    ctx.store.put(
        "checkout_payment_failures",
        session["id"],
        {
            "session": session["id"],
            "customer": session.get("customer"),
            "payment_intent": session.get("payment_intent"),
            "event_id": event.id,
        },
    )
    ctx.log.warning("the payment of checkout session %s failed", session["id"])
