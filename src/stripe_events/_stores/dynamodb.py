"""DynamoDB store for the AWS stages: one table, its keys and layout in _schema.py.

Conditions need top-level attributes: an item's `fields` are written as such (`order_key`
on items written by `put_if_newer`; `claim`, `claim_owner` and `lease_until` on claims),
and `at` on outcomes. An item's JSON
larger than DynamoDB takes (400 KB per item) goes to the payload store, and `body_ref`
holds its reference; an event's body in the ledger becomes the reference the webhook
publishes for oversized events.

The ledger index's keys (schema.py) go with the writes of the items it lists: an event's
with its first publication or its first receipt, a failing outcome's with the outcome.
`recent` and `failures` query that index and never scan; `index_earlier_items` gives its
keys, once, to what versions before it wrote.
"""

from __future__ import annotations

import heapq
import itertools
import json
import zlib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from botocore.config import Config

import stripe_events._aws as aws
from stripe_events._ledger import LedgerEntry, Outcome
from stripe_events._payloads import (
    PayloadStore,
    load_checked,
    reference,
)
from stripe_events._schema import (
    CHILD_PREFIX,
    CLAIM_KEPT_SECONDS,
    EVENT_PREFIX,
    EVENT_SK,
    FAILED_SHARDS,
    HANDLER_PREFIX,
    INDEX_ORDER,
    INDEX_SHARD,
    ITEM_SK,
    LEDGER_INDEX,
    LEDGER_SHARDS,
    RUNNING_SHARDS,
    SEEN_SHARDS,
    STATE_FOLDER,
    TTL_ATTRIBUTE,
)
from stripe_events._schema import (
    PARTITION_KEY as PK,
)
from stripe_events._schema import (
    SORT_KEY as SK,
)
from stripe_events._stores.base import RUNS, Store, split_run_key
from stripe_events._stores.claims import CLAIMED
from stripe_events._stores.conditions import (
    Absent,
    AnyOf,
    Compare,
    Condition,
    Missing,
    Value,
)
from stripe_events._stores.state import check_collection

# boto3's defaults wait 60 s to connect and to read; a hung table would hold the webhook
# past Stripe's 10 s. Fail soon instead: the caller answers 503, or Lambda retries.
FAIL_FAST = Config(
    connect_timeout=1, read_timeout=3, retries={"mode": "standard", "max_attempts": 3}
)

# DynamoDB refuses items over 400 KB (names and values); keys and the other attributes
# take well under the remaining 50 KB.
MAX_INLINE_BODY_BYTES = 350_000
NOT_PUBLISHED = "attribute_not_exists(published_at)"
NOT_RECEIVED = "attribute_not_exists(received_at)"


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


def _names(names: dict[str, str]) -> dict[str, Any]:
    """ExpressionAttributeNames for `#name` placeholders; none at all when there are none
    (DynamoDB refuses an empty map)."""
    return {"ExpressionAttributeNames": {f"#{n}": v for n, v in names.items()}} if names else {}


def _shard(kind: str, number: int) -> str:
    return f"{kind}#{number}"


def index_keys(kind: str, event_id: str, at: str) -> dict[str, Any]:
    """The ledger index's keys of an event item (SEEN_SHARDS, `at` when it was seen), a
    failing outcome's (FAILED_SHARDS, the same) or a run's claim (RUNNING_SHARDS, when
    its lease ends).

    crc32 and not hash(), which each process seeds anew: every writer must pick the same
    shard. The order sorts as (at, id) does, because "#" sorts below every character
    that can follow a time in an ISO string.
    """
    shard = _shard(kind, zlib.crc32(event_id.encode()) % LEDGER_SHARDS)
    return {INDEX_SHARD: {"S": shard}, INDEX_ORDER: {"S": f"{at}#{event_id}"}}


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="microseconds")


def event_key(event_id: str) -> dict[str, Any]:
    return {PK: _event_pk(event_id), SK: {"S": EVENT_SK}}


