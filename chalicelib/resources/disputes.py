"""Disputes: keep each dispute under its customer, and alert when one is opened.

We keep "disputes" (the newest snapshot of each) and "customer_disputes" (under the
customer's id, one small record per dispute). A new dispute sends a "dispute_created"
notification with its evidence due date, the last day to answer it.

A dispute names its charge, not its customer. We ask the charge: as the charges module
stored it, else the Stripe API (when STRIPE_API_KEY is set). When neither knows it, the
dispute is kept under no customer, until a later event of the dispute finds the charge.

Older API versions name fields differently, and each is read: `evidence_due_by` (before
2014-12-08) for `evidence_details.due_by`, the status `charge_refunded` (before
2014-11-20) for a won dispute, and disputes with no id of their own (the oldest), which
are kept under their charge's id.
"""

from __future__ import annotations

from contextlib import suppress
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from stripe_events import Context, Router

if TYPE_CHECKING:
    import stripe

router = Router("disputes")


@router.on(
    "charge.dispute.created",
    "charge.dispute.updated",
    "charge.dispute.closed",
    "charge.dispute.funds_withdrawn",
)
def save_dispute(event: stripe.Event, ctx: Context) -> None:
    dispute = summary(event.data.object.to_dict(for_json=True))
    if dispute["id"] is None:
        ctx.log.warning("%s: the dispute has neither an id nor a charge: not kept", event.id)
        return
    # Look up before storing: when the lookup fails, the retry must not find the snapshot
    # already stored, or it would skip the index.
    customer = customer_of(ctx, event, dispute["charge"])
    if not ctx.apply_snapshot("disputes", event, key=dispute["id"]):
        ctx.log.info("kept the stored dispute: %s %s is not newer", event.type, event.id)
        return
    if customer is None:
        return
    ctx.keep_if_newer("customer_disputes", dispute["id"], dispute, event, parent=customer)


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
    """What a customer's billing page and the alert show of a dispute, in any API version."""
    charge = id_of(dispute.get("charge"))
    due_by = (dispute.get("evidence_details") or {}).get("due_by")
    return {
        "id": dispute.get("id") or charge,
        "status": dispute.get("status"),
        "amount": dispute.get("amount"),
        "currency": dispute.get("currency"),
        "reason": dispute.get("reason"),
        "charge": charge,
        "evidence_due_by": due_by if due_by is not None else dispute.get("evidence_due_by"),
    }


def customer_of(ctx: Context, event: stripe.Event, charge_id: str | None) -> str | None:
    """The customer of the charge, or None when it has none or nobody knows the charge."""
    if charge_id is None:
        return None
    charge: dict[str, Any] | None = None
    stored = ctx.store.get("charges", charge_id)
    if stored is not None:
        charge = stored["object"]
    elif ctx.stripe is not None:
        import stripe  # here, not at the top: the webhook function imports this module too

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
    return id_of(charge.get("customer"))


def id_of(value: Any) -> str | None:
    """The id of a field that is an id, or an expanded object, or null."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None
