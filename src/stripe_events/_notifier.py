"""Notifications: SNS on AWS, with the kind and the customer as message attributes
that subscribers filter on; stage `local` keeps them in an outbox (stripe_events_local)."""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from dataclasses import asdict, dataclass, field
from typing import Any

from stripe_events._ledger import utc_now


@dataclass(frozen=True)
class Notification:
    id: str  # "<event id>:<handler>:<kind>": the same on every retry, so it is sent once
    kind: str  # e.g. "dunning", "dispute_created"; subscribers filter on it
    subject: str
    message: dict[str, Any]
    customer: str | None = None
    at: str = field(default_factory=utc_now)


class Notifier(ABC):
    @abstractmethod
    def send(self, notification: Notification) -> None:
        """Deliver the notification (at least once; the caller keeps it from repeating)."""


class SnsNotifier(Notifier):
    def __init__(self, topic_arn: str, region: str) -> None:
        import stripe_events._aws as aws

        self.topic_arn = topic_arn
        self.client = aws.client("sns", region)

    def send(self, notification: Notification) -> None:
        attributes = {"type": {"DataType": "String", "StringValue": notification.kind}}
        if notification.customer:
            attributes["customer"] = {"DataType": "String", "StringValue": notification.customer}
        self.client.publish(
            TopicArn=self.topic_arn,
            Subject=notification.subject[:100],  # SNS's limit for e-mail subjects
            Message=json.dumps({**asdict(notification)}, sort_keys=True),
            MessageAttributes=attributes,
        )
