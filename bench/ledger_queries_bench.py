"""Benchmark: what `stripe-events ledger` and `failures` read from a ledger of 100,000 items.

Run from the repository root: `make bench-ledger` (or `.venv/bin/python
bench/ledger_queries_bench.py`). Nothing leaves the machine: the script starts its own moto
server on a free 127.0.0.1 port.

It creates the table as the template defines it (template.table_definition) and writes,
with BatchWriteItem, 40,000 events spread over the last 30 days, each with one or two
handler outcomes, 0.5% of them failing: 100,000 items. Each command's query then runs two
ways: as the store runs it (the `ledger` index), and as it ran before the index (a scan of
the table, then the same read of each listed entry). Items read is the sum of
`ScannedCount` over the responses: what DynamoDB reads, and bills, to answer.

Times are moto's. Moto 5.2 answers every query by walking the whole table in Python;
DynamoDB reads only the partition asked for. The script hands moto that partition for
the entries' queries (on the table's key; see `read_partitions_only`), but moto still
walks the table for each query on the index: the index's times here are moto's walks,
not DynamoDB's, whose query costs what it reads.
"""

from __future__ import annotations

import json
import logging
import os
import random
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# `python bench/ledger_queries_bench.py` puts bench/ on sys.path, not the root that holds tests/.
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import boto3  # noqa: E402
from moto.dynamodb.models.table import Table  # noqa: E402

from stripe_events._ledger import LedgerEntry, Outcome  # noqa: E402
from stripe_events._schema import EVENT_PREFIX, HANDLER_PREFIX  # noqa: E402
from stripe_events._stores.dynamodb import (  # noqa: E402
    DynamoStore,
    event_attributes,
    event_key,
    outcome_item,
)
from stripe_events_ops.template import table_definition  # noqa: E402
from tests.moto_server import MotoServer  # noqa: E402

REGION = "us-east-1"
TABLE = "stripe-events-bench"
EVENTS = 40_000  # and 60,000 outcomes: every other event has two handlers
DAYS = 30
FAILING = 0.005
LIMIT = 20  # `ledger`'s default --limit
BATCH = 25  # BatchWriteItem's most
HANDLERS = ("invoices.mark_paid", "invoices.notify")


