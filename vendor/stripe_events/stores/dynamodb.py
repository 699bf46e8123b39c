"""DynamoDB store for the AWS stages: one table, its keys and layout in schema.py.

Conditions need top-level attributes: `order_key` on items written by `put_if_newer`,
`claim`, `claim_owner` and `lease_until` on claims, `at` on outcomes. An item's JSON
larger than DynamoDB takes (400 KB per item) goes to the payload store, and `body_ref`
holds its reference; an event's body in the ledger becomes the reference the webhook
publishes for oversized events.
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

from botocore.config import Config

import stripe_events.aws as aws
from stripe_events.ledger import LedgerEntry, Outcome
from stripe_events.payloads import (
    PayloadStore,
    load_checked,
    reference,
)
from stripe_events.stores.base import (
    CLAIMED,
    DONE,
    Claim,
    Store,
    check_collection,
    claim_item,
    refusal,
)
from stripe_events.stores.schema import (
    CHILD_PREFIX,
    EVENT_PREFIX,
    EVENT_SK,
    HANDLER_PREFIX,
    ITEM_SK,
    STATE_FOLDER,
)
from stripe_events.stores.schema import (
    PARTITION_KEY as PK,
)
from stripe_events.stores.schema import (
    SORT_KEY as SK,
)

# boto3's defaults wait 60 s to connect and to read; a hung table would hold the webhook
# past Stripe's 10 s. Fail soon instead: the caller answers 503, or Lambda retries.
FAIL_FAST = Config(
    connect_timeout=1, read_timeout=3, retries={"mode": "standard", "max_attempts": 3}
)

# DynamoDB refuses items over 400 KB (names and values); keys and the other attributes
# take well under the remaining 50 KB.
MAX_INLINE_BODY_BYTES = 350_000
NOT_OLDER = "attribute_not_exists(order_key) OR order_key <= :order"


def _event_pk(event_id: str) -> dict[str, str]:
    return {"S": f"{EVENT_PREFIX}{event_id}"}


def _item_pk(collection: str, key: str) -> dict[str, str]:
    return {"S": f"{check_collection(collection)}#{key}"}


def _optional(item: dict[str, Any], name: str) -> str | None:
    value = item.get(name, {}).get("S")
    return None if value is None else str(value)


def _outcome(item: dict[str, Any]) -> Outcome:
    return Outcome(
        item["status"]["S"],
        int(item["attempts"]["N"]),
        item["at"]["S"],
        _optional(item, "error_type"),
        _optional(item, "error"),
    )


def _seen_at(item: dict[str, Any]) -> str:
    return _optional(item, "received_at") or _optional(item, "published_at") or ""


class DynamoStore(Store):
    def __init__(
        self, table: str, region: str, payloads: Callable[[], PayloadStore] | None = None
    ) -> None:
        self.table = table
        self.client = aws.client("dynamodb", region, FAIL_FAST)
        self.payloads = payloads

    def _payload_store(self, why: str) -> PayloadStore:
        if self.payloads is None:
            raise ValueError(f"{why}, but this store has no payload store (STRIPE_EVENTS_BUCKET)")
        return self.payloads()

    def _record_event(
        self, event_id: str, event_type: str, created: int, first: dict[str, str]
    ) -> None:
        """Create or update the event item; the `first` fields keep their first value."""
        names = {f"#f{i}": name for i, name in enumerate(first)}
        values = {f":f{i}": {"S": value} for i, value in enumerate(first.values())}
        keep_first = ", ".join(f"#f{i} = if_not_exists(#f{i}, :f{i})" for i in range(len(first)))
        self.client.update_item(
            TableName=self.table,
            Key={PK: _event_pk(event_id), SK: {"S": EVENT_SK}},
            UpdateExpression=f"SET #type = :type, created = :created, {keep_first}",
            ExpressionAttributeNames={"#type": "type", **names},
            ExpressionAttributeValues={
                ":type": {"S": event_type},
                ":created": {"N": str(created)},
                **values,
            },
        )

    def record_published(self, event_id: str, event_type: str, created: int, at: str) -> None:
        self._record_event(event_id, event_type, created, {"published_at": at})

    def record_received(
        self, event_id: str, event_type: str, created: int, at: str, body: str
    ) -> None:
        size = len(body.encode("utf-8"))
        if size > MAX_INLINE_BODY_BYTES:
            # Kept as the reference an oversized event is published as: replay republishes
            # it, and the dispatcher restores the body, as for the webhook's own.
            why = f"the body of event {event_id} has {size} bytes, more than an item holds"
            body = reference(body, self._payload_store(why))
        self._record_event(event_id, event_type, created, {"received_at": at, "body": body})

    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        item = {
            PK: _event_pk(event_id),
            SK: {"S": HANDLER_PREFIX + handler},
            "status": {"S": outcome.status},
            "attempts": {"N": str(outcome.attempts)},
            "at": {"S": outcome.at},
        }
        if outcome.error_type is not None:
            item["error_type"] = {"S": outcome.error_type}
        if outcome.error is not None:
            item["error"] = {"S": outcome.error}
        self._put_if(item, "attribute_not_exists(#at) OR #at <= :at", {":at": item["at"]}, at="at")

    def _put_if(
        self, item: dict[str, Any], condition: str, values: dict[str, Any], **names: str
    ) -> bool:
        """PutItem under `condition`; False when the condition does not hold."""
        try:
            self.client.put_item(
                TableName=self.table,
                Item=item,
                ConditionExpression=condition,
                ExpressionAttributeValues=values,
                **(
                    {"ExpressionAttributeNames": {f"#{n}": v for n, v in names.items()}}
                    if names
                    else {}
                ),
            )
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _query_event(self, event_id: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression=f"{PK} = :pk",
            ExpressionAttributeValues={":pk": _event_pk(event_id)},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page["Items"]]

    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        return {
            item[SK]["S"].removeprefix(HANDLER_PREFIX): _outcome(item)
            for item in self._query_event(event_id)
            if item[SK]["S"].startswith(HANDLER_PREFIX)
        }

    def _entry(self, items: list[dict[str, Any]]) -> LedgerEntry | None:
        events = [i for i in items if i[SK]["S"] == EVENT_SK]
        if not events:
            return None
        [event] = events
        return LedgerEntry(
            event[PK]["S"].removeprefix(EVENT_PREFIX),
            event["type"]["S"],
            int(event["created"]["N"]),
            _optional(event, "published_at"),
            _optional(event, "received_at"),
            _optional(event, "body"),
            {
                i[SK]["S"].removeprefix(HANDLER_PREFIX): _outcome(i)
                for i in sorted(items, key=lambda i: str(i[SK]["S"]))
                if i[SK]["S"].startswith(HANDLER_PREFIX)
            },
        )

    def event(self, event_id: str) -> LedgerEntry | None:
        return self._entry(self._query_event(event_id))

    def _scan(self, condition: str, values: dict[str, Any], **names: str) -> list[dict[str, Any]]:
        # A scan: fine for the CLI on a modest table. A GSI on seen_at is the next step.
        paginator = self.client.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self.table,
            FilterExpression=condition,
            ExpressionAttributeValues=values,
            **(
                {"ExpressionAttributeNames": {f"#{n}": v for n, v in names.items()}}
                if names
                else {}
            ),
        )
        return [item for page in pages for item in page["Items"]]

    def _entries(self, event_ids: list[str]) -> list[LedgerEntry]:
        entries = [e for e in map(self.event, event_ids) if e is not None]
        return sorted(entries, key=lambda e: (e.seen_at, e.id), reverse=True)

    def recent(self, limit: int, since: str = "") -> list[LedgerEntry]:
        items = [
            item
            for item in self._scan(f"{SK} = :sk", {":sk": {"S": EVENT_SK}})
            if _seen_at(item) >= since
        ]
        items.sort(key=lambda i: (_seen_at(i), i[PK]["S"]), reverse=True)
        return self._entries(
            [i[PK]["S"].removeprefix(EVENT_PREFIX) for i in items[: max(limit, 0)]]
        )

    def failures(self, since: str = "") -> list[LedgerEntry]:
        items = self._scan(
            f"begins_with({SK}, :handler) AND #status = :error",
            {":handler": {"S": HANDLER_PREFIX}, ":error": {"S": "error"}},
            status="status",
        )
        ids = sorted({i[PK]["S"].removeprefix(EVENT_PREFIX) for i in items})
        return [e for e in self._entries(ids) if e.seen_at >= since]

    def _body(self, pk: str, item: dict[str, Any]) -> dict[str, Any]:
        """The attributes that hold `item`'s JSON: inline, or a reference to the payload store."""
        body = json.dumps(item, sort_keys=True)
        size = len(body.encode("utf-8"))
        if size <= MAX_INLINE_BODY_BYTES:
            return {"body": {"S": body}}
        why = f"item {pk} has {size} bytes, more than a DynamoDB item holds"
        ref = self._payload_store(why).save(pk, body, STATE_FOLDER)
        return {"body_ref": {"S": json.dumps(ref, sort_keys=True)}}

    def _load(self, item: dict[str, Any]) -> dict[str, Any]:
        if "body_ref" in item:
            pk = item[PK]["S"]
            ref = json.loads(item["body_ref"]["S"])
            payloads = self._payload_store(f"item {pk} is kept in the payload store")
            return dict(json.loads(load_checked(ref, payloads, f"item {pk}")))
        return dict(json.loads(item["body"]["S"]))

    def _item(self, pk: dict[str, str], sk: str, item: dict[str, Any]) -> dict[str, Any]:
        return {PK: pk, SK: {"S": sk}, **self._body(pk["S"], item)}

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table,
            Key={PK: _item_pk(collection, key), SK: {"S": ITEM_SK}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return None if item is None else self._load(item)

    def put(self, collection: str, key: str, item: dict[str, Any]) -> None:
        self.client.put_item(
            TableName=self.table, Item=self._item(_item_pk(collection, key), ITEM_SK, item)
        )

    def put_if_newer(self, collection: str, key: str, item: dict[str, Any], order: str) -> bool:
        stored = {**self._item(_item_pk(collection, key), ITEM_SK, item), "order_key": {"S": order}}
        return self._put_if(stored, NOT_OLDER, {":order": {"S": order}})

    def put_child_if_newer(
        self, collection: str, parent: str, key: str, item: dict[str, Any], order: str
    ) -> bool:
        pk = _item_pk(collection, parent)
        stored = {**self._item(pk, CHILD_PREFIX + key, item), "order_key": {"S": order}}
        return self._put_if(stored, NOT_OLDER, {":order": {"S": order}})

    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression=f"{PK} = :pk AND begins_with({SK}, :child)",
            ExpressionAttributeValues={
                ":pk": _item_pk(collection, parent),
                ":child": {"S": CHILD_PREFIX},
            },
            ConsistentRead=True,
        )
        return {
            item[SK]["S"].removeprefix(CHILD_PREFIX): self._load(item)
            for page in pages
            for item in page["Items"]
        }

    def claim(
        self, collection: str, key: str, owner: str, lease_seconds: float, now: float | None = None
    ) -> Claim:
        now = time.time() if now is None else now
        until = now + lease_seconds
        item = {
            **self._item(_item_pk(collection, key), ITEM_SK, claim_item(owner, until)),
            "claim": {"S": CLAIMED},
            "claim_owner": {"S": owner},
            "lease_until": {"N": f"{until:.6f}"},
        }
        # The rule of store.can_take, as one condition.
        taken = self._put_if(
            item,
            f"attribute_not_exists({PK}) OR "
            "(#claim = :claimed AND (#owner = :owner OR #lease < :now))",
            {":claimed": {"S": CLAIMED}, ":owner": {"S": owner}, ":now": {"N": f"{now:.6f}"}},
            claim="claim",
            owner="claim_owner",
            lease="lease_until",
        )
        return Claim.TAKEN if taken else refusal(self.get(collection, key))

    def finish_claim(self, collection: str, key: str, owner: str, result: dict[str, Any]) -> None:
        done = {**result, "claim": DONE, "owner": owner}
        item = {**self._item(_item_pk(collection, key), ITEM_SK, done), "claim": {"S": DONE}}
        self.client.put_item(TableName=self.table, Item=item)

    def release_claim(self, collection: str, key: str, owner: str) -> None:
        # Only the holder's own claim: one taken over since (its lease ended) stays.
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.delete_item(
                TableName=self.table,
                Key={PK: _item_pk(collection, key), SK: {"S": ITEM_SK}},
                ConditionExpression="#claim = :claimed AND #owner = :owner",
                ExpressionAttributeNames={"#claim": "claim", "#owner": "claim_owner"},
                ExpressionAttributeValues={":claimed": {"S": CLAIMED}, ":owner": {"S": owner}},
            )
