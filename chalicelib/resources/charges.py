"""Charges and refunds: keep each one, and list the refunds of each payment.

We keep:

- "charges": the newest snapshot of each charge. The disputes module reads it to find
  the customer of a dispute, which names only its charge.
- "refunds": the newest snapshot of each refund.
- "payment_refunds": under the refunded PaymentIntent's id (a charge's id for a charge
  made without one), one small record per refund, so that a payment lists its refunds.

A refund is seen in its own events, and also in the `refunds` of a refunded charge (API
versions before 2022-11-15, or when the list is expanded; before 2014-06-17 a plain
array, whose refunds may lack `charge`). Both go through `apply_snapshot` as refunds, so
whichever arrives last, the newest state wins.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stripe_events import Context, Router

if TYPE_CHECKING:
    import stripe

router = Router("charges")


@router.on("charge.succeeded", "charge.failed", "charge.captured", "charge.refunded")
def save_charge(event: stripe.Event, ctx: Context) -> None:
    if not ctx.apply_snapshot("charges", event):
        ctx.log.info("kept the stored charge: %s %s is not newer", event.type, event.id)
    # Each listed refund is versioned on its own, so a stale charge may still hold news.
    charge = event.data.object.to_dict(for_json=True)
    for refund in refunds_of(charge):
        if not isinstance(refund.get("id"), str):
            ctx.log.warning("a refund of charge %s has no id: not kept", charge["id"])
            continue
        # Refunds listed in a charge name it, except in the oldest API versions.
        refund = {"charge": charge["id"], "currency": charge.get("currency"), **refund}
        save_refund(_refund_event(event, refund), ctx)


@router.on("refund.created", "refund.updated", "refund.failed")
def save_refund(event: stripe.Event, ctx: Context) -> None:
    if not ctx.apply_snapshot("refunds", event):
        ctx.log.info("kept the stored refund: %s %s is not newer", event.type, event.id)
        return
    refund = event.data.object.to_dict(for_json=True)
    payment = refund.get("payment_intent") or refund.get("charge")
    if payment is None:
        ctx.log.warning("refund %s names no payment or charge: not listed", refund["id"])
        return
    summary = {
        "id": refund["id"],
        "status": refund.get("status"),
        "amount": refund.get("amount"),
        "currency": refund.get("currency"),
        "charge": refund.get("charge"),
        "payment_intent": refund.get("payment_intent"),
        "reason": refund.get("reason"),
    }
    ctx.keep_if_newer("payment_refunds", refund["id"], summary, event, parent=payment)


def refunds_of(charge: dict[str, Any]) -> list[dict[str, Any]]:
    """The refunds a charge lists: a list object, a plain array (before 2014-06-17), or none."""
    refunds = charge.get("refunds")
    if isinstance(refunds, dict):
        refunds = refunds.get("data")
    return [r for r in refunds or [] if isinstance(r, dict)]


def _refund_event(charge_event: stripe.Event, refund: dict[str, Any]) -> stripe.Event:
    """The refund as the charge event shows it, versioned by that event."""
    import stripe  # here, not at the top: the webhook function imports this module too

    envelope = {
        "id": charge_event.id,
        "object": "event",
        "type": charge_event.type,
        "created": charge_event.created,
        "data": {"object": refund},
    }
    return stripe.Event.construct_from(envelope, None)
