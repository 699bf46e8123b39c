"""apply_snapshot: the newest snapshot wins, whatever the arrival order; and re-fetching."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from stripe_events._context import Context
from stripe_events._envelope import MAX_CREATED
from stripe_events._projection import MAX_COUNTER, apply_snapshot, order_key
from stripe_events._stores import Store
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import samples
from tests.helpers import FakeStripe

T = 1_760_000_000
LOG = logging.getLogger("test")


def make_event(
    event_type: str, created: int, event_id: str | None = None, **changes: Any
) -> stripe.Event:
    data = samples.sample_event(event_type, event_id=event_id, created=created, changes=changes)
    return stripe.Event.construct_from(data, None)


def stable_id(name: str) -> str:
    """An event id fixed across runs, whose order says nothing about time."""
    return "evt_" + hashlib.sha256(name.encode()).hexdigest()[:24]


def stored(ctx: Context, collection: str, key: str) -> dict[str, Any]:
    item = ctx.store.get(collection, key)
    assert item is not None
    return item


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return Context(SqliteStore(tmp_path / "state.sqlite3"), LOG, "projection.test")


def test_the_stored_item_is_the_object_with_its_version(ctx: Context) -> None:
    event = make_event("invoice.payment_failed", T, id="in_A", status="open", attempt_count=2)
    assert apply_snapshot(ctx, "invoices", event) is True
    assert stored(ctx, "invoices", "in_A") == {
        "object": event.data.object.to_dict(for_json=True),
        "deleted": False,
        "version": {
            "created": T,
            "rank": [1, 2, 1],
            "event_id": event.id,
            "event_type": "invoice.payment_failed",
        },
    }


def test_an_older_snapshot_never_replaces_a_newer_one(ctx: Context) -> None:
    new = make_event("customer.updated", T + 1, id="cus_A", email="new@example.com")
    old = make_event("customer.updated", T, id="cus_A", email="old@example.com")
    assert apply_snapshot(ctx, "customers", new)
    assert not apply_snapshot(ctx, "customers", old)
    assert stored(ctx, "customers", "cus_A")["object"]["email"] == "new@example.com"


def test_a_redelivered_event_counts_as_applied_and_changes_nothing(ctx: Context) -> None:
    event = make_event("customer.created", T, id="cus_A")
    assert apply_snapshot(ctx, "customers", event)
    first = stored(ctx, "customers", "cus_A")
    # True: a handler retried after its index write failed must redo that write.
    assert apply_snapshot(ctx, "customers", event)
    assert stored(ctx, "customers", "cus_A") == first


SAME_SECOND = [
    pytest.param(
        [
            ("customer.subscription.created", {"status": "incomplete"}),
            ("customer.subscription.updated", {"status": "active"}),
        ],
        id="subscription-status",
    ),
    pytest.param(
        [
            ("invoice.created", {"status": "draft"}),
            ("invoice.finalized", {"status": "open"}),
            ("invoice.paid", {"status": "paid"}),
        ],
        id="invoice-status",
    ),
    pytest.param(
        [
            ("invoice.payment_failed", {"status": "open", "attempt_count": 1}),
            ("invoice.payment_failed", {"status": "open", "attempt_count": 2}),
        ],
        id="invoice-attempt-count",
    ),
    pytest.param(
        [
            ("customer.created", {"email": "first@example.com"}),
            ("customer.updated", {"email": "second@example.com"}),
        ],
        id="created-before-updated",
    ),
    pytest.param(
        [
            ("customer.subscription.created", {"status": "active", "cancel_at_period_end": False}),
            ("customer.subscription.updated", {"status": "active", "cancel_at_period_end": True}),
        ],
        id="subscription-created-before-updated",
    ),
    pytest.param(
        [
            ("customer.subscription.updated", {"status": "canceled"}),
            ("customer.subscription.deleted", {"status": "canceled"}),
        ],
        id="deleted-after-updated",
    ),
]


@pytest.mark.parametrize("history", SAME_SECOND)
def test_same_second_events_are_ordered_by_the_objects_progress(
    ctx: Context, history: list[tuple[str, dict[str, Any]]]
) -> None:
    # Ids ascending against the true order, so that the last resort alone would get it wrong.
    events = [
        make_event(t, T, event_id=f"evt_{9 - n}", id="obj_A", **changes)
        for n, (t, changes) in enumerate(history)
    ]
    for n, order in enumerate(itertools.permutations(events)):
        for event in order:
            apply_snapshot(ctx, f"order{n}", event)
        assert stored(ctx, f"order{n}", "obj_A")["version"]["event_id"] == events[-1].id


# Status changes Stripe makes, per object type, that two events of the same second can
# carry: whatever the arrival order, and even when the earlier status has the greater
# event id, the object must end in the later status. From Stripe's lifecycle of each.
LIFECYCLES: dict[str, list[tuple[str, str]]] = {
    "invoice.updated": [
        ("draft", "open"),
        ("open", "paid"),
        ("open", "uncollectible"),
        ("open", "void"),
        ("uncollectible", "paid"),
        ("uncollectible", "void"),
        ("draft", "paid"),  # finalized and paid at once (an invoice of $0)
    ],
    "customer.subscription.updated": [
        ("incomplete", "active"),
        ("incomplete", "incomplete_expired"),
        ("incomplete", "canceled"),
        ("active", "canceled"),
        ("past_due", "canceled"),
        ("trialing", "canceled"),
    ],
    "payment_intent.processing": [
        ("processing", "succeeded"),
        ("requires_payment_method", "succeeded"),
        ("requires_payment_method", "canceled"),
        ("requires_capture", "canceled"),
    ],
    "checkout.session.completed": [("open", "complete"), ("open", "expired")],
    "payout.updated": [
        ("pending", "failed"),
        ("in_transit", "failed"),
        ("paid", "failed"),
        ("pending", "canceled"),
    ],
    "charge.dispute.updated": [
        ("needs_response", "won"),
        ("under_review", "lost"),
        ("under_review", "won"),
        ("warning_needs_response", "warning_closed"),
        ("warning_under_review", "warning_closed"),
        ("needs_response", "prevented"),
        ("needs_response", "charge_refunded"),
    ],
    "charge.refund.updated": [
        ("pending", "failed"),
        ("succeeded", "failed"),
        ("pending", "canceled"),
        ("requires_action", "canceled"),
    ],
}


@pytest.mark.parametrize(
    ("event_type", "before", "after"),
    [(t, before, after) for t, changes in LIFECYCLES.items() for before, after in changes],
)
def test_a_status_change_in_one_second_ends_in_the_later_status(
    ctx: Context, event_type: str, before: str, after: str
) -> None:
    # The earlier status has the greater id: only the status can order them.
    first = make_event(event_type, T, event_id="evt_9", id="obj_A", status=before)
    then = make_event(event_type, T, event_id="evt_1", id="obj_A", status=after)
    for n, order in enumerate([(first, then), (then, first)]):
        for event in order:
            apply_snapshot(ctx, f"order{n}", event)
        assert stored(ctx, f"order{n}", "obj_A")["object"]["status"] == after, order


STATUSES = ["draft", "open", "uncollectible", "paid", "void", "past_due"]


@st.composite
def invoice_events(draw: st.DrawFn) -> stripe.Event:
    action = draw(st.sampled_from(["created", "updated", "paid", "deleted"]))
    data = samples.sample_event(
        f"invoice.{action}",
        event_id="evt_" + draw(st.text("0123456789abcdefABC_", min_size=1, max_size=6)),
        created=draw(st.integers(0, MAX_CREATED)),
        changes={
            "id": "in_A",
            "status": draw(st.sampled_from(STATUSES)),
            "attempt_count": draw(st.integers(0, 10**10)),
            "deleted": draw(st.booleans()),
        },
    )
    return stripe.Event.construct_from(data, None)


def documented_order(event: stripe.Event) -> tuple[bool, int, int, int, int, str]:
    """The tie rule of projection.py's docstring, step by step, as a tuple."""
    obj = event.data.object
    status = {"draft": 0, "open": 1, "uncollectible": 2, "paid": 3, "void": 3}.get(obj.status, 1)
    lifecycle = {"created": 0, "deleted": 2}.get(event.type.rpartition(".")[2], 1)
    deleted = event.type.endswith(".deleted") or obj.deleted is True
    counter = min(obj.attempt_count, MAX_COUNTER)  # beyond it, attempts stop mattering
    return (deleted, event.created, status, counter, lifecycle, event.id)


