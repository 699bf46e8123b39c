"""The customers module, called directly: no AWS, no Chalice."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import pytest
import stripe

from chalicelib.resources import customers
from stripe_events._context import Context
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import samples


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    store = SqliteStore(tmp_path / "state.sqlite3")
    return Context(store, logging.getLogger("test"), "customers.test")


def event(event_type: str, created: int, **changes: Any) -> stripe.Event:
    data = samples.sample_event(event_type, created=created, changes=changes)
    return stripe.Event.construct_from(data, None)


def handle(e: stripe.Event, ctx: Context) -> None:
    for handler in customers.router.handlers_for(e.type):
        handler.func(e, ctx)


def test_the_module_handles_the_customer_lifecycle() -> None:
    assert customers.router.event_types() == [
        "customer.created",
        "customer.deleted",
        "customer.updated",
    ]


def customer(ctx: Context, customer_id: str) -> dict[str, Any]:
    item = ctx.store.get("customers", customer_id)
    assert item is not None
    return item


def test_created_then_updated_keeps_the_latest_record(ctx: Context) -> None:
    handle(event("customer.created", 100, id="cus_A", email="a@example.com"), ctx)
    handle(event("customer.updated", 200, id="cus_A", email="new@example.com", name="Ada"), ctx)
    stored = customer(ctx, "cus_A")
    assert (stored["object"]["email"], stored["object"]["name"]) == ("new@example.com", "Ada")
    assert stored["deleted"] is False


def test_an_older_update_arriving_late_is_ignored(
    ctx: Context, caplog: pytest.LogCaptureFixture
) -> None:
    handle(event("customer.updated", 200, id="cus_A", email="new@example.com"), ctx)
    late = event("customer.created", 100, id="cus_A", email="old@example.com")
    with caplog.at_level(logging.INFO):
        handle(late, ctx)
    assert customer(ctx, "cus_A")["object"]["email"] == "new@example.com"
    assert f"customer.created {late.id} is not newer" in caplog.text


def test_created_and_updated_in_the_same_second_keep_the_update(ctx: Context) -> None:
    handle(event("customer.updated", 100, id="cus_A", email="new@example.com"), ctx)
    handle(event("customer.created", 100, id="cus_A", email="old@example.com"), ctx)
    assert customer(ctx, "cus_A")["object"]["email"] == "new@example.com"


def test_a_deletion_is_final(ctx: Context) -> None:
    handle(event("customer.created", 100, id="cus_A"), ctx)
    deletion = event("customer.deleted", 200, id="cus_A")
    handle(deletion, ctx)
    handle(event("customer.updated", 300, id="cus_A", email="zombie@example.com"), ctx)
    stored = customer(ctx, "cus_A")
    assert stored["deleted"] is True
    assert stored["version"]["event_id"] == deletion.id
    assert stored["object"]["email"] != "zombie@example.com"
