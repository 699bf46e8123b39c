"""Notifications: SNS with filterable attributes on moto, the local outbox, once per event."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import boto3
import pytest
from click.testing import CliRunner

from stripe_events._backends import open_notifier
from stripe_events._errors import SettingsError
from stripe_events._notifier import Notification, SnsNotifier
from stripe_events._settings import Settings
from stripe_events_ops.cli import main
from stripe_events_testing import module_context, outbox
from tests.conftest import REGION
from tests.sqs_poller import unique


def test_sns_messages_carry_the_kind_and_customer_as_attributes(moto_url: str) -> None:
    sns, sqs = boto3.client("sns", region_name=REGION), boto3.client("sqs", region_name=REGION)
    topic = sns.create_topic(Name=unique("notices"))["TopicArn"]
    queue = sqs.create_queue(QueueName=unique("dunning"))["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue, AttributeNames=["QueueArn"])
    # A subscriber that only wants dunning notices, as a filter policy says it.
    sns.subscribe(
        TopicArn=topic,
        Protocol="sqs",
        Endpoint=arn["Attributes"]["QueueArn"],
        Attributes={
            "FilterPolicy": json.dumps({"type": ["dunning"]}),
            "RawMessageDelivery": "true",
        },
    )
    notifier = open_notifier(Settings(stage="dev", topic_arn=topic, region=REGION))
    assert isinstance(notifier, SnsNotifier)
    message = {"invoice": "in_1", "hosted_invoice_url": "https://invoice.stripe.com/i/x"}
    notifier.send(
        Notification("evt_1:invoices.dun:dunning", "dunning", "Payment failed", message, "cus_1")
    )
    notifier.send(
        Notification("evt_2:disputes.alert:dispute_created", "dispute_created", "Dispute", {})
    )

    received = sqs.receive_message(
        QueueUrl=queue, MaxNumberOfMessages=10, MessageAttributeNames=["All"], WaitTimeSeconds=1
    )["Messages"]
    [only] = received
    assert json.loads(only["Body"])["message"] == message
    attributes = {k: v["StringValue"] for k, v in only["MessageAttributes"].items()}
    assert attributes == {"type": "dunning", "customer": "cus_1"}


def test_a_stage_without_a_topic_says_what_to_set() -> None:
    with pytest.raises(SettingsError, match="STRIPE_EVENTS_TOPIC_ARN"):
        open_notifier(Settings(stage="dev"))


def test_notify_sends_once_per_event_and_handler(tmp_path: Path) -> None:
    ctx = replace(module_context(tmp_path, "invoices.dun"), event_id="evt_1")
    assert ctx.notify("dunning", "Payment failed", {"invoice": "in_1"}, "cus_1")
    assert not ctx.notify("dunning", "Payment failed", {"invoice": "in_1"}, "cus_1")  # retried
    assert replace(ctx, event_id="evt_2").notify("dunning", "Payment failed", {}, "cus_1")
    assert [(n.id, n.kind, n.customer) for n in outbox(ctx)] == [
        ("evt_2:invoices.dun:dunning", "dunning", "cus_1"),
        ("evt_1:invoices.dun:dunning", "dunning", "cus_1"),
    ]


def test_the_outbox_command_lists_local_notifications(tmp_path: Path) -> None:
    ctx = replace(module_context(tmp_path, "payouts.alert"), event_id="evt_9")
    ctx.notify("payout_failed", "A payout failed", {"payout": "po_1"})
    runner = CliRunner(env={"STRIPE_EVENTS_STATE_DIR": str(tmp_path)})
    text = runner.invoke(main, ["outbox"])
    assert text.exit_code == 0, text.output
    assert "payout_failed  A payout failed" in text.output
    [row] = json.loads(runner.invoke(main, ["outbox", "--json"]).output)
    assert (row["id"], row["message"]) == ("evt_9:payouts.alert:payout_failed", {"payout": "po_1"})
    empty = CliRunner(env={"STRIPE_EVENTS_STATE_DIR": str(tmp_path / "none")})
    assert "empty" in empty.invoke(main, ["outbox"]).output
