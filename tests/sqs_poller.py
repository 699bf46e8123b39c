"""EventBridge rules on the moto server that deliver to SQS, and reading those queues.

In moto a rule that targets a Lambda function crashes PutEvents, so every rule here
targets a queue and the tests invoke the matching function themselves.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import boto3

from tests.conftest import REGION

# moto's EventBridge -> SQS messages lack `account`, which Chalice's CloudWatchEvent reads.
ACCOUNT = "000000000000"
PUT_EVENTS_BATCH = 10
# 10 messages per receive: enough rounds for a few hundred messages in one queue.
MAX_RECEIVES = 200


def clients() -> tuple[Any, Any]:
    """EventBridge and SQS clients; call only once the moto environment is in place."""
    return boto3.client("events", region_name=REGION), boto3.client("sqs", region_name=REGION)


def unique(name: str) -> str:
    """A name no other test in the moto session uses: every file shares one server."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


@dataclass(frozen=True)
class Route:
    """A rule on the default bus and the queue it delivers to."""

    rule: str
    queue_url: str
    pattern: dict[str, Any]


def create_route(events: Any, sqs: Any, rule: str, pattern: dict[str, Any]) -> Route:
    # moto checks no queue policy, so none is attached; AWS would need one for events.amazonaws.com.
    queue_url: str = sqs.create_queue(QueueName=rule)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    events.put_rule(Name=rule, EventPattern=json.dumps(pattern), State="ENABLED")
    events.put_targets(
        Rule=rule, Targets=[{"Id": "queue", "Arn": attributes["Attributes"]["QueueArn"]}]
    )
    return Route(rule, queue_url, pattern)


def delete_route(events: Any, sqs: Any, route: Route) -> None:
    # Left behind, the rule would also catch the events that other test files put.
    events.remove_targets(Rule=route.rule, Ids=["queue"])
    events.delete_rule(Name=route.rule)
    sqs.delete_queue(QueueUrl=route.queue_url)


def put_entries(events: Any, entries: Iterable[dict[str, Any]]) -> int:
    """PutEvents in batches of 10 (its limit); fail if any entry is refused. Returns the count."""
    batch: list[dict[str, Any]] = []
    count = 0

    def flush() -> None:
        response = events.put_events(Entries=batch)
        assert response["FailedEntryCount"] == 0, response["Entries"]
        batch.clear()

    for entry in entries:
        batch.append(entry)
        count += 1
        if len(batch) == PUT_EVENTS_BATCH:
            flush()
    if batch:
        flush()
    return count


def drain(sqs: Any, queue_url: str, expect: int = 0, timeout: float = 2.0) -> list[dict[str, Any]]:
    """Receive and delete every message in the queue; return the EventBridge events in them.

    moto delivers to SQS inside the PutEvents call, so the messages are usually there
    already; `expect` only makes it wait (up to `timeout`) for stragglers. It always
    ends with an empty receive, so extra messages are returned too, not left behind.
    """
    messages: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    for _ in range(MAX_RECEIVES):
        waiting = len(messages) < expect and time.monotonic() < deadline
        response = sqs.receive_message(
            QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1 if waiting else 0
        )
        batch = response.get("Messages", [])
        if not batch:
            if not waiting:
                return messages
            continue
        sqs.delete_message_batch(
            QueueUrl=queue_url,
            Entries=[
                {"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)
            ],
        )
        messages.extend(json.loads(m["Body"]) for m in batch)
    raise AssertionError(f"{queue_url} still had messages after {MAX_RECEIVES} receives")


def lambda_payload(message: dict[str, Any]) -> dict[str, Any]:
    """The event as EventBridge would invoke a Lambda function with it."""
    return {"account": ACCOUNT, **message}
