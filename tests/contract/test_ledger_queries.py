"""The ledger's queries read what they list, not the table.

On DynamoDB (moto), `recent` and `failures` query the sparse index `ledger` and never
scan; they list what SQLite lists for the same history. What earlier versions wrote is
listed too, once `index_earlier_items` has run.
"""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import given
from hypothesis import strategies as st

from stripe_events._ledger import Outcome
from stripe_events._schema import (
    INDEX_ORDER,
    KEY_SCHEMA,
    LEDGER_INDEX,
    LEDGER_SHARDS,
    SEEN_SHARDS,
)
from stripe_events._stores import Store
from stripe_events._stores.dynamodb import DynamoStore, index_keys
from stripe_events_local.sqlite import SqliteStore
from stripe_events_ops.doctor import Doctor
from stripe_events_ops.index_ledger import index_earlier_items
from tests.conftest import REGION
from tests.helpers import create_table
from tests.sqs_poller import unique

EVENTS = 64
DAYS = 10
HANDLERS = ("invoices.mark_paid", "invoices.notify", "ledger.post")
START = datetime(2026, 3, 1, tzinfo=UTC)


def new_table() -> DynamoStore:
    table = unique("ledger-queries")
    create_table(table, REGION)
    return DynamoStore(table, REGION)


def drop(store: DynamoStore) -> None:
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=store.table)


@pytest.fixture
def dynamo(moto_url: str) -> Iterator[DynamoStore]:
    store = new_table()
    yield store
    drop(store)


@pytest.fixture
def sqlite(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "stripe-events.sqlite3")


def at(day: int, second: int) -> str:
    """A time as the ledger writes them, `day` days and `second` seconds after START."""
    return (START + timedelta(days=day, seconds=second)).isoformat(timespec="microseconds")


def write_history(stores: list[Store], seed: int = 7) -> None:
    """The same history in each store: events published, received, or both in either
    order, on the same second at times, with handlers that fail, recover, or fail late."""
    rng = random.Random(seed)
    day = second = 0
    for n in range(EVENTS):
        event_id = f"evt_{rng.randrange(16**8):08x}{n:03d}"
        if n % 9:  # else: the same time as the event before (a tie, broken by id)
            day, second = n % DAYS, rng.randrange(86_000)
        published, received = at(day, second), at(day, second + 1 + second % 2)
        kind = n % 5
        for store in stores:
            if kind in (0, 2, 3):
                store.record_published(event_id, "invoice.paid", 1_700_000_000 + n, published)
            if kind:
                store.record_received(event_id, "invoice.paid", 1_700_000_000 + n, received, "{}")
            if kind == 4:  # the function received it before the webhook recorded it
                store.record_published(event_id, "invoice.paid", 1_700_000_000 + n, published)
        if not kind:
            continue
        for handler in rng.sample(HANDLERS, rng.randrange(1, 3)):
            failed = Outcome("error", 1, at(day, second + 5), "KeyError", "'x'")
            fate = rng.random()
            outcomes = [Outcome("ok", 1, at(day, second + 5))]
            if fate < 0.3:
                outcomes = [failed]
            elif fate < 0.4:  # failed, then the retry succeeded
                outcomes = [failed, Outcome("ok", 2, at(day, second + 60))]
            elif fate < 0.5:  # the failed run's outcome arrives after its retry's success
                outcomes = [Outcome("ok", 2, at(day, second + 60)), failed]
            for store in stores:
                for outcome in outcomes:
                    store.record_outcome(event_id, handler, outcome)
    for store in stores:  # what shares the table and is no event
        store.put("customers", "cus_1", {"id": "cus_1"})


History = tuple[DynamoStore, SqliteStore]


@pytest.fixture(scope="module")
def history(moto_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[History]:
    """DynamoDB and SQLite with the same history, written once: the tests only read it."""
    dynamo = new_table()
    sqlite = SqliteStore(tmp_path_factory.mktemp("history") / "ledger.sqlite3")
    write_history([dynamo, sqlite])
    yield dynamo, sqlite
    drop(dynamo)


SINCES = ["", at(4, 43_000), "2026-03-07", at(DAYS, 0)]


def test_dynamodb_lists_what_sqlite_lists_in_the_same_order(history: History) -> None:
    dynamo, sqlite = history
    for since in SINCES:
        for limit in (1, 5, 17, EVENTS + 1):
            assert dynamo.recent(limit, since) == sqlite.recent(limit, since), (limit, since)
        assert dynamo.failures(since) == sqlite.failures(since), since
    # The history has what the queries must sort out.
    everything = sqlite.recent(EVENTS + 1)
    assert len(everything) == EVENTS
    assert len({e.seen_at for e in everything}) < EVENTS  # ties
    assert any(
        o.status == "ok" and o.attempts == 2 for e in everything for o in e.handlers.values()
    )
    assert 5 < len(sqlite.failures()) < EVENTS


times = st.datetimes(
    min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)
).map(lambda t: t.isoformat(timespec="microseconds"))
event_ids = st.from_regex(r"evt_[A-Za-z0-9]{1,6}", fullmatch=True)


