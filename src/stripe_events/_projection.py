"""Keep the newest snapshot of each Stripe object, whatever the order events arrive in.

Which snapshot is newer (deletion, `created`, status rank, counters, type rank, event id)
is written down in the docs under "State and ordering". `order_key` writes those steps as
one string that compares the same way, and the store writes an item only if its order is
not older than the stored one's, in one atomic step (`Store.put_if_newer`). An equal order
is the same event again: written again and counted as applied, so that a handler retried
after one of its later writes failed redoes them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from stripe_events._envelope import MAX_CREATED

if TYPE_CHECKING:
    import stripe

    from stripe_events._stores import Store


class Handling(Protocol):
    """What these functions read of a handler's Context."""

    @property
    def store(self) -> Store: ...
    @property
    def stripe(self) -> stripe.StripeClient | None: ...


# Per object type, statuses an object cannot leave for a lower one. Unlisted statuses
# rank 1, equal to each other, because objects move back and forth among them.
STATUS_RANK: dict[str, dict[str, int]] = {
    "invoice": {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3},
    "subscription": {"incomplete": 0, "canceled": 2, "incomplete_expired": 2},
    "payment_intent": {"succeeded": 2, "canceled": 2},
    "checkout.session": {"open": 0, "complete": 2, "expired": 2},
    # A paid payout can still fail; a failed or canceled one never gets paid.
    "payout": {"failed": 2, "canceled": 2},
    # charge_refunded: a won dispute, in API versions before 2014-11-20.
    "dispute": {"won": 2, "lost": 2, "warning_closed": 2, "prevented": 2, "charge_refunded": 2},
    # A succeeded refund can still fail later, so only failed and canceled are final.
    "refund": {"failed": 2, "canceled": 2},
}
# Per object type, an integer field that never decreases over the object's life.
COUNTERS: dict[str, str] = {"invoice": "attempt_count"}
LIFECYCLE_RANK = {"created": 0, "deleted": 2}
MAX_COUNTER = 999_999_999


class _Retrievable(Protocol):
    def retrieve(
        self, id: str, /, params: None = None, options: stripe.RequestOptions | None = None
    ) -> stripe.StripeObject: ...


# The API service that retrieves each object type, for `refetch=True`.
SERVICES: dict[str, Callable[[stripe.StripeClient], _Retrievable]] = {
    "customer": lambda client: client.v1.customers,
    "subscription": lambda client: client.v1.subscriptions,
    "invoice": lambda client: client.v1.invoices,
    "payment_intent": lambda client: client.v1.payment_intents,
    "charge": lambda client: client.v1.charges,
    "checkout.session": lambda client: client.v1.checkout.sessions,
    "product": lambda client: client.v1.products,
    "price": lambda client: client.v1.prices,
}


def apply_snapshot(
    ctx: Handling,
    collection: str,
    event: stripe.Event,
    *,
    refetch: bool = False,
    key: str | None = None,
) -> bool:
    """`Context.apply_snapshot`. A refetched object is stored with the event's version, so
    a newer event fetches again and a stale one costs no API call."""
    obj = event.data.object.to_dict(for_json=True)
    key = key or obj.get("id")
    if not isinstance(key, str):
        raise ValueError(f"the object of {event.type} has no id to store it under")
    deleted = _is_deletion(event, obj)
    version = _version(event, obj)
    if refetch and ctx.stripe is not None:
        # A read to spare a stale event its API call; the conditional write decides.
        stored = ctx.store.get(collection, key)
        if stored is not None:
            if stored["version"].get("event_id") == event.id:
                return True  # this event again: stored already, from the fetch it made
            if _key(stored["deleted"], stored["version"]) > _key(deleted, version):
                return False
        obj, gone = _retrieve(ctx.stripe, event, obj)
        deleted = deleted or gone
    item = {"object": obj, "deleted": deleted, "version": version}
    return ctx.store.put_if_newer(collection, key, item, _key(deleted, version))


def order_key(event: stripe.Event) -> str:
    """The event's place in its object's history, as a string that compares like it."""
    obj = event.data.object.to_dict(for_json=True)
    return _key(_is_deletion(event, obj), _version(event, obj))


def _is_deletion(event: stripe.Event, obj: Mapping[str, Any]) -> bool:
    return event.type.endswith(".deleted") or obj.get("deleted") is True


def status_of(obj: Mapping[str, Any]) -> str | None:
    """The object's status. Invoices of API versions before 2018-11-08 have none, but
    booleans: `paid`, and `forgiven`, which that version replaced with "uncollectible"."""
    status = obj.get("status")
    if isinstance(status, str) or obj.get("object") != "invoice":
        return status if isinstance(status, str) else None
    if obj.get("paid") is True:
        return "paid"
    return "uncollectible" if obj.get("forgiven") is True else "open"


def _version(event: stripe.Event, obj: Mapping[str, Any]) -> dict[str, Any]:
    object_type = obj.get("object", "")
    status = STATUS_RANK.get(object_type, {}).get(status_of(obj) or "", 1)
    counter = obj.get(COUNTERS.get(object_type, ""))
    action = event.type.rpartition(".")[2]
    return {
        "created": event.created,
        "rank": [status, counter if isinstance(counter, int) else 0, LIFECYCLE_RANK.get(action, 1)],
        "event_id": event.id,
        "event_type": event.type,
    }


def _key(deleted: bool, version: Mapping[str, Any]) -> str:
    """The six steps as fixed-width fields: string order is the tie rule's order."""
    created = version["created"]
    status, counter, lifecycle = version["rank"]
    if not 0 <= created <= MAX_CREATED:
        raise ValueError(f"created {created} is outside 0..{MAX_CREATED}")
    # Past 10^9 - 1 a counter (payment attempts) can only have stopped mattering.
    counter = min(max(counter, 0), MAX_COUNTER)
    return f"{int(deleted)}|{created:012d}|{status}|{counter:09d}|{lifecycle}|{version['event_id']}"


def _retrieve(
    client: stripe.StripeClient, event: stripe.Event, obj: dict[str, Any]
) -> tuple[dict[str, Any], bool]:
    """The object as the API has it now, and whether it is gone."""
    import stripe  # here, not at the top: the webhook function imports this module too

    service = SERVICES.get(obj.get("object", ""))
    if service is None:
        raise ValueError(
            f"refetch is not available for {obj.get('object')!r} objects; "
            f"add its service to SERVICES (there are: {', '.join(sorted(SERVICES))})"
        )
    # The event's API version gives the re-fetched object the same shape as the snapshots
    # stored from other events; a connected account's objects are only visible through it.
    options: stripe.RequestOptions = {}
    if event.api_version:
        options["stripe_version"] = event.api_version
    account = getattr(event, "account", None)
    if account:
        options["stripe_account"] = account
    try:
        current = service(client).retrieve(obj["id"], options=options)
    except stripe.InvalidRequestError as error:
        if error.http_status == 404:
            return obj, True
        raise
    fetched = current.to_dict(for_json=True)
    return fetched, fetched.get("deleted") is True
