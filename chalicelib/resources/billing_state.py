"""A customer's billing state, read from what the resource modules keep.

GET /billing/customers/{id} and `stripe-events state customer cus_…` both show it. This
module has no router: it reads, it handles no event.
"""

from __future__ import annotations

from typing import Any

from chalicelib.resources.subscriptions import entitlements
from stripe_events import State

OPEN_INVOICES = {"draft", "open"}
# charge_refunded: how API versions before 2014-11-20 said a dispute was won.
CLOSED_DISPUTES = {"won", "lost", "warning_closed", "prevented", "charge_refunded"}


def customer_state(store: State, customer_id: str) -> dict[str, Any] | None:
    """The customer, subscriptions, active entitlements, open invoices and open disputes."""
    customer = store.get("customers", customer_id)
    subscriptions = store.children("customer_subscriptions", customer_id)
    invoices = store.children("customer_invoices", customer_id)
    disputes = store.children("customer_disputes", customer_id)
    if customer is None and not (subscriptions or invoices or disputes):
        return None
    return {
        "id": customer_id,
        "customer": None if customer is None else customer["object"],
        "deleted": bool(customer and customer["deleted"]),
        "subscriptions": list(subscriptions.values()),
        "entitlements": entitlements(store, customer_id)["features"],
        "open_invoices": [i for i in invoices.values() if i.get("status") in OPEN_INVOICES],
        "open_disputes": [d for d in disputes.values() if d.get("status") not in CLOSED_DISPUTES],
    }
