"""Disputes: keep each dispute under its customer, and alert when one is opened.

We keep "disputes" (the newest snapshot of each) and "customer_disputes" (under the
customer's id, one small record per dispute). A new dispute sends a "dispute_created"
notification with its evidence due date, the last day to answer it.

A dispute names its charge, not its customer. We ask the charge: as the charges module
stored it, else the Stripe API (when STRIPE_API_KEY is set). When neither knows it, the
dispute is kept under no customer, until a later event of the dispute finds the charge.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import Any

import stripe

from chalicelib.stripe_events import Context, Router
from chalicelib.stripe_events.projection import apply_snapshot

router = Router("disputes")


@router.on(
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
)
def save_dispute(event: stripe.Event, ctx: Context) -> None:
    dispute = event.data.object.to_dict(for_json=True)
    # Look up before storing: when the lookup fails, the retry must not find the snapshot
    # already stored, or it would skip the index.
    customer = customer_of(ctx, event, dispute["charge"])
    if not apply_snapshot(ctx, "disputes", event):
        ctx.log.info("kept the stored dispute: %s %s is not newer", event.type, event.id)
        return
    if customer is None:
        return
    ctx.store.put_child("customer_disputes", customer, dispute["id"], summary(dispute))


# A handler of its own, so that it runs even when the created event arrives after a
# newer one (funds_withdrawn often comes in the same second): the dispute is news anyway.
@router.on("charge.dispute.created")
def alert_new_dispute(event: stripe.Event, ctx: Context) -> None:
    dispute = summary(event.data.object.to_dict(for_json=True))
    subject = f"Dispute {dispute['id']} opened on charge {dispute['charge']}"
    if (due_by := dispute["evidence_due_by"]) is not None:
        subject += f": evidence due by {datetime.fromtimestamp(due_by, UTC):%Y-%m-%d %H:%M} UTC"
    customer = customer_of(ctx, event, dispute["charge"])
    ctx.notify("dispute_created", subject, dispute, customer)


def summary(dispute: dict[str, Any]) -> dict[str, Any]:
    """What a customer's billing page and the alert show of a dispute."""
    return {
        "id": dispute["id"],
        "status": dispute["status"],
        "amount": dispute["amount"],
        "currency": dispute["currency"],
        "reason": dispute["reason"],
        "charge": dispute["charge"],
        "evidence_due_by": (dispute.get("evidence_details") or {}).get("due_by"),
    }


def customer_of(ctx: Context, event: stripe.Event, charge_id: str) -> str | None:
    """The customer of the charge, or None when it has none or nobody knows the charge."""
    charge: dict[str, Any] | None = None
    stored = ctx.store.get("charges", charge_id)
    if stored is not None:
        charge = stored["object"]
    elif ctx.stripe is not None:
        # A connected account's charge is only visible through that account.
        account = getattr(event, "account", None)
        options: stripe.RequestOptions = {"stripe_account": account} if account else {}
        # A charge this key cannot see (a 4xx) stays unknown: retrying would not help.
        with suppress(stripe.InvalidRequestError):
            charge = ctx.stripe.v1.charges.retrieve(charge_id, options=options).to_dict()
    if charge is None:
        ctx.log.warning(
            "%s %s: charge %s is not known yet, so no customer for this dispute",
            event.type,
            event.id,
            charge_id,
        )
        return None
    # In events, and API answers that expand nothing, `customer` is an id or None.
    customer = charge.get("customer")
    return customer if isinstance(customer, str) else None
