"""The subscriptions module, called directly: statuses, items, entitlements, trial notices."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest
import stripe

from chalicelib.resources import subscriptions
from stripe_events._context import Context
from stripe_events._projection import apply_snapshot
from stripe_events_testing import event_of, module_context, outbox, run_handlers, samples

T = 1_760_000_000
NOT_ENTITLED = ["past_due", "unpaid", "canceled", "incomplete", "incomplete_expired", "paused"]


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return module_context(tmp_path)


def item(price: str, product: str | dict[str, Any], lookup_key: str | None = None) -> Any:
    """A subscription item of Stripe's example, with its price replaced."""
    example = samples.example_objects()["subscription"]["items"]["data"][0]
    changed = copy.deepcopy(example)
    changed["price"].update(id=price, product=product, lookup_key=lookup_key)
    return changed


PRO = item("price_pro", "prod_pro", "pro")
SEATS = item("price_seats", "prod_seats")  # no lookup key: the product id is the feature


def sub_event(
    event_type: str,
    created: int,
    status: str = "active",
    sub_id: str = "sub_A",
    items: tuple[Any, ...] = (PRO,),
    **changes: Any,
) -> stripe.Event:
    listed = {"object": "list", "data": list(items), "has_more": False, "url": "/v1/x"}
    changes = {"customer": "cus_A", **changes}
    return event_of(
        f"customer.subscription.{event_type}",
        created,
        id=sub_id,
        status=status,
        items=listed,
        **changes,
    )


def handle(ctx: Context, *events: stripe.Event) -> None:
    for e in events:
        run_handlers(subscriptions.router, e, ctx)


def features(ctx: Context, customer: str = "cus_A") -> list[str]:
    entitlements = subscriptions.entitlements(ctx.store, customer)
    assert entitlements["customer"] == customer
    return list(entitlements["features"])


def status(ctx: Context, sub_id: str = "sub_A") -> str:
    return str(ctx.store.children("customer_subscriptions", "cus_A")[sub_id]["status"])


def test_the_module_handles_the_subscription_lifecycle() -> None:
    assert subscriptions.router.event_types() == [
        f"customer.subscription.{action}"
        for action in ("created", "deleted", "paused", "resumed", "trial_will_end", "updated")
    ]


def test_an_active_subscription_is_indexed_and_grants_its_features(ctx: Context) -> None:
    handle(ctx, sub_event("created", T, items=(PRO, SEATS), trial_end=T + 99))
    assert ctx.store.children("customer_subscriptions", "cus_A") == {
        "sub_A": {
            "id": "sub_A",
            "status": "active",
            "items": [
                {"price": "price_pro", "product": "prod_pro", "lookup_key": "pro", "quantity": 1},
                {
                    "price": "price_seats",
                    "product": "prod_seats",
                    "lookup_key": None,
                    "quantity": 1,
                },
            ],
            "current_period_end": 976287773,  # the fixture's item: API 2025-03-31 and later
            "cancel_at_period_end": True,
            "trial_end": T + 99,
        }
    }
    assert subscriptions.entitlements(ctx.store, "cus_A") == {
        "customer": "cus_A",
        "features": ["pro", "prod_seats"],
        "subscriptions": ["sub_A"],
    }
    assert ctx.store.get("subscriptions", "sub_A") is not None


def test_expanded_objects_are_read_by_their_id(ctx: Context) -> None:
    expanded = item("price_x", {"id": "prod_x", "object": "product", "name": "X"})
    handle(ctx, sub_event("created", T, items=(expanded,), customer={"id": "cus_A"}))
    assert features(ctx) == ["prod_x"]


def test_a_top_level_period_end_is_kept(ctx: Context) -> None:
    handle(ctx, sub_event("created", T, current_period_end=T + 30))  # before API 2025-03-31
    assert (
        ctx.store.children("customer_subscriptions", "cus_A")["sub_A"]["current_period_end"]
        == T + 30
    )


