"""StripeEvents: what app.py wires together. Settings, the webhook, the store, dispatch."""

from __future__ import annotations

import logging
from functools import cached_property
from typing import TYPE_CHECKING

from chalicelib.stripe_events.bus import EventBridgePublisher, LocalBus, Publisher
from chalicelib.stripe_events.dispatch import dispatch
from chalicelib.stripe_events.settings import Settings
from chalicelib.stripe_events.store import Store, open_store
from chalicelib.stripe_events.webhook import webhook_blueprint

if TYPE_CHECKING:
    from chalice.app import CloudWatchEvent

    from chalicelib.stripe_events.ledger import Outcome
    from chalicelib.stripe_events.router import Router

logging.getLogger("stripe_events").setLevel(logging.INFO)


class StripeEvents:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.webhook = webhook_blueprint(settings, lambda: self.publisher)

    @classmethod
    def from_env(cls) -> StripeEvents:
        return cls(Settings.from_env())

    # Created on first use, not at import: a cold start pays only for what it uses.
    @cached_property
    def store(self) -> Store:
        return open_store(self.settings)

    @cached_property
    def publisher(self) -> Publisher:
        if self.settings.is_local:
            return LocalBus(lambda: self.webhook.current_app, self.settings.region)
        return EventBridgePublisher(self.settings.region)

    def dispatch(self, router: Router, event: CloudWatchEvent) -> dict[str, str]:
        """Run the router's handlers for one EventBridge event; return handler -> status."""
        outcomes: dict[str, Outcome] = dispatch(router, event.detail, self.store)
        return {name: outcome.status for name, outcome in outcomes.items()}
