"""Customers: keep the latest known record of each Stripe customer.

This is the worked example to copy: a Router, one function per kind of change, and
plain data in the store. No AWS and no Chalice here; the tests call these functions
directly with events built from Stripe's example objects.
"""

from __future__ import annotations

import stripe

from chalicelib.stripe_events import Context, Router

router = Router("customers")

COLLECTION = "customers"


def _is_older(event: stripe.Event, stored: dict[str, object] | None) -> bool:
    """Events arrive in any order: never let an older snapshot replace a newer one."""
    if stored is None:
        return False
    seen = stored.get("event_created")
    return isinstance(seen, int) and event.created < seen


@router.on("customer.created", "customer.updated")
def save_customer(event: stripe.Event, ctx: Context) -> None:
    customer = event.data.object
    stored = ctx.store.get(COLLECTION, customer["id"])
    if _is_older(event, stored) or (stored or {}).get("deleted"):
        ctx.log.info("ignored stale %s for %s", event.type, customer["id"])
        return
    ctx.store.put(
        COLLECTION,
        customer["id"],
        {
            "id": customer["id"],
            "email": customer["email"],
            "name": customer["name"],
            "livemode": event.livemode,
            "deleted": False,
            "event_created": event.created,
            "event_id": event.id,
        },
    )


@router.on("customer.deleted")
def delete_customer(event: stripe.Event, ctx: Context) -> None:
    customer = event.data.object
    # A deletion is final: keep a tombstone so that a late update cannot revive it.
    ctx.store.put(
        COLLECTION,
        customer["id"],
        {
            "id": customer["id"],
            "deleted": True,
            "event_created": event.created,
            "event_id": event.id,
        },
    )
