"""Names the runtime and the infrastructure share, each defined once, here.

The DynamoDB store reads and writes by them, and the CloudFormation template (generated
by the operator's `infra` module) creates the table and the bucket from them.

The table: keys `pk` (partition) and `sk` (sort), both strings, billed on demand; TTL on
`expiration`, which Powertools' idempotency records write.

pk = "event#<id>"             sk = "event"           the event: type, created, when
                                                      published and received, its body
pk = "event#<id>"             sk = "handler#<name>"  one handler's outcome
pk = "<collection>#<key>"     sk = "item"            a projection item (JSON in `body`)
pk = "<collection>#<parent>"  sk = "child#<key>"     an item under a parent
pk = "idempotency"            sk = <hashed key>      Powertools idempotency records

The bucket: bodies of oversized events under `events/` (they expire with the
idempotency records), items too large for DynamoDB under `state/` (kept).
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
IDEMPOTENCY_PARTITION = "idempotency"

EVENTS_FOLDER = "events"
STATE_FOLDER = "state"
# Longer than Stripe's retries (3 days) and its Events API (30 days), which replay and
# backfill read: how long event bodies and "done" idempotency records are kept at least.
RETENTION_DAYS = 35


def table_definition() -> dict[str, Any]:
    """The table's keys and billing, as both CreateTable and CloudFormation spell them."""
    return {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": key, "AttributeType": "S"} for key, _ in KEY_SCHEMA
        ],
        "KeySchema": [{"AttributeName": key, "KeyType": kind} for key, kind in KEY_SCHEMA],
    }
