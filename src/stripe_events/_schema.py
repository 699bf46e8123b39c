"""Names the runtime and the infrastructure share, each defined once, here.

The DynamoDB store reads and writes by them, and the CloudFormation template (generated
by the operator's `infra` module) creates the table and the bucket from them.

The table: keys `pk` (partition) and `sk` (sort), both strings, billed on demand; TTL on
`expiration`, which a claim on an object (`claims.once_per_object`) in progress carries:
one left by a run that died goes a day after its lease has ended.

pk = "event#<id>"             sk = "event"           the event: type, created, when
                                                      published and received, its body
pk = "event#<id>"             sk = "handler#<name>"  one handler's outcome
pk = "<collection>#<key>"     sk = "item"            a projection item (JSON in `body`)
pk = "<collection>#<parent>"  sk = "child#<key>"     an item under a parent
pk = "runs#<id>:<router>"     sk = "item"            a function's claim on an event while
                                                      it runs it (dispatch.py): a
                                                      partition per event; no TTL, as
                                                      one left by a run that died is
                                                      what `failures` lists as stalled

Versions before kept Powertools' idempotency records under pk = "idempotency" (one
partition, hot past about 1,000 writes a second). Nothing reads them now; they expire.

The ledger index `ledger`, a sparse global secondary index (keys only): only the items
that `stripe-events ledger` and `failures` list carry its keys.

ledger_shard = "seen#<n>"     ledger_order = "<seen at>#<id>"   every event item
ledger_shard = "failed#<n>"   ledger_order = "<seen at>#<id>"   an outcome whose status
                                                                  is "error" (an "ok"
                                                                  outcome replaces the item,
                                                                  keys and all)
ledger_shard = "running#<n>"  ledger_order = "<lease end>#<id>" a run's claim (deleted
                                                                  when the run ends)

"seen at" is when a function first received the event, else when it was first
published. <n> is a stable hash of the event id, modulo LEDGER_SHARDS: at any moment
the writes spread over that many partitions of the index, and each shard is ordered by
time, so a query reads the newest first and stops at its limit or its `since`.

The bucket: bodies of oversized events under `events/` (they expire after
RETENTION_DAYS), items too large for DynamoDB under `state/` (kept).
"""

from __future__ import annotations

from typing import Any

PARTITION_KEY = "pk"
SORT_KEY = "sk"
KEY_SCHEMA = ((PARTITION_KEY, "HASH"), (SORT_KEY, "RANGE"))
TTL_ATTRIBUTE = "expiration"

EVENT_PREFIX = "event#"
EVENT_SK = "event"
ITEM_SK = "item"
HANDLER_PREFIX = "handler#"
CHILD_PREFIX = "child#"
# How long a claim in progress is kept after its lease has ended, for whoever looks.
CLAIM_KEPT_SECONDS = 24 * 3600

LEDGER_INDEX = "ledger"
INDEX_SHARD = "ledger_shard"
INDEX_ORDER = "ledger_order"
INDEX_KEY_SCHEMA = ((INDEX_SHARD, "HASH"), (INDEX_ORDER, "RANGE"))
SEEN_SHARDS = "seen"
FAILED_SHARDS = "failed"
RUNNING_SHARDS = "running"
# Shards by hash rather than buckets by day. A day's bucket takes every write of that day,
# so it is exactly as hot as a single partition; and a query without `since` could not
# tell where the ledger starts (events are kept for ever, with gaps of any length)
# without a directory of days to read first. A shard takes 1/LEDGER_SHARDS of the writes
# of any moment, and holds its events in time order, so a query reads each shard newest
# first and stops at its limit or its `since`. An index partition takes about 1,000
# writes a second, and an event costs the index up to 3 (its publication, then its key
# moved to its receipt): 8 shards carry about 2,600 events a second. The number may grow
# (items keep the shard they have, and every lower shard is still read), never shrink.
LEDGER_SHARDS = 8

EVENTS_FOLDER = "events"
STATE_FOLDER = "state"
# Longer than Stripe's retries (3 days) and its Events API (30 days), which replay and
# backfill read: how long the bodies of oversized events are kept at least.
RETENTION_DAYS = 35


def _key_schema(keys: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"AttributeName": key, "KeyType": kind} for key, kind in keys]


def table_definition() -> dict[str, Any]:
    """The table's keys, its index and billing, as both CreateTable and CloudFormation
    spell them."""
    return {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": key, "AttributeType": "S"}
            for key, _ in (*KEY_SCHEMA, *INDEX_KEY_SCHEMA)
        ],
        "KeySchema": _key_schema(KEY_SCHEMA),
        "GlobalSecondaryIndexes": [
            {
                "IndexName": LEDGER_INDEX,
                "KeySchema": _key_schema(INDEX_KEY_SCHEMA),
                # The queries need the event ids (in pk) and the order, nothing else: each
                # entry is then read from the table, as `event` reads it.
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    }
