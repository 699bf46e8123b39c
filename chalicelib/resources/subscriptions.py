"""Subscriptions: each subscription's status and items, and what each customer may use.

A customer is entitled to the features of its `active` and `trialing` subscriptions: each
item's price `lookup_key` (give your prices keys such as "pro"), else the price's product
id. Any other status (past_due, unpaid, canceled, incomplete, incomplete_expired, paused)
grants nothing: access goes when a renewal fails and comes back when it is paid.

Stored: "subscriptions" (the newest snapshot, see `apply_snapshot`) and
"customer_subscriptions" (per customer, each subscription's status and items, in the
same order). The entitlements are derived from those when they are read
(`entitlements`), never stored: an aggregate over several subscriptions, written by
functions that run at the same moment, would keep whichever wrote last.

Older API versions send older shapes, and all of them are read: items that carry a
`plan` and no `price` (plans have no lookup key; the plan's product, else the plan's id,
is the feature), and subscriptions with a top-level `plan` and `quantity` and no `items`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stripe_events import Context, Router, State

if TYPE_CHECKING:
    import stripe

router = Router("subscriptions")

COLLECTION = "subscriptions"
SUMMARIES = "customer_subscriptions"
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
    if not ctx.apply_snapshot(COLLECTION, event):
        ctx.log.info("kept the stored subscription: %s %s is not newer", event.type, event.id)
        return
    sub = event.data.object.to_dict(for_json=True)
    customer = id_of(sub.get("customer"))
    if customer is None:
        return
    deleted = event.type.endswith(".deleted")
    items = items_of(sub, ctx)
    # Since API version 2025-03-31 the period is per item: the next renewal is the earliest.
    periods = [i["current_period_end"] for i in items if i.get("current_period_end")]
    status = sub.get("status")
    summary = {
        "id": sub["id"],
        # A deleted subscription grants nothing, whatever its last snapshot says.
        "status": "canceled" if deleted and status not in ENDED else status,
        "items": [item_of(i) for i in items],
        "current_period_end": sub.get("current_period_end") or min(periods, default=None),
        "cancel_at_period_end": bool(sub.get("cancel_at_period_end")),
        "trial_end": sub.get("trial_end"),
    }
    ctx.keep_if_newer(SUMMARIES, sub["id"], summary, event, parent=customer)


@router.on("customer.subscription.trial_will_end")
def warn_trial_ending(event: stripe.Event, ctx: Context) -> None:
    sub = event.data.object.to_dict(for_json=True)
    newest = ctx.store.get(COLLECTION, sub["id"])
    if newest is not None and (newest["deleted"] or newest["object"].get("status") in ENDED):
        ctx.log.info("no trial notice for %s: the subscription has ended", sub["id"])
        return
    customer = id_of(sub.get("customer"))
    message = {"subscription": sub["id"], "customer": customer, "trial_end": sub.get("trial_end")}
    ctx.notify("trial_will_end", f"Trial of {sub['id']} ends soon", message, customer)


def entitlements(store: State, customer: str) -> dict[str, Any]:
    """What `customer` may use now: the features of its entitled subscriptions."""
    subscriptions = store.children(SUMMARIES, customer).values()
    entitled = [s for s in subscriptions if s["status"] in ENTITLED]
    features = {feature_of(item) for s in entitled for item in s["items"]}
    return {
        "customer": customer,
        "features": sorted(f for f in features if f),
        "subscriptions": sorted(s["id"] for s in entitled),
    }


def items_of(sub: dict[str, Any], ctx: Context) -> list[dict[str, Any]]:
    """The subscription's items, in whichever shape its API version has them."""
    listed = sub.get("items")
    if isinstance(listed, dict):
        if listed.get("has_more"):
            ctx.log.warning("%s lists only its first items: entitlements may be missing", sub["id"])
        return list(listed.get("data") or [])
    if sub.get("plan"):  # before subscription items: one plan, and its quantity
        return [{"plan": sub["plan"], "quantity": sub.get("quantity")}]
    ctx.log.warning("%s has neither items nor a plan: it grants nothing", sub["id"])
    return []


def item_of(item: dict[str, Any]) -> dict[str, Any]:
    # Items of API versions before prices carry only their plan; a plan has no lookup key.
    price = item.get("price") or item.get("plan") or {}
    if isinstance(price, str):  # not expanded: the id is all we know
        price = {"id": price}
    return {
        "price": price.get("id"),
        "product": id_of(price.get("product")),
        "lookup_key": price.get("lookup_key"),
        "quantity": item.get("quantity"),
    }


def feature_of(item: dict[str, Any]) -> str | None:
    """The price's lookup key, else its product (a plan before 2018-02-05 had none: its id)."""
    return item.get("lookup_key") or item.get("product") or item.get("price")


def id_of(value: Any) -> str | None:
    """The id of a field that is an id, or an expanded object, or null."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None