@settings(max_examples=500, deadline=None)
@given(invoice_events(), invoice_events())
def test_order_keys_compare_as_the_documented_rule(a: stripe.Event, b: stripe.Event) -> None:
    # One string per version lets the stores compare in a single condition.
    assert (order_key(a) < order_key(b)) == (documented_order(a) < documented_order(b))
    assert (order_key(a) == order_key(b)) == (documented_order(a) == documented_order(b))


def test_a_same_second_tie_nothing_else_separates_goes_to_the_greater_event_id(
    ctx: Context,
) -> None:
    a = make_event("customer.updated", T, event_id="evt_a", id="cus_A", name="A")
    b = make_event("customer.updated", T, event_id="evt_b", id="cus_A", name="B")
    for n, order in enumerate([(a, b), (b, a)]):
        for event in order:
            apply_snapshot(ctx, f"order{n}", event)
        assert stored(ctx, f"order{n}", "cus_A")["object"]["name"] == "B"


def test_a_later_update_does_not_bring_a_deleted_object_back(ctx: Context) -> None:
    apply_snapshot(ctx, "customers", make_event("customer.created", T, id="cus_A"))
    assert apply_snapshot(ctx, "customers", make_event("customer.deleted", T + 10, id="cus_A"))
    zombie = make_event("customer.updated", T + 20, id="cus_A", email="zombie@example.com")
    assert not apply_snapshot(ctx, "customers", zombie)
    item = stored(ctx, "customers", "cus_A")
    assert item["deleted"] is True
    assert item["version"]["event_type"] == "customer.deleted"


