"""DynamoDB store for the AWS stages: one table, keys `pk` and `sk`.

pk = "event#<id>"        sk = "event"             the event as a function received it
pk = "event#<id>"        sk = "handler#<name>"    one handler's outcome
pk = "<collection>#<key>" sk = "item"             a projection item (JSON in `body`)
"""

from __future__ import annotations

import contextlib
import json
from typing import Any

import boto3

from chalicelib.stripe_events.ledger import LedgerEntry, Outcome
from chalicelib.stripe_events.store import Store, check_collection

EVENT_SK = "event"
HANDLER_PREFIX = "handler#"


def _event_pk(event_id: str) -> dict[str, str]:
    return {"S": f"event#{event_id}"}


def _item_pk(collection: str, key: str) -> dict[str, str]:
    return {"S": f"{check_collection(collection)}#{key}"}


def _outcome(item: dict[str, Any]) -> Outcome:
    error = item.get("error", {}).get("S")
    return Outcome(item["status"]["S"], int(item["attempts"]["N"]), item["at"]["S"], error)


class DynamoStore(Store):
    def __init__(self, table: str, region: str) -> None:
        self.table = table
        # boto3 honours AWS_ENDPOINT_URL, which is how tests point it at a moto server.
        self.client = boto3.client("dynamodb", region_name=region)

    def record_received(
        self, event_id: str, event_type: str, created: int, received_at: str
    ) -> None:
        # Seen before: the first receipt is kept.
        with contextlib.suppress(self.client.exceptions.ConditionalCheckFailedException):
            self.client.put_item(
                TableName=self.table,
                Item={
                    "pk": _event_pk(event_id),
                    "sk": {"S": EVENT_SK},
                    "type": {"S": event_type},
                    "created": {"N": str(created)},
                    "received_at": {"S": received_at},
                },
                ConditionExpression="attribute_not_exists(pk)",
            )

    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        item = {
            "pk": _event_pk(event_id),
            "sk": {"S": HANDLER_PREFIX + handler},
            "status": {"S": outcome.status},
            "attempts": {"N": str(outcome.attempts)},
            "at": {"S": outcome.at},
        }
        if outcome.error is not None:
            item["error"] = {"S": outcome.error}
        self.client.put_item(TableName=self.table, Item=item)

    def _query_event(self, event_id: str) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("query")
        pages = paginator.paginate(
            TableName=self.table,
            KeyConditionExpression="pk = :pk",
            ExpressionAttributeValues={":pk": _event_pk(event_id)},
            ConsistentRead=True,
        )
        return [item for page in pages for item in page["Items"]]

    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        return {
            item["sk"]["S"].removeprefix(HANDLER_PREFIX): _outcome(item)
            for item in self._query_event(event_id)
            if item["sk"]["S"].startswith(HANDLER_PREFIX)
        }

    def recent(self, limit: int) -> list[LedgerEntry]:
        # A scan: fine for the CLI on a modest table. A GSI on received_at is the next step.
        paginator = self.client.get_paginator("scan")
        pages = paginator.paginate(
            TableName=self.table,
            FilterExpression="sk = :sk",
            ExpressionAttributeValues={":sk": {"S": EVENT_SK}},
        )
        items = [item for page in pages for item in page["Items"]]
        items.sort(key=lambda i: (i["received_at"]["S"], i["pk"]["S"]), reverse=True)
        entries = []
        for item in items[: max(limit, 0)]:
            event_id = item["pk"]["S"].removeprefix("event#")
            entries.append(
                LedgerEntry(
                    event_id,
                    item["type"]["S"],
                    int(item["created"]["N"]),
                    item["received_at"]["S"],
                    self.outcomes(event_id),
                )
            )
        return entries

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table,
            Key={"pk": _item_pk(collection, key), "sk": {"S": "item"}},
            ConsistentRead=True,
        )
        item = response.get("Item")
        return None if item is None else dict(json.loads(item["body"]["S"]))

    def put(self, collection: str, key: str, item: dict[str, Any]) -> None:
        self.client.put_item(
            TableName=self.table,
            Item={
                "pk": _item_pk(collection, key),
                "sk": {"S": "item"},
                "body": {"S": json.dumps(item, sort_keys=True)},
            },
        )


def create_table(table: str, region: str) -> None:
    """Create the table (on-demand). Used by tests; deployments create it as infrastructure."""
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(
        TableName=table,
        KeySchema=[
            {"AttributeName": "pk", "KeyType": "HASH"},
            {"AttributeName": "sk", "KeyType": "RANGE"},
        ],
        AttributeDefinitions=[
            {"AttributeName": "pk", "AttributeType": "S"},
            {"AttributeName": "sk", "AttributeType": "S"},
        ],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=table)