def start_moto() -> MotoServer:
    """A moto server on a free loopback port, as the tests start one, and boto3 pointed at it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    server = MotoServer()
    server.start()
    os.environ.update(
        AWS_ENDPOINT_URL=server.url,
        AWS_ACCESS_KEY_ID="bench",
        AWS_SECRET_ACCESS_KEY="bench",
        AWS_DEFAULT_REGION=REGION,
        AWS_REGION=REGION,
    )
    return server


def read_partitions_only() -> None:
    """Answer moto's queries on the table's own key from the partition asked for.

    Moto filters every item of the table for each of them (about 1.5 s on 100,000 items):
    the thousand entries read here would take half an hour. The partition holds the very
    items moto would find, so the answers and their ScannedCount are the same.
    """
    query = Table.query
    index_position = 6  # moto's own call passes index_name 8th, after self and hash_key

    def one_partition(self: Any, hash_key: Any, *args: Any, **kwargs: Any) -> Any:
        if args[index_position] is not None:
            return query(self, hash_key, *args, **kwargs)
        partition = list(self.items.get(hash_key, {}).values())
        self.all_items = lambda: partition  # the instance's, for this call only
        try:
            return query(self, hash_key, *args, **kwargs)
        finally:
            del self.all_items

    Table.query = one_partition  # type: ignore[method-assign]


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="microseconds")


def ledger_items(now: datetime) -> Iterator[dict[str, Any]]:
    """EVENTS events spread over DAYS days, each published, received, and handled."""
    rng = random.Random(1)
    for n in range(EVENTS):
        published = now - timedelta(seconds=rng.uniform(0, DAYS * 86_400))
        received = published + timedelta(milliseconds=rng.uniform(50, 500))
        failing = [rng.random() < FAILING for _ in HANDLERS[: 1 + n % 2]]
        yield from event_items(f"evt_bench{n:016d}", published, received, failing)


def event_items(
    event_id: str, published: datetime, received: datetime, failing: list[bool]
) -> Iterator[dict[str, Any]]:
    """An event's items as the store writes them (its own functions build them), with an
    outcome of each of its handlers: an error where `failing` says so."""
    seen = iso(received)
    body = json.dumps({"id": event_id, "object": "event", "type": "invoice.paid"})
    first = {"published_at": iso(published), "received_at": seen, "body": body}
    created = int(published.timestamp())
    yield {**event_key(event_id), **event_attributes(event_id, "invoice.paid", created, first)}
    for handler, fails in zip(HANDLERS, failing, strict=False):
        outcome = (
            Outcome("error", 3, seen, "KeyError", "'customer'") if fails else Outcome("ok", 1, seen)
        )
        yield outcome_item(event_id, handler, outcome, lambda: seen)


def write(client: Any, items: Iterator[dict[str, Any]]) -> int:
    written = 0
    batch: list[dict[str, Any]] = []
    for item in items:
        batch.append({"PutRequest": {"Item": item}})
        if len(batch) == BATCH:
            written += put_batch(client, batch)
            batch = []
    return written + (put_batch(client, batch) if batch else 0)


def put_batch(client: Any, batch: list[dict[str, Any]]) -> int:
    pending = {TABLE: batch}
    while pending:  # DynamoDB may hand some back when throttled; moto does not
        pending = client.batch_write_item(RequestItems=pending).get("UnprocessedItems") or {}
    return len(batch)


@dataclass
class Reads:
    """Items read (ScannedCount) by the listing (a scan or the index) and by the entries."""

    listing: int = 0
    entries: int = 0
    requests: int = 0

    def watch(self, client: Any) -> None:
        kinds: list[str] = []

        def before(params: dict[str, Any], model: Any, **_: Any) -> None:
            listing = model.name == "Scan" or "IndexName" in params
            kinds.append("listing" if listing else "entries")

        def after(parsed: dict[str, Any], **_: Any) -> None:
            kind = kinds.pop()
            setattr(self, kind, getattr(self, kind) + parsed.get("ScannedCount", 0))
            self.requests += 1

        client.meta.events.register("provide-client-params.dynamodb", before)
        client.meta.events.register("after-call.dynamodb", after)


# Before the index: what DynamoStore.recent and .failures did, a scan of the whole table.


def scanned(
    store: DynamoStore, condition: str, values: dict[str, Any], names: dict[str, str] | None = None
) -> list[dict[str, Any]]:
    """The items that match `condition`, read by a scan of the whole table."""
    pages = store.client.get_paginator("scan").paginate(
        TableName=store.table,
        FilterExpression=condition,
        ExpressionAttributeValues=values,
        **({"ExpressionAttributeNames": names} if names else {}),
    )
    return [item for page in pages for item in page["Items"]]


def event_id(item: dict[str, Any]) -> str:
    return str(item["pk"]["S"]).removeprefix(EVENT_PREFIX)


def entries(store: DynamoStore, event_ids: list[str]) -> list[LedgerEntry]:
    listed = [e for e in map(store.event, event_ids) if e is not None]
    return sorted(listed, key=lambda e: (e.seen_at, e.id), reverse=True)


def recent_by_scan(store: DynamoStore, limit: int, since: str) -> list[LedgerEntry]:
    events = [
        ((item.get("received_at") or item["published_at"])["S"], event_id(item))
        for item in scanned(store, "sk = :sk", {":sk": {"S": "event"}})
    ]
    newest = sorted((e for e in events if e[0] >= since), reverse=True)[:limit]
    return entries(store, [event_id for _, event_id in newest])


def failures_by_scan(store: DynamoStore, since: str) -> list[LedgerEntry]:
    items = scanned(
        store,
        "begins_with(sk, :handler) AND #status = :error",
        {":handler": {"S": HANDLER_PREFIX}, ":error": {"S": "error"}},
        {"#status": "status"},
    )
    ids = sorted({event_id(item) for item in items})
    return [e for e in entries(store, ids) if e.seen_at >= since]


@dataclass
class Measure:
    rows: int
    reads: Reads
    seconds: float
    ids: list[str]


Query = Callable[[DynamoStore], list[LedgerEntry]]


def measure(query: Query) -> Measure:
    store = DynamoStore(TABLE, REGION)  # a client of its own, watched by `reads`
    reads = Reads()
    reads.watch(store.client)
    start = time.perf_counter()
    listed = query(store)
    seconds = time.perf_counter() - start
    return Measure(len(listed), reads, seconds, [e.id for e in listed])


def main() -> None:
    server = start_moto()
    read_partitions_only()
    try:
        client = boto3.client("dynamodb", region_name=REGION)
        client.create_table(TableName=TABLE, **table_definition())
        now = datetime.now(UTC)
        start = time.perf_counter()
        size = write(client, ledger_items(now))
        print(
            f"wrote {size:,} items ({EVENTS:,} events over {DAYS} days, {FAILING:.1%} of "
            f"outcomes failing) in {time.perf_counter() - start:.0f} s\n"
        )
        day = iso(now - timedelta(days=1))
        # Each command: (as the store lists it now, as it listed it before the index).
        commands: dict[str, tuple[Query, Query]] = {
            f"ledger --limit {LIMIT}": (
                lambda store: store.recent(LIMIT),
                lambda store: recent_by_scan(store, LIMIT, ""),
            ),
            "ledger --since 1d": (
                lambda store: store.recent(LIMIT, day),
                lambda store: recent_by_scan(store, LIMIT, day),
            ),
            "failures": (
                lambda store: store.failures(),
                lambda store: failures_by_scan(store, ""),
            ),
            "failures --since 1d": (
                lambda store: store.failures(day),
                lambda store: failures_by_scan(store, day),
            ),
        }
        header = (
            f"{'command':<20} {'rows':>5} | {'before: scan + entries':>24} {'time':>7} | "
            f"{'after: index + entries':>24} {'time':>7} | {'requests':>8}"
        )
        print(header)
        print("-" * len(header))
        for command, (indexed, by_scan) in commands.items():
            after, before = measure(indexed), measure(by_scan)
            if after.ids != before.ids:
                raise SystemExit(f"{command}: the index lists other events than the scan")
            print(
                f"{command:<20} {after.rows:>5} | "
                f"{f'{before.reads.listing:,} + {before.reads.entries:,}':>24} "
                f"{before.seconds:>6.2f}s | "
                f"{f'{after.reads.listing:,} + {after.reads.entries:,}':>24} "
                f"{after.seconds:>6.2f}s | {after.reads.requests:>8}"
            )
        print(
            "\nitems read: ScannedCount summed over the responses; requests: the index's "
            "queries and the entries' own. Times are moto's (see the docstring)."
        )
    finally:
        server.stop()


if __name__ == "__main__":
    main()