def test_a_deletion_that_arrives_after_a_newer_update_still_deletes(ctx: Context) -> None:
    apply_snapshot(ctx, "customers", make_event("customer.updated", T + 20, id="cus_A"))
    assert apply_snapshot(ctx, "customers", make_event("customer.deleted", T + 10, id="cus_A"))
    assert stored(ctx, "customers", "cus_A")["deleted"] is True


def test_an_object_that_says_it_is_deleted_counts_as_deleted(ctx: Context) -> None:
    event = make_event("customer.updated", T, id="cus_A", deleted=True)
    apply_snapshot(ctx, "customers", event)
    assert stored(ctx, "customers", "cus_A")["deleted"] is True


def test_an_object_without_an_id_is_refused(ctx: Context) -> None:
    event = make_event("invoice.upcoming", T, id=None)
    with pytest.raises(ValueError, match=r"invoice\.upcoming has no id"):
        apply_snapshot(ctx, "invoices", event)


# -- Any order, any duplicates: the property ---------------------------------------------


class MemoryStore:
    """The methods apply_snapshot uses, with the JSON round trip the real stores make.

    A dict rather than SQLite keeps a few hundred hypothesis examples within a second;
    test_store_contract.py holds the real stores to the same contract.
    """

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], tuple[str, str]] = {}

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        _, body = self.items.get((collection, key), ("", None))
        return None if body is None else dict(json.loads(body))

    def put_if_newer(self, collection: str, key: str, item: dict[str, Any], order: str) -> bool:
        stored, _ = self.items.get((collection, key), ("", None))
        if stored > order:
            return False
        self.items[(collection, key)] = (order, json.dumps(item))
        return True


def memory_context() -> Context:
    return Context(cast(Store, MemoryStore()), LOG, "projection.test")


COLLECTIONS = {"customer": "customers", "subscription": "subscriptions", "invoice": "invoices"}
# Each object's true history, as steps in the order Stripe made them: (event type, seconds
# after T, changes to Stripe's example object). A step with two events is a same-second
# tie that no field tells apart; the rule keeps the greater event id.
Step = list[tuple[str, int, dict[str, Any]]]
HISTORIES: dict[str, list[Step]] = {
    "cus_A": [  # created and updated in one second, then two updates in another
        [("customer.created", 0, {"email": "ada@example.com"})],
        [("customer.updated", 0, {"name": "Ada"})],
        [
            ("customer.updated", 30, {"name": "Ada Lovelace"}),
            ("customer.updated", 30, {"name": "Ada King"}),
        ],
    ],
    "cus_B": [  # updated and deleted in one second
        [("customer.created", 0, {})],
        [("customer.updated", 5, {"email": "bob@example.com"})],
        [("customer.deleted", 5, {})],
    ],
    "sub_A": [  # later, a payment method and the payment make it active in one second
        [("customer.subscription.created", 0, {"status": "incomplete"})],
        [("customer.subscription.updated", 40, {"status": "incomplete", "metadata": {"a": "1"}})],
        [("customer.subscription.updated", 40, {"status": "active"})],
    ],
    "sub_B": [
        [("customer.subscription.created", 0, {"status": "incomplete"})],
        [("customer.subscription.updated", 0, {"status": "active"})],
        [("customer.subscription.updated", 60, {"cancel_at_period_end": True})],
        [("customer.subscription.updated", 120, {"status": "canceled"})],
        [("customer.subscription.deleted", 120, {"status": "canceled"})],
    ],
    "in_A": [  # created, finalized and paid in the subscription's first second
        [("invoice.created", 0, {"status": "draft"})],
        [("invoice.finalized", 0, {"status": "open"})],
        [("invoice.paid", 0, {"status": "paid", "attempt_count": 1})],
    ],
    "in_B": [  # the first payment fails in the same second; the retry an hour later pays
        [("invoice.created", 0, {"status": "draft"})],
        [("invoice.finalized", 0, {"status": "open"})],
        [("invoice.payment_failed", 0, {"status": "open", "attempt_count": 1})],
        [
            ("invoice.paid", 3600, {"status": "paid", "attempt_count": 2}),
            ("invoice.payment_succeeded", 3600, {"status": "paid", "attempt_count": 2}),
        ],
    ],
    "in_C": [  # finalized, then its payment fails in the same second
        [("invoice.created", 0, {"status": "draft"})],
        [("invoice.finalized", 0, {"status": "open"})],
        [("invoice.payment_failed", 0, {"status": "open", "attempt_count": 1})],
    ],
}


