"""Customers: keep the newest known record of each Stripe customer.

This is the worked example to copy: a Router, a function per kind of change, and plain
data in the store. No AWS and no Chalice here; the tests call these functions directly
with events built from Stripe's example objects.

Events arrive in any order and sometimes twice. `apply_snapshot` keeps the newest
snapshot under the customer's id, as `{"object": …, "deleted": …, "version": …}`, and
keeps a deleted customer deleted. Pass `refetch=True` to store the customer as the
Stripe API has it now instead (when STRIPE_API_KEY is set).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stripe_events import Context, Router

if TYPE_CHECKING:
    import stripe

router = Router("customers")

COLLECTION = "customers"


@router.on("customer.created", "customer.updated", "customer.deleted")
def save_customer(event: stripe.Event, ctx: Context) -> None:
    if not ctx.apply_snapshot(COLLECTION, event):
        ctx.log.info("kept the stored customer: %s %s is not newer", event.type, event.id)
