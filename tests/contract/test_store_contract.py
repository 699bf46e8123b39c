"""One contract, two stores: SQLite (stage `local`) and DynamoDB (on moto) must behave alike."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from stripe_events._backends import open_store
from stripe_events._errors import SettingsError
from stripe_events._ledger import LedgerEntry, Outcome
from stripe_events._payloads import S3PayloadStore, restore
from stripe_events._settings import Settings
from stripe_events._stores import Claim, Store
from stripe_events._stores.claims import refusal
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_local.sqlite import SqliteStore
from tests.conftest import REGION
from tests.helpers import create_table
from tests.sqs_poller import unique

T1 = "2026-03-01T10:00:00.000+00:00"
T2 = "2026-03-01T10:00:01.000+00:00"
T3 = "2026-03-01T10:00:02.000+00:00"


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield SqliteStore(tmp_path / "state" / "stripe-events.sqlite3")
        return
    bucket = request.getfixturevalue("s3_bucket")
    # A table per test: recent() and failures() list the whole ledger, so tests must not
    # share one.
    table = unique("store-contract")
    create_table(table, REGION)
    yield DynamoStore(table, REGION, lambda: S3PayloadStore(bucket, REGION))
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)


def _ids(entries: list[LedgerEntry]) -> list[str]:
    return [entry.id for entry in entries]


def test_record_received_keeps_the_first_receipt(store: Store) -> None:
    store.record_received("evt_1", "customer.created", 1_700_000_000, T1, '{"a": 1}')
    store.record_received("evt_1", "customer.created", 1_700_000_000, T2, '{"a": 2}')

    assert store.recent(10) == [
        LedgerEntry("evt_1", "customer.created", 1_700_000_000, None, T1, '{"a": 1}', {})
    ]


def test_published_then_received_is_one_event(store: Store) -> None:
    assert not store.seen("evt_1")
    store.record_published("evt_1", "invoice.paid", 5, T1)
    assert store.seen("evt_1")
    store.record_published("evt_1", "invoice.paid", 5, T3)  # a second publish keeps the first
    store.record_received("evt_1", "invoice.paid", 5, T2, "{}")

    assert store.event("evt_1") == LedgerEntry("evt_1", "invoice.paid", 5, T1, T2, "{}", {})
    assert store.event("evt_2") is None


def test_a_publication_recorded_after_the_receipt_keeps_the_receipts_time(store: Store) -> None:
    # The function may record its receipt before the webhook records the publication.
    store.record_received("evt_1", "invoice.paid", 5, T1, "{}")
    store.record_published("evt_1", "invoice.paid", 5, T3)

    assert store.recent(10) == [LedgerEntry("evt_1", "invoice.paid", 5, T3, T1, "{}", {})]
    assert store.recent(10, since=T2) == []


def test_record_outcome_replaces_the_previous_one(store: Store) -> None:
    store.record_received("evt_1", "invoice.paid", 1_700_000_000, T1, "{}")
    failed = Outcome("error", 1, T1, "KeyError", "'x'")
    store.record_outcome("evt_1", "invoices.mark_paid", failed)
    store.record_outcome("evt_1", "invoices.notify", Outcome("ok", 1, T1))

    store.record_outcome("evt_1", "invoices.mark_paid", Outcome("ok", 2, T2))

    # The error of the failed attempt must not linger on the successful one.
    assert store.outcomes("evt_1") == {
        "invoices.mark_paid": Outcome("ok", 2, T2, None, None),
        "invoices.notify": Outcome("ok", 1, T1, None, None),
    }


def test_outcomes_belong_to_their_event_only(store: Store) -> None:
    store.record_outcome("evt_1", "customers.save_customer", Outcome("ok", 1, T1))
    boom = Outcome("error", 3, T2, "RuntimeError", "boom")
    store.record_outcome("evt_10", "customers.save_customer", boom)

    assert store.outcomes("evt_1") == {"customers.save_customer": Outcome("ok", 1, T1)}
    assert store.outcomes("evt_10") == {"customers.save_customer": boom}
    assert store.outcomes("evt_unknown") == {}


def test_recent_is_newest_first_with_each_events_handlers(store: Store) -> None:
    store.record_received("evt_b", "invoice.paid", 20, T2, "b")
    store.record_received("evt_a", "customer.created", 10, T1, "a")
    store.record_published("evt_c", "charge.refunded", 30, T3)
    timeout = Outcome("error", 1, T2, "TimeoutError", "slow")
    store.record_outcome("evt_b", "invoices.mark_paid", timeout)
    store.record_outcome("evt_c", "charges.refund", Outcome("ok", 1, T3))
    # Projection items share the DynamoDB table with the ledger; they are not events.
    store.put("customers", "cus_1", {"id": "cus_1"})

    assert store.recent(2) == [
        LedgerEntry(
            "evt_c", "charge.refunded", 30, T3, None, None, {"charges.refund": Outcome("ok", 1, T3)}
        ),
        LedgerEntry("evt_b", "invoice.paid", 20, None, T2, "b", {"invoices.mark_paid": timeout}),
    ]
    assert _ids(store.recent(10)) == ["evt_c", "evt_b", "evt_a"]
    assert _ids(store.recent(10, since=T2)) == ["evt_c", "evt_b"]
    assert store.recent(0) == []


def test_failures_are_events_whose_latest_outcome_is_an_error(store: Store) -> None:
    for event_id, at in (("evt_a", T1), ("evt_b", T2), ("evt_c", T3)):
        store.record_received(event_id, "invoice.paid", 1, at, "{}")
    store.record_outcome("evt_a", "invoices.x", Outcome("error", 1, T1, "E", "a"))
    store.record_outcome("evt_b", "invoices.x", Outcome("error", 1, T2, "E", "b"))
    store.record_outcome("evt_b", "invoices.y", Outcome("ok", 1, T2))
    store.record_outcome("evt_c", "invoices.x", Outcome("error", 1, T3, "E", "c"))
    store.record_outcome("evt_c", "invoices.x", Outcome("ok", 2, T3))  # recovered

    failing = store.failures()
    assert _ids(failing) == ["evt_b", "evt_a"]
    assert failing[0].failing == {"invoices.x": Outcome("error", 1, T2, "E", "b")}
    assert _ids(store.failures(since=T2)) == ["evt_b"]


def test_recent_breaks_ties_by_event_id(store: Store) -> None:
    # DynamoDB keeps no arrival order, so both stores break ties the same way: by id.
    for event_id in ("evt_2", "evt_3", "evt_1"):
        store.record_received(event_id, "customer.updated", 1, T1, "{}")

    assert _ids(store.recent(10)) == ["evt_3", "evt_2", "evt_1"]


ITEM: dict[str, Any] = {
    "id": "cus_Zoë",
    "name": "Zoë Ünïcødé 🦄 客户",
    "quote": 'she said "hi"\n\tand left \\ ',
    "nested": {"list": [1, 2.5, None, True, False, {"deep": ["a", {"deeper": []}]}], "empty": {}},
    "big": 2**53 + 1,
    "negative": -0.125,
}


def test_put_then_get_round_trips_json(store: Store) -> None:
    store.put("customers", "cus_Zoë", ITEM)

    assert store.get("customers", "cus_Zoë") == ITEM


def test_put_replaces_the_whole_item(store: Store) -> None:
    store.put("customers", "cus_1", {"id": "cus_1", "email": "a@example.com", "name": "A"})
    store.put("customers", "cus_1", {"id": "cus_1", "deleted": True})

    assert store.get("customers", "cus_1") == {"id": "cus_1", "deleted": True}


def test_get_missing_is_none(store: Store) -> None:
    store.put("customers", "cus_1", {"id": "cus_1"})

    assert store.get("customers", "cus_2") is None
    assert store.get("subscriptions", "cus_1") is None


def test_collection_and_key_cannot_collide(store: Store) -> None:
    # DynamoStore keys items by f"{collection}#{key}": a '#' in the collection is refused.
    with pytest.raises(ValueError, match="without '#'"):
        store.put("a#b", "c", {})
    with pytest.raises(ValueError, match="without '#'"):
        store.get("a#b", "c")
    store.put("a", "b#c", {"which": "second"})
    store.put("a", "b", {"which": "first"})

    assert store.get("a", "b#c") == {"which": "second"}


def test_open_store_uses_sqlite_on_the_local_bus(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"STRIPE_EVENTS_BUS": "local", "STRIPE_EVENTS_STATE_DIR": str(tmp_path / "state")}
    )

    store = open_store(settings)

    assert isinstance(store, SqliteStore)
    assert store.path == tmp_path / "state" / "stripe-events.sqlite3"
    assert store.path.is_file()


@pytest.mark.parametrize("table", ["", "   "])
def test_open_store_without_a_table_says_what_to_set(table: str) -> None:
    settings = Settings.from_env({"STRIPE_EVENTS_BUS": "default", "STRIPE_EVENTS_TABLE": table})

    with pytest.raises(SettingsError) as raised:
        open_store(settings)

    message = str(raised.value)
    assert "STRIPE_EVENTS_TABLE is not set" in message
    assert "STRIPE_EVENTS_BUS=local" in message


def test_open_store_uses_dynamodb_on_aws(moto_url: str) -> None:
    settings = Settings.from_env(
        {"STRIPE_EVENTS_BUS": "default", "STRIPE_EVENTS_TABLE": "ledger", "AWS_REGION": "eu-west-1"}
    )

    store = open_store(settings)

    assert isinstance(store, DynamoStore)
    assert store.table == "ledger"
    assert store.client.meta.region_name == "eu-west-1"


def test_children_are_kept_under_their_parent(store: Store) -> None:
    store.put_child_if_newer("customer_invoices", "cus_1", "in_2", {"status": "open"}, "1")
    store.put_child_if_newer("customer_invoices", "cus_1", "in_1", {"status": "paid"}, "1")
    store.put_child_if_newer("customer_invoices", "cus_1", "in_2", {"status": "paid"}, "2")
    store.put_child_if_newer("customer_invoices", "cus_10", "in_3", {"status": "open"}, "1")
    store.put_child_if_newer("customer_disputes", "cus_1", "dp_1", {"status": "won"}, "1")
    store.put("customer_invoices", "cus_1", {"not": "a child"})

    assert store.children("customer_invoices", "cus_1") == {
        "in_1": {"status": "paid"},
        "in_2": {"status": "paid"},
    }
    assert store.children("customer_invoices", "cus_unknown") == {}
    with pytest.raises(ValueError, match="without '#'"):
        store.children("a#b", "cus_1")


# Conditional writes: the newest order wins, in one atomic step --------------------------


def test_put_if_newer_keeps_the_item_with_the_greatest_order(store: Store) -> None:
    assert store.put_if_newer("subscriptions", "sub_1", {"v": "b"}, "0|b") is True
    assert store.put_if_newer("subscriptions", "sub_1", {"v": "a"}, "0|a") is False
    assert store.get("subscriptions", "sub_1") == {"v": "b"}
    # The same order is the same version again (a retry): written, and True.
    assert store.put_if_newer("subscriptions", "sub_1", {"v": "b", "again": 1}, "0|b") is True
    assert store.get("subscriptions", "sub_1") == {"v": "b", "again": 1}
    assert store.put_if_newer("subscriptions", "sub_1", {"v": "deleted"}, "1|a") is True
    assert store.put_if_newer("subscriptions", "sub_1", {"v": "c"}, "0|c") is False
    assert store.get("subscriptions", "sub_1") == {"v": "deleted"}


def test_an_item_written_by_put_is_replaced_by_any_order(store: Store) -> None:
    store.put("fulfilments", "cs_1", {"event_id": "evt_old"})
    assert store.put_if_newer("fulfilments", "cs_1", {"event_id": "evt_new"}, "0") is True
    assert store.get("fulfilments", "cs_1") == {"event_id": "evt_new"}


def test_put_child_if_newer_orders_each_child_on_its_own(store: Store) -> None:
    assert store.put_child_if_newer("customer_invoices", "cus_1", "in_1", {"s": "paid"}, "2")
    assert not store.put_child_if_newer("customer_invoices", "cus_1", "in_1", {"s": "open"}, "1")
    assert store.put_child_if_newer("customer_invoices", "cus_1", "in_2", {"s": "open"}, "1")
    assert store.put_child_if_newer("customer_invoices", "cus_2", "in_1", {"s": "draft"}, "0")
    assert store.children("customer_invoices", "cus_1") == {
        "in_1": {"s": "paid"},
        "in_2": {"s": "open"},
    }


def test_record_outcome_never_replaces_a_later_outcome(store: Store) -> None:
    # A run that failed is recorded after the retry that ran meanwhile and succeeded.
    store.record_outcome("evt_1", "checkout.fulfil", Outcome("ok", 2, T2))
    store.record_outcome("evt_1", "checkout.fulfil", Outcome("error", 1, T1, "E", "late"))
    assert store.outcomes("evt_1") == {"checkout.fulfil": Outcome("ok", 2, T2)}


# Claims: once per object, with a lease -----------------------------------------------


def test_a_claim_is_held_by_one_owner_until_done(store: Store) -> None:
    now = 1_000.0
    assert store.claim("fulfilments", "cs_1", "evt_a", 60, now) is Claim.TAKEN
    assert store.claim("fulfilments", "cs_1", "evt_b", 60, now + 1) is Claim.HELD
    # The owner's own retry (its first run died) takes it again.
    assert store.claim("fulfilments", "cs_1", "evt_a", 60, now + 2) is Claim.TAKEN
    held = store.get("fulfilments", "cs_1")
    assert held == {"claim": "claimed", "owner": "evt_a", "lease_until": now + 62}
    store.finish_claim("fulfilments", "cs_1", "evt_a", {"event_type": "x"})
    for owner in ("evt_a", "evt_b"):
        assert store.claim("fulfilments", "cs_1", owner, 60, now + 1_000) is Claim.DONE
    assert store.get("fulfilments", "cs_1") == {
        "claim": "done",
        "owner": "evt_a",
        "event_type": "x",
    }


def test_a_claim_whose_lease_ended_is_taken_over(store: Store) -> None:
    assert store.claim("fulfilments", "cs_1", "evt_a", 60, 1_000.0) is Claim.TAKEN
    assert store.claim("fulfilments", "cs_1", "evt_b", 60, 1_059.0) is Claim.HELD
    assert store.claim("fulfilments", "cs_1", "evt_b", 60, 1_061.0) is Claim.TAKEN
    # The crashed holder comes back: its release must not free the new holder's claim.
    store.release_claim("fulfilments", "cs_1", "evt_a")
    assert store.claim("fulfilments", "cs_1", "evt_c", 60, 1_062.0) is Claim.HELD


def test_a_released_claim_is_taken_at_once(store: Store) -> None:
    assert store.claim("fulfilments", "cs_1", "evt_a", 60, 1_000.0) is Claim.TAKEN
    store.release_claim("fulfilments", "cs_1", "evt_a")
    assert store.get("fulfilments", "cs_1") is None
    assert store.claim("fulfilments", "cs_1", "evt_b", 60, 1_001.0) is Claim.TAKEN


def test_a_claim_released_between_the_attempt_and_the_read_is_tried_again() -> None:
    assert refusal(None) is Claim.HELD
    assert refusal({"claim": "claimed", "owner": "evt_a"}) is Claim.HELD
    assert refusal({"claim": "done", "owner": "evt_a"}) is Claim.DONE


def test_a_sqlite_file_from_before_order_keys_is_upgraded(tmp_path: Path) -> None:
    path = tmp_path / "stripe-events.sqlite3"
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE items (collection TEXT, key TEXT, body TEXT, "
            "PRIMARY KEY (collection, key))"
        )
        db.execute("INSERT INTO items VALUES ('customers', 'cus_1', '{\"v\": \"old\"}')")
    store = SqliteStore(path)
    assert store.get("customers", "cus_1") == {"v": "old"}
    # Stored without an order key: the first ordered write replaces it, then orders hold.
    assert store.put_if_newer("customers", "cus_1", {"v": "b"}, "0|b")
    assert not store.put_if_newer("customers", "cus_1", {"v": "a"}, "0|a")
    assert store.get("customers", "cus_1") == {"v": "b"}


def test_a_record_from_before_claims_reads_as_done(store: Store) -> None:
    store.put("fulfilments", "cs_1", {"event_id": "evt_a", "event_type": "x"})
    assert store.claim("fulfilments", "cs_1", "evt_b", 60, 1_000.0) is Claim.DONE


# Nothing the store refuses: items and bodies over DynamoDB's 400 KB item limit -----------

MEGABYTE_ITEM = {"id": "in_big", "lines": [{"n": n, "text": "x" * 1_000} for n in range(1_000)]}


def test_an_item_of_a_megabyte_round_trips(store: Store) -> None:
    assert len(json.dumps(MEGABYTE_ITEM)) > 1_000_000
    store.put("invoices", "in_put", MEGABYTE_ITEM)
    assert store.put_if_newer("invoices", "in_big", MEGABYTE_ITEM, "1")
    assert not store.put_if_newer("invoices", "in_big", {"id": "older"}, "0")
    assert store.put_child_if_newer("customer_invoices", "cus_1", "in_big", MEGABYTE_ITEM, "1")
    assert store.get("invoices", "in_put") == MEGABYTE_ITEM
    assert store.get("invoices", "in_big") == MEGABYTE_ITEM
    assert store.children("customer_invoices", "cus_1") == {"in_big": MEGABYTE_ITEM}
    # Replaced by a small one: the reference goes with the old item.
    assert store.put_if_newer("invoices", "in_big", {"id": "in_big"}, "2")
    assert store.get("invoices", "in_big") == {"id": "in_big"}


def test_a_received_body_of_a_megabyte_is_kept_for_replay(store: Store, s3_bucket: str) -> None:
    event = {"id": "evt_big", "object": "event", "type": "invoice.paid", "created": 5}
    body = json.dumps({**event, "livemode": False, "data": {"object": MEGABYTE_ITEM}})
    store.record_received("evt_big", "invoice.paid", 5, T1, body)
    entry = store.event("evt_big")
    assert entry is not None and entry.body is not None
    # SQLite keeps the body; DynamoDB the reference oversized events travel as.
    assert restore(json.loads(entry.body), S3PayloadStore(s3_bucket, REGION)) == json.loads(body)


def test_dynamodb_without_a_payload_store_says_what_to_set(moto_url: str) -> None:
    table = unique("store-contract")
    create_table(table, REGION)
    store = DynamoStore(table, REGION)
    with pytest.raises(ValueError, match="STRIPE_EVENTS_BUCKET"):
        store.put("invoices", "in_big", MEGABYTE_ITEM)
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)
