"""Invoices: each invoice's status, amounts and attempts, and a dunning notice on failure.

Stored: "invoices" (the newest snapshot, see `apply_snapshot`), "customer_invoices" (per
customer, each invoice's status, amounts and attempts) and "upcoming_invoices" (per
customer, the next invoice Stripe announced).

Access is not decided here: when a renewal fails, Stripe also sends
`customer.subscription.updated` (past_due), and the subscriptions module takes the
entitlements away; they come back with the update to `active` once it is paid.

Invoices of API versions before 2018-11-08 have no `status`: the summary gives the one
their `paid` and `forgiven` booleans mean (`Context.status_of`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stripe_events import Context, Router

if TYPE_CHECKING:
    import stripe

router = Router("invoices")

COLLECTION = "invoices"
SETTLED = ("paid", "void")
FIELDS = (
    "id",
    "status",
    "currency",
    "amount_due",
    "amount_paid",
    "amount_remaining",
    "attempt_count",
    "next_payment_attempt",
    "hosted_invoice_url",
)


@router.on(
    "invoice.created",
    "invoice.finalized",
    "invoice.paid",
    "invoice.payment_succeeded",
    "invoice.payment_failed",
    "invoice.voided",
    "invoice.marked_uncollectible",
)
def save_invoice(event: stripe.Event, ctx: Context) -> None:
    if not ctx.apply_snapshot(COLLECTION, event):
        ctx.log.info("kept the stored invoice: %s %s is not newer", event.type, event.id)
        return
    invoice = event.data.object.to_dict(for_json=True)
    customer = id_of(invoice.get("customer"))
    if customer is not None:
        summary = {f: invoice.get(f) for f in FIELDS} | {
            "status": ctx.status_of(invoice),
            "subscription": subscription_of(invoice),
        }
        ctx.keep_if_newer("customer_invoices", invoice["id"], summary, event, parent=customer)


@router.on("invoice.payment_failed")
def send_dunning_notice(event: stripe.Event, ctx: Context) -> None:
    invoice = event.data.object.to_dict(for_json=True)
    newest = ctx.store.get(COLLECTION, invoice["id"])
    # Late deliveries: no notice for an invoice since paid or voided, nor for an attempt
    # that a later one (which sent its own notice) superseded.
    if newest is not None and (
        ctx.status_of(newest["object"]) in SETTLED
        or (newest["object"].get("attempt_count") or 0) > (invoice.get("attempt_count") or 0)
    ):
        ctx.log.info(
            "no dunning notice for %s: superseded by %s", event.id, newest["version"]["event_id"]
        )
        return
    customer = id_of(invoice.get("customer"))
    message = {
        "invoice": invoice["id"],
        "customer": customer,
        "subscription": subscription_of(invoice),
        "amount_due": invoice.get("amount_due"),
        "currency": invoice.get("currency"),
        "attempt_count": invoice.get("attempt_count"),
        "hosted_invoice_url": invoice.get("hosted_invoice_url"),
        "next_payment_attempt": invoice.get("next_payment_attempt"),
    }
    # next_payment_attempt is null after the last retry: the subscription then goes to
    # the status set in the Dashboard's retry settings (canceled, unpaid or past_due).
    ctx.notify("dunning", f"Payment failed for invoice {invoice['id']}", message, customer)


@router.on("invoice.upcoming")
def save_upcoming_invoice(event: stripe.Event, ctx: Context) -> None:
    # An upcoming invoice does not exist yet: it has no id, so it is kept per customer.
    invoice = event.data.object.to_dict(for_json=True)
    customer = id_of(invoice.get("customer"))
    if customer is None:
        ctx.log.info("upcoming invoice without a customer in %s: not kept", event.id)
        return
    upcoming = {
        "customer": customer,
        "subscription": subscription_of(invoice),
        "currency": invoice.get("currency"),
        "amount_due": invoice.get("amount_due"),
        "next_payment_attempt": invoice.get("next_payment_attempt"),
        "created": event.created,
        "event_id": event.id,
    }
    if not ctx.keep_if_newer("upcoming_invoices", customer, upcoming, event):
        ctx.log.info("kept the stored upcoming invoice: %s is not newer", event.id)


def subscription_of(invoice: dict[str, Any]) -> str | None:
    # Since API version 2025-03-31 an invoice names its subscription under its parent.
    parent = invoice.get("parent") or {}
    if parent.get("type") == "subscription_details":
        return id_of((parent.get("subscription_details") or {}).get("subscription"))
    return id_of(invoice.get("subscription"))


def id_of(value: Any) -> str | None:
    """The id of a field that is an id, or an expanded object, or null."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None
