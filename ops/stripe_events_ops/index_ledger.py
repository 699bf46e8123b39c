"""`stripe-events infra index-ledger`: the ledger index's keys for what versions before it
wrote, so that `ledger` and `failures` list it.

Run once, after the version that writes them is deployed: it scans the whole table. Each
write is conditional on what the scan saw, so an item that a function changed meanwhile
keeps what the function wrote.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from stripe_events._schema import EVENT_PREFIX, EVENT_SK, HANDLER_PREFIX, INDEX_ORDER, SEEN_SHARDS
from stripe_events._stores.dynamodb import (
    NOT_RECEIVED,
    PK,
    SK,
    DynamoStore,
    _outcome,
    _seen_at,
    index_keys,
    outcome_item,
)

UNINDEXED = "attribute_not_exists(#order)"


def index_earlier_items(store: DynamoStore) -> Iterator[bool]:
    """For each item found without the index's keys, whether it was indexed now."""
    pages = store.client.get_paginator("scan").paginate(
        TableName=store.table,
        FilterExpression=f"{UNINDEXED} AND "
        "(#sk = :event OR (begins_with(#sk, :handler) AND #status = :error))",
        ExpressionAttributeValues={
            ":event": {"S": EVENT_SK},
            ":handler": {"S": HANDLER_PREFIX},
            ":error": {"S": "error"},
        },
        ExpressionAttributeNames={"#order": INDEX_ORDER, "#sk": SK, "#status": "status"},
    )
    return (_index(store, item) for page in pages for item in page["Items"])


def _index(store: DynamoStore, item: dict[str, Any]) -> bool:
    event_id = item[PK]["S"].removeprefix(EVENT_PREFIX)
    if item[SK]["S"] != EVENT_SK:
        handler = item[SK]["S"].removeprefix(HANDLER_PREFIX)
        indexed = outcome_item(
            event_id, handler, _outcome(item), lambda: store._seen_at_of(event_id)
        )
        # Unless the outcome has been recorded again since.
        return store._put_if(
            indexed,
            f"{UNINDEXED} AND #status = :error AND #at = :at",
            {":error": item["status"], ":at": item["at"]},
            order=INDEX_ORDER,
            status="status",
            at="at",
        )
    # The time the scan saw orders the event, unless a receipt has come since.
    received = item.get("received_at")
    return store._update_if(
        {PK: item[PK], SK: item[SK]},
        index_keys(SEEN_SHARDS, event_id, _seen_at(item)),
        f"{UNINDEXED} AND " + ("received_at = :received" if received else NOT_RECEIVED),
        {":received": received} if received else {},
        order=INDEX_ORDER,
    )