@given(times, event_ids, times, event_ids, times)
def test_the_index_order_sorts_as_seen_at_then_id(
    seen_a: str, id_a: str, seen_b: str, id_b: str, since: str
) -> None:
    # The index must order as the ledger does, and `since` must cut it where it cuts times,
    # whatever the precision of the times (a time may be a prefix of another).
    for seen_b_, since_ in ((seen_b, since), (seen_a, since[:10]), (seen_a[:19], seen_a)):
        a = index_keys(SEEN_SHARDS, id_a, seen_a)[INDEX_ORDER]["S"]
        b = index_keys(SEEN_SHARDS, id_b, seen_b_)[INDEX_ORDER]["S"]
        assert (a < b) == ((seen_a, id_a) < (seen_b_, id_b))
        assert (a >= since_) == (seen_a >= since_)


@dataclass
class Requests:
    """What a client asked DynamoDB: operation, index, and the items it read (ScannedCount)."""

    made: list[tuple[str, str | None]] = field(default_factory=list)
    read: list[int] = field(default_factory=list)

    @classmethod
    def of(cls, client: Any) -> Requests:
        requests = cls()

        def before(params: dict[str, Any], model: Any, **_: Any) -> None:
            requests.made.append((model.name, params.get("IndexName")))
            requests.read.append(0)

        def after(parsed: dict[str, Any], **_: Any) -> None:
            requests.read[-1] = parsed.get("ScannedCount", 0)

        client.meta.events.register("provide-client-params.dynamodb", before)
        client.meta.events.register("after-call.dynamodb", after)
        return requests

    def clear(self) -> None:
        self.made.clear()
        self.read.clear()

    def from_index(self) -> int:
        return sum(n for (_, index), n in zip(self.made, self.read, strict=True) if index)

    def operations(self) -> set[str]:
        return {operation for operation, _ in self.made}


def test_the_queries_read_in_proportion_to_what_they_list(history: History) -> None:
    dynamo, _ = history
    requests = Requests.of(dynamo.client)
    for limit in (1, 5, 20):
        for since in SINCES:
            requests.clear()
            listed = dynamo.recent(limit, since)
            assert requests.operations() <= {"Query"}
            # The index: what is listed, plus at most about a page per shard.
            assert requests.from_index() <= 2 * limit + 2 * LEDGER_SHARDS
            # Then each entry is read as `event` reads it: one query of its own items.
            assert requests.made.count(("Query", None)) == len(listed)
    for since in SINCES:
        requests.clear()
        failing = dynamo.failures(since)
        assert requests.operations() <= {"Query"}
        # Exactly the failing outcomes of the events listed: none that recovered.
        assert requests.from_index() == sum(len(e.failing) for e in failing)
        assert requests.made.count(("Query", None)) == len(failing)


# Items written before the index ---------------------------------------------------------


def record_as_before(store: DynamoStore, event_id: str, first: dict[str, str]) -> None:
    """An event's record as versions before the index wrote it."""
    names = {f"#f{i}": name for i, name in enumerate(first)}
    values = {f":f{i}": {"S": value} for i, value in enumerate(first.values())}
    keep_first = ", ".join(f"#f{i} = if_not_exists(#f{i}, :f{i})" for i in range(len(first)))
    store.client.update_item(
        TableName=store.table,
        Key={"pk": {"S": f"event#{event_id}"}, "sk": {"S": "event"}},
        UpdateExpression=f"SET #type = :type, created = :created, {keep_first}",
        ExpressionAttributeNames={"#type": "type", **names},
        ExpressionAttributeValues={
            ":type": {"S": "invoice.paid"},
            ":created": {"N": "5"},
            **values,
        },
    )


def outcome_as_before(store: DynamoStore, event_id: str, handler: str, outcome: Outcome) -> None:
    item = {
        "pk": {"S": f"event#{event_id}"},
        "sk": {"S": f"handler#{handler}"},
        "status": {"S": outcome.status},
        "attempts": {"N": str(outcome.attempts)},
        "at": {"S": outcome.at},
    }
    if outcome.error_type is not None and outcome.error is not None:
        item.update(error_type={"S": outcome.error_type}, error={"S": outcome.error})
    store.client.put_item(TableName=store.table, Item=item)