@dataclass
class Delivery:
    collection: str
    key: str
    event: stripe.Event
    last_step: bool


def deliveries() -> list[Delivery]:
    result = []
    for key, steps in HISTORIES.items():
        for n, step in enumerate(steps):
            for event_type, seconds, changes in step:
                name = f"{key}/{n}/{event_type}/{sorted(changes.items())}"
                event = make_event(event_type, T + seconds, stable_id(name), id=key, **changes)
                collection = COLLECTIONS[event.data.object["object"]]
                result.append(Delivery(collection, key, event, n == len(steps) - 1))
    return result


DELIVERIES = deliveries()


@st.composite
def arrival_orders(draw: st.DrawFn) -> list[Delivery]:
    """Every event at least once, some more than once, in any order."""
    every = list(range(len(DELIVERIES)))
    again = draw(st.lists(st.sampled_from(every), max_size=len(every)))
    return [DELIVERIES[n] for n in draw(st.permutations(every + again))]


@settings(max_examples=200, deadline=None)
@given(arrival_orders())
def test_any_order_with_duplicates_ends_in_the_state_after_the_newest_event(
    arrivals: list[Delivery],
) -> None:
    ctx = memory_context()
    for d in arrivals:
        apply_snapshot(ctx, d.collection, d.event)

    for key in HISTORIES:
        [collection] = {d.collection for d in DELIVERIES if d.key == key}
        newest = max(
            (d.event for d in DELIVERIES if d.key == key and d.last_step), key=lambda e: e.id
        )
        assert stored(ctx, collection, key) | {"version": None} == {
            "object": newest.data.object.to_dict(for_json=True),
            "deleted": newest.type.endswith(".deleted"),
            "version": None,
        }
        assert stored(ctx, collection, key)["version"]["event_id"] == newest.id


# -- Re-fetching from the Stripe API ---------------------------------------------------


@pytest.fixture
def api_ctx(tmp_path: Path, fake_stripe: FakeStripe) -> Context:
    client = fake_stripe.client()
    return Context(SqliteStore(tmp_path / "state.sqlite3"), LOG, "projection.test", lambda: client)


@pytest.mark.parametrize(
    ("event_type", "status", "deleted"),
    [
        ("customer.subscription.updated", "past_due", False),
        # A deleted subscription comes back from the API as canceled, not as deleted: the
        # deletion stays one.
        ("customer.subscription.deleted", "canceled", True),
    ],
)
def test_refetch_stores_the_object_as_the_api_has_it_now(
    api_ctx: Context, fake_stripe: FakeStripe, event_type: str, status: str, deleted: bool
) -> None:
    current = samples.example_objects()["subscription"] | {"id": "sub_A", "status": status}
    fake_stripe.objects["/v1/subscriptions/sub_A"] = (200, current)
    event = make_event(event_type, T, id="sub_A", status="active")

    assert apply_snapshot(api_ctx, "subscriptions", event, refetch=True)

    item = stored(api_ctx, "subscriptions", "sub_A")
    assert item["object"] == current
    assert (item["deleted"], item["version"]["event_id"]) == (deleted, event.id)
    [(path, headers)] = fake_stripe.requests
    assert path == "/v1/subscriptions/sub_A"
    assert headers["Stripe-Version"] == samples.API_VERSION  # the shape of the snapshots
    assert "Stripe-Account" not in headers