def event_attributes(
    event_id: str, event_type: str, created: int, first: dict[str, str]
) -> dict[str, Any]:
    """An event item's attributes as its first record writes them, its index keys included.

    `first`: `published_at`, or `received_at` and `body`, or all three; the receipt, when
    there is one, orders the event.
    """
    seen_at = first.get("received_at") or first["published_at"]
    return {
        "type": {"S": event_type},
        "created": {"N": str(created)},
        **{name: {"S": value} for name, value in first.items()},
        **index_keys(SEEN_SHARDS, event_id, seen_at),
    }


def outcome_item(
    event_id: str, handler: str, outcome: Outcome, seen_at: Callable[[], str]
) -> dict[str, Any]:
    """A handler's outcome item; a failing one with the index keys that `failures` finds it by.

    `seen_at` is asked only for a failure: when its event was seen, or "" when the ledger
    has no such event (then the outcome's own time stands in).
    """
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
    if outcome.status == "error":
        item.update(index_keys(FAILED_SHARDS, event_id, seen_at() or outcome.at))
    return item


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

    def record_published(self, event_id: str, event_type: str, created: int, at: str) -> None:
        first = event_attributes(event_id, event_type, created, {"published_at": at})
        if not self._update_if(event_key(event_id), first, f"{NOT_PUBLISHED} AND {NOT_RECEIVED}"):
            # Received already: the receipt orders the event, the publication only adds its
            # time. (Published already: the first publication stays, and this changes nothing.)
            self._update_if(event_key(event_id), {"published_at": {"S": at}}, NOT_PUBLISHED)

    def record_received(
        self, event_id: str, event_type: str, created: int, at: str, body: str
    ) -> None:
        size = len(body.encode("utf-8"))
        if size > MAX_INLINE_BODY_BYTES:
            # Kept as the reference an oversized event is published as: replay republishes
            # it, and the dispatcher restores the body, as for the webhook's own.
            why = f"the body of event {event_id} has {size} bytes, more than an item holds"
            body = reference(body, self._payload_store(why))
        # The first receipt wins, and from then on orders the event in the index.
        first = event_attributes(event_id, event_type, created, {"received_at": at, "body": body})
        self._update_if(event_key(event_id), first, NOT_RECEIVED)

    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        item = outcome_item(event_id, handler, outcome, lambda: self._seen_at_of(event_id))
        self._put_if(item, "attribute_not_exists(#at) OR #at <= :at", {":at": item["at"]}, at="at")

    def _seen_at_of(self, event_id: str) -> str:
        response = self.client.get_item(
            TableName=self.table,
            Key=event_key(event_id),
            ConsistentRead=True,
            ProjectionExpression="received_at, published_at",
        )
        return _seen_at(response.get("Item", {}))

    def _conditional(self, write: Callable[..., Any], **request: Any) -> bool:
        """One conditional write; False when its condition does not hold."""
        try:
            write(TableName=self.table, **request)
        except self.client.exceptions.ConditionalCheckFailedException:
            return False
        return True

    def _put_if(
        self, item: dict[str, Any], condition: str, values: dict[str, Any], **names: str
    ) -> bool:
        """PutItem under `condition`; False when the condition does not hold."""
        return self._conditional(
            self.client.put_item,
            Item=item,
            ConditionExpression=condition,
            ExpressionAttributeValues=values,
            **_names(names),
        )

    def _update_if(
        self,
        key: dict[str, Any],
        fields: dict[str, Any],
        condition: str,
        values: dict[str, Any] | None = None,
        **names: str,
    ) -> bool:
        """SET `fields` on the item at `key` under `condition`; False when it does not hold."""
        placeholders = {f"f{i}": name for i, name in enumerate(fields)}
        return self._conditional(
            self.client.update_item,
            Key=key,
            UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
            ConditionExpression=condition,
            ExpressionAttributeValues={
                **{f":f{i}": value for i, value in enumerate(fields.values())},
                **(values or {}),
            },
            **_names({**placeholders, **names}),
        )

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

    def _scan(
        self, condition: str, values: dict[str, Any], **names: str
    ) -> Iterator[dict[str, Any]]:
        # Only the one-off index_earlier_items reads the whole table.
        paginator = self.client.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self.table,
            FilterExpression=condition,
            ExpressionAttributeValues=values,
            **_names(names),
        )
        return (item for page in pages for item in page["Items"])

    def _indexed(
        self, kind: str, shard: int, since: str, page: int | None, before: str = ""
    ) -> Iterator[tuple[str, str]]:
        """(order, partition key) of one shard of the ledger index, newest first, from
        `since` or up to `before`; each page is read only when the one before it has been
        consumed."""
        condition = "#shard = :shard"
        names = {"shard": INDEX_SHARD}
        values = {":shard": {"S": _shard(kind, shard)}}
        if since:  # DynamoDB refuses an empty string in a key condition
            condition += " AND #order >= :since"
            names["order"] = INDEX_ORDER
            values[":since"] = {"S": since}
        elif before:
            condition += " AND #order < :before"
            names["order"] = INDEX_ORDER
            values[":before"] = {"S": before}
        pages = self.client.get_paginator("query").paginate(
            TableName=self.table,
            IndexName=LEDGER_INDEX,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            **_names(names),
            **({} if page is None else {"Limit": page}),
        )
        for response in pages:
            for item in response["Items"]:
                yield item[INDEX_ORDER]["S"], item[PK]["S"]

    def _entries(self, event_ids: list[str]) -> list[LedgerEntry]:
        entries = [e for e in map(self.event, event_ids) if e is not None]
        return sorted(entries, key=lambda e: (e.seen_at, e.id), reverse=True)

    def recent(self, limit: int, since: str = "") -> list[LedgerEntry]:
        if limit <= 0:
            return []
        # Each shard holds about limit / LEDGER_SHARDS of the newest events: a page a little
        # larger answers most shards in one request, and no shard reads more than one page
        # past what is listed.
        page = limit // LEDGER_SHARDS + 2
        shards = [self._indexed(SEEN_SHARDS, n, since, page) for n in range(LEDGER_SHARDS)]
        newest = heapq.merge(*shards, reverse=True)
        return self._entries(
            [pk.removeprefix(EVENT_PREFIX) for _, pk in itertools.islice(newest, limit)]
        )

    def _failing_ids(self, since: str) -> set[str]:
        # Pages as large as DynamoDB makes them. An event with several failing handlers is
        # in the index once per handler. The index follows the table within a second or
        # so: a handler that has just succeeded may still be listed, but its entry, read
        # from the table, is not failing.
        return {
            pk.removeprefix(EVENT_PREFIX)
            for n in range(LEDGER_SHARDS)
            for _, pk in self._indexed(FAILED_SHARDS, n, since, None)
        }

    def _expired_runs(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        # Found through their index keys, then read from the table (the index may lag).
        keys = [
            pk.removeprefix(f"{RUNS}#")
            for n in range(LEDGER_SHARDS)
            for _, pk in self._indexed(RUNNING_SHARDS, n, "", None, before=_iso(now))
        ]
        return [(key, claim) for key in keys if (claim := self.get(RUNS, key)) is not None]

    def index_earlier_items(self) -> Iterator[bool]:
        """Give the ledger index's keys to the items that versions before it wrote: for
        each item found without them, whether it was indexed now.

        Run it once, after the version that writes them is deployed (`stripe-events infra
        index-ledger`): it scans the whole table. Each write is conditional on what the scan
        saw, so an item that a function changed meanwhile keeps what the function wrote.
        """
        items = self._scan(
            "attribute_not_exists(#order) AND "
            "(#sk = :event OR (begins_with(#sk, :handler) AND #status = :error))",
            {
                ":event": {"S": EVENT_SK},
                ":handler": {"S": HANDLER_PREFIX},
                ":error": {"S": "error"},
            },
            order=INDEX_ORDER,
            sk=SK,
            status="status",
        )
        return (self._index_earlier(item) for item in items)

    def _index_earlier(self, item: dict[str, Any]) -> bool:
        event_id = item[PK]["S"].removeprefix(EVENT_PREFIX)
        unindexed = "attribute_not_exists(#order)"
        if item[SK]["S"] != EVENT_SK:
            handler = item[SK]["S"].removeprefix(HANDLER_PREFIX)
            indexed = outcome_item(
                event_id, handler, _outcome(item), lambda: self._seen_at_of(event_id)
            )
            # Unless the outcome has been recorded again since.
            return self._put_if(
                indexed,
                f"{unindexed} AND #status = :error AND #at = :at",
                {":error": item["status"], ":at": item["at"]},
                order=INDEX_ORDER,
                status="status",
                at="at",
            )
        # The time the scan saw orders the event, unless a receipt has come since.
        received = item.get("received_at")
        return self._update_if(
            {PK: item[PK], SK: item[SK]},
            index_keys(SEEN_SHARDS, event_id, _seen_at(item)),
            f"{unindexed} AND " + ("received_at = :received" if received else NOT_RECEIVED),
            {":received": received} if received else {},
            order=INDEX_ORDER,
        )

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

    def _write(
        self,
        collection: str,
        key: str,
        item: dict[str, Any],
        *,
        parent: str | None = None,
        fields: Mapping[str, Value] | None = None,
        condition: Condition | None = None,
    ) -> bool:
        pk = _item_pk(collection, parent or key)
        stored = {
            **self._item(pk, ITEM_SK if parent is None else CHILD_PREFIX + key, item),
            **{ATTRIBUTES.get(name, name): _typed(value) for name, value in (fields or {}).items()},
            **self._kept(collection, key, fields or {}),
        }
        if condition is None:
            self.client.put_item(TableName=self.table, Item=stored)
            return True
        return self._conditional(self.client.put_item, Item=stored, **_compiled(condition))

    @staticmethod
    def _kept(collection: str, key: str, fields: Mapping[str, Value]) -> dict[str, Any]:
        """How long a claim in progress is kept: a run's, until it is released (the index
        lists it meanwhile, for `failures`); any other, a day past its lease (TTL)."""
        if fields.get("claim") != CLAIMED:
            return {}
        until = float(fields["lease_until"])
        if collection == RUNS:
            return index_keys(RUNNING_SHARDS, split_run_key(key)[0], _iso(until))
        return {TTL_ATTRIBUTE: {"N": str(int(until) + CLAIM_KEPT_SECONDS)}}

    def _delete(self, collection: str, key: str, condition: Condition) -> bool:
        return self._conditional(
            self.client.delete_item,
            Key={PK: _item_pk(collection, key), SK: {"S": ITEM_SK}},
            **_compiled(condition),
        )

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table,
            Key={PK: _item_pk(collection, key), SK: {"S": ITEM_SK}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return None if item is None else self._load(item)

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


# The top-level attribute of each field conditions read, where its name is not its own:
# OWNER is one of DynamoDB's reserved words.
ATTRIBUTES = {"owner": "claim_owner"}
OPERATORS = {"=": "=", "<": "<", "<=": "<="}


def _typed(value: Value) -> dict[str, str]:
    return {"S": value} if isinstance(value, str) else {"N": f"{value:.6f}"}


def _compiled(condition: Condition) -> dict[str, Any]:
    """`condition` as a ConditionExpression, with its names and values."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}

    def name(field: str) -> str:
        placeholder = f"#n{len(names)}"
        names[placeholder] = ATTRIBUTES.get(field, field)
        return placeholder

    def expression(c: Condition) -> str:
        if isinstance(c, Absent):
            return f"attribute_not_exists({PK})"
        if isinstance(c, Missing):
            return f"attribute_not_exists({name(c.field)})"
        if isinstance(c, Compare):
            placeholder = f":v{len(values)}"
            values[placeholder] = _typed(c.value)
            return f"{name(c.field)} {OPERATORS[c.op]} {placeholder}"
        joiner = " OR " if isinstance(c, AnyOf) else " AND "
        return "(" + joiner.join(expression(part) for part in c.conditions) + ")"

    request: dict[str, Any] = {"ConditionExpression": expression(condition)}
    if names:
        request["ExpressionAttributeNames"] = names
    if values:
        request["ExpressionAttributeValues"] = values
    return request
