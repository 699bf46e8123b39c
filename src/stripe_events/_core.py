"""StripeEvents: what app.py wires together. Settings, the webhook, the store, dispatch."""

from __future__ import annotations

import os
from functools import cached_property
from typing import TYPE_CHECKING

from chalice.app import IAMAuthorizer

import stripe_events._observability as observability
import stripe_events._secrets as secrets
from stripe_events._backends import open_notifier, open_payload_store, open_publisher, open_store
from stripe_events._bus import Publisher
from stripe_events._notifier import Notifier
from stripe_events._payloads import PayloadStore
from stripe_events._settings import Settings
from stripe_events._stores import Store
from stripe_events._webhook import webhook_blueprint

if TYPE_CHECKING:
    from chalice.app import CloudWatchEvent

    from stripe_events._dispatch import Dispatcher
    from stripe_events._router import Router


# The Lambda handler of the REST API, the webhook's function, as Lambda names it in
# _HANDLER; every other handler of app.py is an event function.
REST_API_HANDLER = "app.app"


def preload_for(handler: str) -> None:
    """In an event function, import what dispatch needs (stripe) while Lambda initialises
    the function, rather than on its first event; the webhook's never needs it."""
    if handler and handler != REST_API_HANDLER:
        import stripe_events._dispatch  # noqa: F401


class StripeEvents:
    """The runtime wired together: the webhook, the store, the publisher, dispatch.

    The store, publisher, payload store and notifier are made from the settings when
    first used, not at import, so that a cold start pays only for what it uses; a test
    may set any of them before (`events.publisher = RecordingPublisher()`).
    """

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
        preload_for(os.environ.get("_HANDLER", ""))
        return cls(Settings.from_env().check_stage())

    @property
    def authorizer(self) -> IAMAuthorizer | None:
        """Who may read the billing state: IAM-signed callers in every stage but `local`,
        whose server answers on loopback only."""
        return IAMAuthorizer() if self.settings.protected else None

    @cached_property
    def store(self) -> Store:
        return open_store(self.settings, lambda: self.payloads)

    @cached_property
    def publisher(self) -> Publisher:
        return open_publisher(self.settings, lambda: self.webhook.current_app)

    @cached_property
    def payloads(self) -> PayloadStore:
        return open_payload_store(self.settings)

    @cached_property
    def notifier(self) -> Notifier:
        return open_notifier(self.settings)

    @cached_property
    def api_key(self) -> str:
        """The Stripe API key (from SSM in a deployed stage), or "" when there is none."""
        return secrets.api_key(self.settings)

    @cached_property
    def dispatcher(self) -> Dispatcher:
        from stripe_events._dispatch import Dispatcher, StripeApi

        return Dispatcher(
            self.store,
            lambda: self.payloads,
            stripe_api=StripeApi(
                lambda: self.api_key,
                self.settings.api_base,
                self.settings.api_key_setting,
                self.settings.stripe_network_retries,
            ),
            notifier=lambda: self.notifier,
        )

    def dispatch(self, router: Router, event: CloudWatchEvent) -> dict[str, str]:
        """Run the router's handlers for one EventBridge event; return handler -> status."""
        try:
            outcomes = self.dispatcher.dispatch(router, event.detail, event.context)
        finally:
            observability.flush()
        return {name: outcome.status for name, outcome in outcomes.items()}