class Twin:
    """Writes the earlier way to DynamoDB, and the same history to SQLite."""

    def __init__(self, dynamo: DynamoStore, sqlite: SqliteStore) -> None:
        self.dynamo, self.sqlite = dynamo, sqlite

    def published(self, event_id: str, when: str) -> None:
        record_as_before(self.dynamo, event_id, {"published_at": when})
        self.sqlite.record_published(event_id, "invoice.paid", 5, when)

    def received(self, event_id: str, when: str) -> None:
        record_as_before(self.dynamo, event_id, {"received_at": when, "body": "{}"})
        self.sqlite.record_received(event_id, "invoice.paid", 5, when, "{}")

    def outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        outcome_as_before(self.dynamo, event_id, handler, outcome)
        self.sqlite.record_outcome(event_id, handler, outcome)


def test_items_written_before_the_index_are_indexed_once(
    dynamo: DynamoStore, sqlite: SqliteStore
) -> None:
    earlier = Twin(dynamo, sqlite)
    boom = Outcome("error", 1, at(1, 10), "KeyError", "'x'")
    earlier.published("evt_a", at(0, 1))  # published only
    earlier.published("evt_b", at(1, 1))
    earlier.received("evt_b", at(1, 2))  # ordered by its receipt
    earlier.outcome("evt_b", "invoices.notify", boom)
    earlier.received("evt_c", at(2, 1))
    earlier.outcome("evt_c", "invoices.notify", boom)
    earlier.outcome("evt_c", "invoices.notify", Outcome("ok", 2, at(2, 9)))  # recovered
    earlier.published("evt_d", at(3, 1))
    # Upgraded: this version receives an event the earlier one published, and records more.
    for store in (dynamo, sqlite):
        store.record_received("evt_d", "invoice.paid", 5, at(3, 2), "{}")
        store.record_received("evt_e", "invoice.paid", 5, at(4, 1), "{}")
        store.record_outcome("evt_e", "invoices.notify", Outcome("error", 1, at(4, 5), "E", "x"))
    assert [e.id for e in dynamo.recent(10)] == ["evt_e", "evt_d"]

    # evt_a, evt_b and evt_c, and evt_b's failing outcome; evt_d has its keys already.
    assert sum(index_earlier_items(dynamo)) == 4
    for since in ("", at(1, 2), at(1, 3)):
        assert dynamo.recent(10, since) == sqlite.recent(10, since)
        assert dynamo.failures(since) == sqlite.failures(since)
    assert [e.id for e in dynamo.failures()] == ["evt_e", "evt_b"]
    assert sum(index_earlier_items(dynamo)) == 0


def test_a_write_between_the_scan_and_the_indexing_wins(dynamo: DynamoStore) -> None:
    record_as_before(dynamo, "evt_a", {"published_at": at(0, 1)})
    outcome_as_before(dynamo, "evt_a", "invoices.notify", Outcome("error", 1, at(0, 5), "E", "x"))
    function = DynamoStore(dynamo.table, REGION)  # a function, running meanwhile

    def meanwhile(**_: Any) -> None:
        function.record_received("evt_a", "invoice.paid", 5, at(0, 3), "{}")
        function.record_outcome("evt_a", "invoices.notify", Outcome("ok", 2, at(0, 9)))

    dynamo.client.meta.events.register("after-call.dynamodb.Scan", meanwhile)
    # The event was indexed by its receipt, and the outcome that succeeded is not a failure.
    assert sum(index_earlier_items(dynamo)) == 0
    [entry] = dynamo.recent(10, since=at(0, 2))
    assert entry.received_at == at(0, 3)
    assert dynamo.failures() == []


# The doctor -------------------------------------------------------------------------------


def test_doctor_names_a_missing_ledger_index(
    moto_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dynamodb = boto3.client("dynamodb", region_name=REGION)
    table = unique("before-the-index")
    dynamodb.create_table(
        TableName=table,
        BillingMode="PAY_PER_REQUEST",
        AttributeDefinitions=[{"AttributeName": k, "AttributeType": "S"} for k, _ in KEY_SCHEMA],
        KeySchema=[{"AttributeName": k, "KeyType": kind} for k, kind in KEY_SCHEMA],
    )
    indexed = unique("with-the-index")
    create_table(indexed, REGION)

    doctor = Doctor("dev", None)
    doctor.table(dynamodb, table)
    doctor.table(dynamodb, indexed)

    lines = capsys.readouterr().out.splitlines()
    [missing] = [line for line in lines if f"index {LEDGER_INDEX}" in line and table in line]
    assert missing.startswith(f"✗ table {table} has no index {LEDGER_INDEX}: `ledger`, ")
    assert "— run `stripe-events infra up --stage dev`" in missing
    assert f"✓ table {indexed} has the index {LEDGER_INDEX} (ACTIVE)" in lines
    for name in (table, indexed):
        dynamodb.delete_table(TableName=name)