@pytest.mark.parametrize("lapsed", NOT_ENTITLED)
def test_only_active_and_trialing_subscriptions_grant_features(ctx: Context, lapsed: str) -> None:
    handle(ctx, sub_event("created", T, "trialing"))
    assert features(ctx) == ["pro"]
    handle(ctx, sub_event("updated", T + 1, lapsed))
    assert (status(ctx), features(ctx)) == (lapsed, [])
    assert subscriptions.entitlements(ctx.store, "cus_A") == {
        "customer": "cus_A",
        "features": [],
        "subscriptions": [],
    }


def test_a_canceled_subscription_leaves_the_others_features(ctx: Context) -> None:
    handle(ctx, sub_event("created", T, sub_id="sub_A", items=(PRO,)))
    handle(ctx, sub_event("created", T, sub_id="sub_B", items=(SEATS,)))
    assert features(ctx) == ["pro", "prod_seats"]
    # Stripe's example says "active": a deletion grants nothing whatever its object says.
    handle(ctx, sub_event("deleted", T + 1, "active", sub_id="sub_A"))
    assert (status(ctx, "sub_A"), status(ctx, "sub_B")) == ("canceled", "active")
    assert subscriptions.entitlements(ctx.store, "cus_A") == {
        "customer": "cus_A",
        "features": ["prod_seats"],
        "subscriptions": ["sub_B"],
    }


def test_a_paused_subscription_grants_nothing_until_resumed(ctx: Context) -> None:
    handle(ctx, sub_event("created", T), sub_event("paused", T + 1, "paused"))
    assert features(ctx) == []
    handle(ctx, sub_event("resumed", T + 2, "active"))
    assert features(ctx) == ["pro"]


def test_an_older_event_arriving_late_changes_nothing(ctx: Context) -> None:
    handle(ctx, sub_event("updated", T + 10, "past_due"))
    handle(ctx, sub_event("created", T, "active"), sub_event("updated", T + 5, "active"))
    assert (status(ctx), features(ctx)) == ("past_due", [])


def test_a_deleted_subscription_stays_deleted(ctx: Context) -> None:
    handle(ctx, sub_event("deleted", T + 10, "canceled"))
    handle(ctx, sub_event("updated", T + 20, "active"), sub_event("created", T, "active"))
    assert (status(ctx), features(ctx)) == ("canceled", [])


def test_a_retry_writes_the_indexes_that_a_failed_attempt_missed(ctx: Context) -> None:
    e = sub_event("created", T)
    apply_snapshot(ctx, "subscriptions", e)  # the first attempt stored it, then failed
    handle(ctx, e)
    assert features(ctx) == ["pro"]


def test_a_subscription_without_a_customer_is_kept_but_not_indexed(ctx: Context) -> None:
    handle(ctx, sub_event("created", T, customer=None))
    assert ctx.store.get("subscriptions", "sub_A") is not None
    assert ctx.store.children("customer_subscriptions", "cus_A") == {}


def test_trial_will_end_sends_one_notice_per_event(ctx: Context) -> None:
    e = sub_event("trial_will_end", T, "trialing", trial_end=T + 3 * 86400)
    handle(ctx, e, e)
    [notice] = outbox(ctx)
    assert (notice.kind, notice.customer) == ("trial_will_end", "cus_A")
    assert notice.message == {"subscription": "sub_A", "customer": "cus_A", "trial_end": T + 259200}
    assert features(ctx) == ["pro"]  # still trialing: still entitled
    handle(ctx, sub_event("trial_will_end", T + 1, "trialing"))
    assert len(outbox(ctx)) == 2  # another event, another notice


@pytest.mark.parametrize(
    ("ending", "status"),
    [("deleted", "active"), ("updated", "canceled"), ("updated", "incomplete_expired")],
)
def test_no_trial_notice_for_a_subscription_that_has_ended(
    ctx: Context, ending: str, status: str
) -> None:
    handle(ctx, sub_event(ending, T + 10, status))
    handle(ctx, sub_event("trial_will_end", T, "trialing"))
    assert outbox(ctx) == []
