"""DynamoDB store for the AWS stages: one table, its keys and layout in _schema.py.

Conditions read top-level attributes: an item's `fields` are written as such, and `at` on
outcomes. JSON larger than an item holds goes to the payload store, and `body_ref` holds
its reference. The ledger index's keys go with the writes of the items it lists (an
event's first record, a failing outcome, a run's claim): `recent` and `failures` query it
and never scan.
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
import stripe_events._schema as schema
from stripe_events._ledger import LedgerEntry, Outcome
from stripe_events._payloads import PayloadStore, load_checked, reference
from stripe_events._stores.base import RUNS, Store, split_run_key
from stripe_events._stores.claims import CLAIMED
from stripe_events._stores.conditions import (
    Absent,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Missing,
    Value,
)
from stripe_events._stores.state import check_collection

PK, SK = schema.PARTITION_KEY, schema.SORT_KEY
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
# The top-level attribute of each field conditions read, where its name is not its own:
# OWNER is one of DynamoDB's reserved words.
ATTRIBUTES = {"owner": "claim_owner"}


def _event_pk(event_id: str) -> dict[str, str]:
    return {"S": f"{schema.EVENT_PREFIX}{event_id}"}


def _item_pk(collection: str, key: str) -> dict[str, str]:
    return {"S": f"{check_collection(collection)}#{key}"}


def _optional(item: dict[str, Any], name: str) -> str | None:
    return str(item[name]["S"]) if name in item else None


def _outcome(item: dict[str, Any]) -> Outcome:
    return Outcome(
        item["status"]["S"],
        int(item["attempts"]["N"]),
        item["at"]["S"],
        _optional(item, "error_type"),
        _optional(item, "error"),
    )


def _handlers(items: list[dict[str, Any]]) -> dict[str, Outcome]:
    return {
        item[SK]["S"].removeprefix(schema.HANDLER_PREFIX): _outcome(item)
        for item in items
        if item[SK]["S"].startswith(schema.HANDLER_PREFIX)
    }


def _seen_at(item: dict[str, Any]) -> str:
    return _optional(item, "received_at") or _optional(item, "published_at") or ""


def _names(names: dict[str, str]) -> dict[str, Any]:
    # DynamoDB refuses an empty map.
    return {"ExpressionAttributeNames": {f"#{n}": v for n, v in names.items()}} if names else {}


def _shard(kind: str, number: int) -> str:
    return f"{kind}#{number}"


def index_keys(kind: str, event_id: str, at: str) -> dict[str, Any]:
    """The ledger index's keys of an event item (SEEN_SHARDS, `at` when it was seen), a
    failing outcome's (FAILED_SHARDS, the same) or a run's claim (RUNNING_SHARDS, when
    its lease ends)."""
    # crc32 and not hash(), which each process seeds anew: every writer must pick the same
    # shard. The order sorts as (at, id) does, because "#" sorts below every character
    # that can follow a time in an ISO string.
    shard = _shard(kind, zlib.crc32(event_id.encode()) % schema.LEDGER_SHARDS)
    return {schema.INDEX_SHARD: {"S": shard}, schema.INDEX_ORDER: {"S": f"{at}#{event_id}"}}


def _iso(epoch_seconds: float) -> str:
    return datetime.fromtimestamp(epoch_seconds, UTC).isoformat(timespec="microseconds")


def event_key(event_id: str) -> dict[str, Any]:
    return {PK: _event_pk(event_id), SK: {"S": schema.EVENT_SK}}


def event_attributes(
    event_id: str, event_type: str, created: int, first: dict[str, str]
) -> dict[str, Any]:
    """An event item's attributes as its first record writes them, with its index keys.
    `first`: `published_at`, or `received_at` and `body`, or all three; the receipt, when
    there is one, orders the event."""
    seen_at = first.get("received_at") or first["published_at"]
    return {
        "type": {"S": event_type},
        "created": {"N": str(created)},
        **{name: {"S": value} for name, value in first.items()},
        **index_keys(schema.SEEN_SHARDS, event_id, seen_at),
    }


def outcome_item(
    event_id: str, handler: str, outcome: Outcome, seen_at: Callable[[], str]
) -> dict[str, Any]:
    """A handler's outcome item; a failing one with the index keys that `failures` finds
    it by. `seen_at` is asked only then: when its event was seen, or "" when the ledger
    has no such event (the outcome's own time stands in)."""
    item = {
        PK: _event_pk(event_id),
        SK: {"S": schema.HANDLER_PREFIX + handler},
        "status": {"S": outcome.status},
        "attempts": {"N": str(outcome.attempts)},
        "at": {"S": outcome.at},
    }
    if outcome.error_type is not None:
        item["error_type"] = {"S": outcome.error_type}
    if outcome.error is not None:
        item["error"] = {"S": outcome.error}
    if outcome.status == "error":
        item.update(index_keys(schema.FAILED_SHARDS, event_id, seen_at() or outcome.at))
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
        set_values = {f":f{i}": value for i, value in enumerate(fields.values())}
        return self._conditional(
            self.client.update_item,
            Key=key,
            UpdateExpression="SET " + ", ".join(f"#f{i} = :f{i}" for i in range(len(fields))),
            ConditionExpression=condition,
            ExpressionAttributeValues={**set_values, **(values or {})},
            **_names({**placeholders, **names}),
        )

    def _query(self, **request: Any) -> Iterator[dict[str, Any]]:
        """The items a query finds; each page is read once the one before it is consumed."""
        pages = self.client.get_paginator("query").paginate(TableName=self.table, **request)
        return (item for page in pages for item in page["Items"])

    def _query_event(self, event_id: str) -> list[dict[str, Any]]:
        # In sort key order, as a query returns them: the outcomes by handler.
        return list(
            self._query(
                KeyConditionExpression=f"{PK} = :pk",
                ExpressionAttributeValues={":pk": _event_pk(event_id)},
                ConsistentRead=True,
            )
        )

    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        return _handlers(self._query_event(event_id))

    def event(self, event_id: str) -> LedgerEntry | None:
        items = self._query_event(event_id)
        event = next((i for i in items if i[SK]["S"] == schema.EVENT_SK), None)
        if event is None:
            return None
        return LedgerEntry(
            event_id,
            event["type"]["S"],
            int(event["created"]["N"]),
            _optional(event, "published_at"),
            _optional(event, "received_at"),
            _optional(event, "body"),
            _handlers(items),
        )

    def _indexed(
        self, kind: str, shard: int, since: str, page: int | None, before: str = ""
    ) -> Iterator[tuple[str, str]]:
        """(order, partition key) of one shard of the ledger index, newest first, from
        `since` or up to `before`."""
        condition = "#shard = :shard"
        names = {"shard": schema.INDEX_SHARD}
        values = {":shard": {"S": _shard(kind, shard)}}
        # DynamoDB refuses an empty string in a key condition, and a name it does not use.
        op, bound = (">=", since) if since else ("<", before)
        if bound:
            condition += f" AND #order {op} :bound"
            names["order"] = schema.INDEX_ORDER
            values[":bound"] = {"S": bound}
        items = self._query(
            IndexName=schema.LEDGER_INDEX,
            KeyConditionExpression=condition,
            ExpressionAttributeValues=values,
            ScanIndexForward=False,
            **_names(names),
            **({} if page is None else {"Limit": page}),
        )
        return ((item[schema.INDEX_ORDER]["S"], item[PK]["S"]) for item in items)

    def recent(self, limit: int, since: str = "") -> list[LedgerEntry]:
        if limit <= 0:
            return []
        # Each shard holds about limit / LEDGER_SHARDS of the newest events: a page a little
        # larger answers most shards in one request, and no shard reads more than one page
        # past what is listed.
        page = limit // schema.LEDGER_SHARDS + 2
        shards = [
            self._indexed(schema.SEEN_SHARDS, n, since, page) for n in range(schema.LEDGER_SHARDS)
        ]
        newest = itertools.islice(heapq.merge(*shards, reverse=True), limit)
        ids = [pk.removeprefix(schema.EVENT_PREFIX) for _, pk in newest]
        entries = [e for e in map(self.event, ids) if e is not None]
        return sorted(entries, key=lambda e: (e.seen_at, e.id), reverse=True)

    def _failing_ids(self, since: str) -> set[str]:
        # Pages as large as DynamoDB makes them. An event with several failing handlers is
        # in the index once per handler. The index follows the table within a second or
        # so: a handler that has just succeeded may still be listed, but its entry, read
        # from the table, is not failing.
        return {
            pk.removeprefix(schema.EVENT_PREFIX)
            for n in range(schema.LEDGER_SHARDS)
            for _, pk in self._indexed(schema.FAILED_SHARDS, n, since, None)
        }

    def _expired_runs(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        # Found through their index keys, then read from the table (the index may lag).
        keys = [
            pk.removeprefix(f"{RUNS}#")
            for n in range(schema.LEDGER_SHARDS)
            for _, pk in self._indexed(schema.RUNNING_SHARDS, n, "", None, before=_iso(now))
        ]
        return [(key, claim) for key in keys if (claim := self.get(RUNS, key)) is not None]

    def _body(self, pk: str, item: dict[str, Any]) -> dict[str, Any]:
        """The attributes that hold `item`'s JSON: inline, or a reference to the payload store."""
        body = json.dumps(item, sort_keys=True)
        size = len(body.encode("utf-8"))
        if size <= MAX_INLINE_BODY_BYTES:
            return {"body": {"S": body}}
        why = f"item {pk} has {size} bytes, more than a DynamoDB item holds"
        ref = self._payload_store(why).save(pk, body, schema.STATE_FOLDER)
        return {"body_ref": {"S": json.dumps(ref, sort_keys=True)}}

    def _load(self, item: dict[str, Any]) -> dict[str, Any]:
        if "body_ref" in item:
            pk = item[PK]["S"]
            ref = json.loads(item["body_ref"]["S"])
            payloads = self._payload_store(f"item {pk} is kept in the payload store")
            return dict(json.loads(load_checked(ref, payloads, f"item {pk}")))
        return dict(json.loads(item["body"]["S"]))

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
        fields = fields or {}
        pk = _item_pk(collection, parent or key)
        stored = {
            PK: pk,
            SK: {"S": schema.ITEM_SK if parent is None else schema.CHILD_PREFIX + key},
            **self._body(pk["S"], item),
            **{ATTRIBUTES.get(name, name): _typed(value) for name, value in fields.items()},
            **self._kept(collection, key, fields),
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
            return index_keys(schema.RUNNING_SHARDS, split_run_key(key)[0], _iso(until))
        return {schema.TTL_ATTRIBUTE: {"N": str(int(until) + schema.CLAIM_KEPT_SECONDS)}}

    def _delete(self, collection: str, key: str, condition: Condition) -> bool:
        return self._conditional(
            self.client.delete_item,
            Key={PK: _item_pk(collection, key), SK: {"S": schema.ITEM_SK}},
            **_compiled(condition),
        )

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table,
            Key={PK: _item_pk(collection, key), SK: {"S": schema.ITEM_SK}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return None if item is None else self._load(item)

    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        pk, child = _item_pk(collection, parent), {"S": schema.CHILD_PREFIX}
        items = self._query(
            KeyConditionExpression=f"{PK} = :pk AND begins_with({SK}, :child)",
            ExpressionAttributeValues={":pk": pk, ":child": child},
            ConsistentRead=True,
        )
        return {item[SK]["S"].removeprefix(schema.CHILD_PREFIX): self._load(item) for item in items}


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
            return f"{name(c.field)} {c.op} {placeholder}"
        # DynamoDB refuses redundant parentheses: a group of one is its member, and only
        # a group inside another gets them.
        if len(c.conditions) == 1:
            return expression(c.conditions[0])
        joiner = " OR " if isinstance(c, AnyOf) else " AND "
        parts = [expression(part) for part in c.conditions]
        return joiner.join(
            f"({text})" if isinstance(part, AnyOf | AllOf) and len(part.conditions) > 1 else text
            for part, text in zip(c.conditions, parts, strict=True)
        )

    request: dict[str, Any] = {"ConditionExpression": expression(condition)}
    if names:
        request["ExpressionAttributeNames"] = names
    if values:
        request["ExpressionAttributeValues"] = values
    return request