def test_refetch_asks_for_the_connected_account_of_the_event(
    api_ctx: Context, fake_stripe: FakeStripe
) -> None:
    fake_stripe.objects["/v1/customers/cus_A"] = (200, {"id": "cus_A", "object": "customer"})
    data = samples.sample_event("customer.updated", created=T, changes={"id": "cus_A"})
    event = stripe.Event.construct_from(data | {"account": "acct_123"}, None)

    apply_snapshot(api_ctx, "customers", event, refetch=True)

    [(_, headers)] = fake_stripe.requests
    assert headers["Stripe-Account"] == "acct_123"


def test_refetch_of_an_object_the_api_no_longer_has_stores_it_deleted(
    api_ctx: Context, fake_stripe: FakeStripe
) -> None:
    event = make_event("invoice.updated", T, id="in_gone")
    assert apply_snapshot(api_ctx, "invoices", event, refetch=True)
    item = stored(api_ctx, "invoices", "in_gone")
    assert item["deleted"] is True
    assert item["object"] == event.data.object.to_dict(for_json=True)
    assert [path for path, _ in fake_stripe.requests] == ["/v1/invoices/in_gone"]


def test_refetch_of_a_deleted_customer_stores_it_deleted(
    api_ctx: Context, fake_stripe: FakeStripe
) -> None:
    stub = {"id": "cus_A", "object": "customer", "deleted": True}
    fake_stripe.objects["/v1/customers/cus_A"] = (200, stub)
    apply_snapshot(
        api_ctx, "customers", make_event("customer.updated", T, id="cus_A"), refetch=True
    )
    assert stored(api_ctx, "customers", "cus_A") | {"version": None} == {
        "object": stub,
        "deleted": True,
        "version": None,
    }
    # Deleted is final: a later event does not even ask the API.
    later = make_event("customer.updated", T + 60, id="cus_A")
    assert not apply_snapshot(api_ctx, "customers", later, refetch=True)
    assert len(fake_stripe.requests) == 1


def test_a_redelivered_event_is_applied_without_a_second_api_call(
    api_ctx: Context, fake_stripe: FakeStripe
) -> None:
    fake_stripe.objects["/v1/customers/cus_A"] = (200, {"id": "cus_A", "object": "customer"})
    event = make_event("customer.updated", T, id="cus_A")
    assert apply_snapshot(api_ctx, "customers", event, refetch=True)
    # Delivered again (a Lambda retry after the write): applied, as stored by the first.
    assert apply_snapshot(api_ctx, "customers", event, refetch=True)
    assert len(fake_stripe.requests) == 1


def test_an_event_outside_the_times_a_key_can_hold_is_refused(ctx: Context) -> None:
    event = make_event("customer.updated", T, id="cus_A")
    event["created"] = -1
    with pytest.raises(ValueError) as caught:
        apply_snapshot(ctx, "customers", event)
    assert str(caught.value) == f"created -1 is outside 0..{MAX_CREATED}"


def test_a_stale_event_costs_no_api_call(api_ctx: Context, fake_stripe: FakeStripe) -> None:
    fake_stripe.objects["/v1/customers/cus_A"] = (200, {"id": "cus_A", "object": "customer"})
    apply_snapshot(api_ctx, "customers", make_event("customer.updated", T + 1, id="cus_A"))
    stale = make_event("customer.updated", T, id="cus_A")
    assert not apply_snapshot(api_ctx, "customers", stale, refetch=True)
    assert fake_stripe.requests == []


def test_an_api_failure_stores_nothing_and_raises_for_a_retry(
    api_ctx: Context, fake_stripe: FakeStripe
) -> None:
    error = {"error": {"type": "api_error", "message": "try again"}}
    fake_stripe.objects["/v1/customers/cus_A"] = (500, error)
    with pytest.raises(stripe.APIError):
        apply_snapshot(
            api_ctx, "customers", make_event("customer.updated", T, id="cus_A"), refetch=True
        )
    assert api_ctx.store.get("customers", "cus_A") is None


def test_without_an_api_key_refetch_stores_the_snapshot(ctx: Context) -> None:
    event = make_event("customer.updated", T, id="cus_A", email="snap@example.com")
    assert ctx.stripe is None
    assert apply_snapshot(ctx, "customers", event, refetch=True)
    assert stored(ctx, "customers", "cus_A")["object"]["email"] == "snap@example.com"


def test_refetch_names_the_object_types_it_supports(api_ctx: Context) -> None:
    event = make_event("coupon.updated", T)
    with pytest.raises(ValueError) as caught:
        apply_snapshot(api_ctx, "coupons", event, refetch=True)
    assert str(caught.value) == (
        "refetch is not available for 'coupon' objects; add its service to SERVICES (there "
        "are: charge, checkout.session, customer, invoice, payment_intent, price, product, "
        "subscription)"
    )
