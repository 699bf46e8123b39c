"""Names the DynamoDB store and the CloudFormation template share, each defined once.

pk = "event#<id>"             sk = "event"           the event: type, times, body
pk = "event#<id>"             sk = "handler#<name>"  one handler's outcome
pk = "<collection>#<key>"     sk = "item"            an item of state, or a claim
pk = "<collection>#<parent>"  sk = "child#<key>"     an item under a parent

The sparse index `ledger` (keys only) lists events by `ledger_shard` = "seen#<n>",
failing outcomes by "failed#<n>" and runs in progress by "running#<n>", each shard in
`ledger_order` ("<time>#<id>"), so a query reads the newest first and stops early.
"""

from __future__ import annotations

PARTITION_KEY = "pk"
SORT_KEY = "sk"
KEY_SCHEMA = ((PARTITION_KEY, "HASH"), (SORT_KEY, "RANGE"))
TTL_ATTRIBUTE = "expiration"

EVENT_PREFIX = "event#"
EVENT_SK = "event"
ITEM_SK = "item"
HANDLER_PREFIX = "handler#"
CHILD_PREFIX = "child#"
# How long a claim on an object left by a run that died is kept past its lease.
CLAIM_KEPT_SECONDS = 24 * 3600

LEDGER_INDEX = "ledger"
INDEX_SHARD = "ledger_shard"
INDEX_ORDER = "ledger_order"
INDEX_KEY_SCHEMA = ((INDEX_SHARD, "HASH"), (INDEX_ORDER, "RANGE"))
SEEN_SHARDS = "seen"
FAILED_SHARDS = "failed"
RUNNING_SHARDS = "running"
# Shards by hash, not buckets by day: a day's bucket is as hot as one partition. An index
# partition takes about 1,000 writes a second and an event costs it up to 3, so 8 shards
# carry about 2,600 events a second. The number may grow (lower shards are still read),
# never shrink.
LEDGER_SHARDS = 8

EVENTS_FOLDER = "events"
STATE_FOLDER = "state"
# Longer than Stripe's retries (3 days) and its Events API (30 days), which replay and
# backfill read.
RETENTION_DAYS = 35
