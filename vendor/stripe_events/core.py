"""StripeEvents: what app.py wires together. Settings, the webhook, the store, dispatch."""

from __future__ import annotations

from collections.abc import Callable
from functools import cached_property
from typing import TYPE_CHECKING

from chalice.app import IAMAuthorizer

import stripe_events.observability as observability
import stripe_events.secrets as secrets
from stripe_events.bus import EventBridgePublisher, LocalBus, Publisher
from stripe_events.dispatch import Dispatcher
from stripe_events.notifier import Notifier, open_notifier
from stripe_events.payloads import PayloadStore, open_payload_store
from stripe_events.settings import Settings, SettingsError
from stripe_events.stores import Store
from stripe_events.webhook import webhook_blueprint

if TYPE_CHECKING:
    from chalice.app import CloudWatchEvent

    from stripe_events.router import Router


def open_store(settings: Settings, payloads: Callable[[], PayloadStore] | None = None) -> Store:
    """The stage's store; `payloads` keeps what a DynamoDB item cannot hold (default: the
    stage's payload store)."""
    if settings.is_local:
        from stripe_events.stores.sqlite import SqliteStore

        return SqliteStore(settings.state_dir / "stripe-events.sqlite3")
    if not settings.table:
        raise SettingsError(
            "STRIPE_EVENTS_TABLE is not set: name the DynamoDB table for the ledger in "
            ".chalice/config.json, or set STRIPE_EVENTS_BUS=local to use SQLite."
        )
    from stripe_events.stores.dynamodb import DynamoStore

    return DynamoStore(
        settings.table, settings.region, payloads or (lambda: open_payload_store(settings))
    )


class StripeEvents:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        observability.configure(settings)
        self.webhook = webhook_blueprint(
            settings,
            lambda: secrets.webhook_secrets(settings),
            lambda: self.publisher,
            lambda: self.store,
            lambda: self.payloads,
        )

    @classmethod
    def from_env(cls) -> StripeEvents:
        return cls(Settings.from_env().check_secrets())

    @property
    def authorizer(self) -> IAMAuthorizer | None:
        """Who may read the billing state: IAM-signed callers on AWS; anyone on loopback locally."""
        return None if self.settings.is_local else IAMAuthorizer()

    # Created on first use, not at import: a cold start pays only for what it uses.
    @cached_property
    def store(self) -> Store:
        return open_store(self.settings, lambda: self.payloads)

    @cached_property
    def publisher(self) -> Publisher:
        if self.settings.is_local:
            return LocalBus(lambda: self.webhook.current_app, self.settings.region)
        return EventBridgePublisher(self.settings.region)

    @cached_property
    def api_key(self) -> str:
        """The Stripe API key (from SSM in a deployed stage), or "" when there is none."""
        return secrets.api_key(self.settings)

    @cached_property
    def payloads(self) -> PayloadStore:
        """Where bodies too large for an EventBridge entry are kept (S3, or .state/ locally)."""
        return open_payload_store(self.settings)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        from stripe_events.idempotency import open_idempotency

        client = None
        if self.api_key:
            import stripe

            client = stripe.StripeClient(self.api_key)
        return Dispatcher(
            self.store,
            open_idempotency(self.settings),
            lambda: self.payloads,
            retention_days=self.settings.idempotency_days,
            stripe_client=client,
            stripe_live="_live_" in self.api_key,
            notifier=lambda: self.notifier,
        )

    @cached_property
    def notifier(self) -> Notifier:
        return open_notifier(self.settings)

    def dispatch(self, router: Router, event: CloudWatchEvent) -> dict[str, str]:
        """Run the router's handlers for one EventBridge event; return handler -> status."""
        try:
            outcomes = self.dispatcher.dispatch(router, event.detail, event.context)
        finally:
            observability.flush()
        return {name: outcome.status for name, outcome in outcomes.items()}
