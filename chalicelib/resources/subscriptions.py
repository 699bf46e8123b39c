"""Subscriptions: each subscription's status and items, and what each customer may use.

A customer is entitled to the features of its `active` and `trialing` subscriptions: each
item's price `lookup_key` (give your prices keys such as "pro"), else the price's product
id. Any other status (past_due, unpaid, canceled, incomplete, incomplete_expired, paused)
grants nothing: access goes when a renewal fails and comes back when it is paid. The
entitlements are recomputed from all the customer's subscriptions at each change, so
each subscription's events may arrive in any order, and one subscription's end leaves
the others' features alone.

Stored: "subscriptions" (the newest snapshot, see `apply_snapshot`), "customer_subscriptions"
(per customer, each subscription's status and items) and "entitlements" (per customer).
"""

from __future__ import annotations

from typing import Any

import stripe

from chalicelib.stripe_events import Context, Router
from chalicelib.stripe_events.projection import apply_snapshot

router = Router("subscriptions")

COLLECTION = "subscriptions"
ENTITLED = ("active", "trialing")
ENDED = ("canceled", "incomplete_expired")


@router.on(
    "customer.subscription.created",
    "customer.subscription.updated",
    "customer.subscription.deleted",
    "customer.subscription.paused",
    "customer.subscription.resumed",
    "customer.subscription.trial_will_end",
)
def save_subscription(event: stripe.Event, ctx: Context) -> None:
    if not apply_snapshot(ctx, COLLECTION, event):
        ctx.log.info("kept the stored subscription: %s %s is not newer", event.type, event.id)
        return
    sub = event.data.object.to_dict(for_json=True)
    customer = id_of(sub.get("customer"))
    if customer is None:
        return
    deleted = event.type.endswith(".deleted")
    items = sub["items"]["data"]
    if sub["items"].get("has_more"):
        ctx.log.warning("%s lists only its first items: entitlements may be missing", sub["id"])
    # Since API version 2025-03-31 the period is per item: the next renewal is the earliest.
    periods = [i["current_period_end"] for i in items if i.get("current_period_end")]
    summary = {
        "id": sub["id"],
        # A deleted subscription grants nothing, whatever its last snapshot says.
        "status": "canceled" if deleted and sub["status"] not in ENDED else sub["status"],
        "items": [item_of(i) for i in items],
        "current_period_end": sub.get("current_period_end") or min(periods, default=None),
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
        "trial_end": sub.get("trial_end"),
    }
    ctx.store.put_child("customer_subscriptions", customer, sub["id"], summary)
    update_entitlements(ctx, customer)


@router.on("customer.subscription.trial_will_end")
def warn_trial_ending(event: stripe.Event, ctx: Context) -> None:
    sub = event.data.object.to_dict(for_json=True)
    newest = ctx.store.get(COLLECTION, sub["id"])
    if newest is not None and (newest["deleted"] or newest["object"]["status"] in ENDED):
        ctx.log.info("no trial notice for %s: the subscription has ended", sub["id"])
        return
    customer = id_of(sub.get("customer"))
    message = {"subscription": sub["id"], "customer": customer, "trial_end": sub.get("trial_end")}
    ctx.notify("trial_will_end", f"Trial of {sub['id']} ends soon", message, customer)


def update_entitlements(ctx: Context, customer: str) -> None:
    subscriptions = ctx.store.children("customer_subscriptions", customer).values()
    entitled = [s for s in subscriptions if s["status"] in ENTITLED]
    features = {item["lookup_key"] or item["product"] for s in entitled for item in s["items"]}
    ctx.store.put(
        "entitlements",
        customer,
        {
            "customer": customer,
            "features": sorted(f for f in features if f),
            "subscriptions": sorted(s["id"] for s in entitled),
        },
    )


def item_of(item: dict[str, Any]) -> dict[str, Any]:
    price = item.get("price") or {}
    if isinstance(price, str):  # not expanded: the id is all we know
        price = {"id": price}
    return {
        "price": price.get("id"),
        "product": id_of(price.get("product")),
        "lookup_key": price.get("lookup_key"),
        "quantity": item.get("quantity"),
    }


def id_of(value: Any) -> str | None:
    """The id of a field that is an id, or an expanded object, or null."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None
