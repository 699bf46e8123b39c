"""Which implementation of each interface a stage uses: the AWS ones in every deployed
stage, the local wing's (stripe_events_local, never zipped) in stage `local`. The
interfaces' modules never import their implementations; this is where they are picked."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from stripe_events._bus import EventBridgePublisher, Publisher
from stripe_events._errors import SettingsError
from stripe_events._notifier import Notifier, SnsNotifier
from stripe_events._payloads import PayloadStore, S3PayloadStore
from stripe_events._settings import Settings
from stripe_events._stores import Store

if TYPE_CHECKING:
    from chalice.app import Chalice


def open_store(settings: Settings, payloads: Callable[[], PayloadStore] | None = None) -> Store:
    """The stage's store; `payloads` keeps what a DynamoDB item cannot hold (default: the
    stage's payload store)."""
    if settings.is_local:
        from stripe_events_local.sqlite import SqliteStore

        return SqliteStore(settings.state_dir / "stripe-events.sqlite3")
    if not settings.table:
        raise SettingsError(
            "STRIPE_EVENTS_TABLE is not set: name the DynamoDB table for the ledger in "
            ".chalice/config.json, or set STRIPE_EVENTS_BUS=local to use SQLite."
        )
    from stripe_events._stores.dynamodb import DynamoStore

    return DynamoStore(
        settings.table, settings.region, payloads or (lambda: open_payload_store(settings))
    )


def open_payload_store(settings: Settings) -> PayloadStore:
    if settings.is_local:
        from stripe_events_local.payloads import LocalPayloadStore

        return LocalPayloadStore(settings.state_dir / "bodies")
    if not settings.bucket:
        raise SettingsError(
            "STRIPE_EVENTS_BUCKET is not set: name the S3 bucket that keeps the bodies of "
            "events too large for EventBridge (over STRIPE_EVENTS_MAX_ENTRY_BYTES) in "
            ".chalice/config.json, or set STRIPE_EVENTS_BUS=local to keep them under "
            "STRIPE_EVENTS_STATE_DIR/bodies."
        )
    return S3PayloadStore(settings.bucket, settings.region)


def open_notifier(settings: Settings) -> Notifier:
    if settings.is_local:
        from stripe_events_local.outbox import OutboxNotifier

        return OutboxNotifier(settings.state_dir / "outbox.sqlite3")
    if not settings.topic_arn:
        raise SettingsError(
            "STRIPE_EVENTS_TOPIC_ARN is not set: name the SNS topic for notifications in "
            ".chalice/config.json, or set STRIPE_EVENTS_BUS=local to use the local outbox."
        )
    return SnsNotifier(settings.topic_arn, settings.region)


def open_publisher(settings: Settings, app: Callable[[], Chalice]) -> Publisher:
    """EventBridge; in stage `local`, the in-process bus to `app`'s own functions."""
    if settings.is_local:
        from stripe_events_local.bus import LocalBus

        return LocalBus(app, settings.region)
    return EventBridgePublisher(settings.region)
