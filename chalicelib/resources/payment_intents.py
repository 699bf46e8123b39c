"""Payment intents: the state of each payment, and each customer's payments.

A PaymentIntent follows one payment from creation to success, failure or
cancellation. We keep:

- "payment_intents": the newest snapshot of each intent (see `apply_snapshot`);
- "customer_payments": under the customer's id, one small record per intent, with the
  message of the last failure, so that a billing page can say why a card was declined.

A payment without a customer (a guest checkout) is kept, but under no customer. The
statuses API versions before 2019-02-11 named otherwise are given their current names.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stripe_events import Context, Router

if TYPE_CHECKING:
    import stripe

router = Router("payment_intents")

# Renamed by API version 2019-02-11.
RENAMED_STATUSES = {
    "requires_source": "requires_payment_method",
    "requires_source_action": "requires_action",
}


@router.on(
    "payment_intent.created",
    "payment_intent.processing",
    "payment_intent.requires_action",
    "payment_intent.succeeded",
    "payment_intent.payment_failed",
    "payment_intent.canceled",
)
def save_payment_intent(event: stripe.Event, ctx: Context) -> None:
    # A stale event must not overwrite the index either: the snapshot decides for both.
    if not ctx.apply_snapshot("payment_intents", event):
        ctx.log.info("kept the stored payment intent: %s %s is not newer", event.type, event.id)
        return
    intent = event.data.object.to_dict(for_json=True)
    customer = intent.get("customer")
    if isinstance(customer, dict):  # expanded
        customer = customer.get("id")
    if not isinstance(customer, str):
        return
    # Stripe clears last_payment_error whenever the intent is updated again, so this is
    # the error of the latest attempt, or None: never one from an attempt since retried.
    error = intent.get("last_payment_error") or {}
    status = intent.get("status")
    summary = {
        "id": intent["id"],
        "status": RENAMED_STATUSES.get(status, status) if isinstance(status, str) else None,
        "amount": intent.get("amount"),
        "currency": intent.get("currency"),
        "last_error": error.get("message"),
    }
    ctx.keep_if_newer("customer_payments", intent["id"], summary, event, parent=customer)
