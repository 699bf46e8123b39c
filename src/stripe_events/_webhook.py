"""POST /stripe/webhook: verify, check, publish; 2xx only once EventBridge has the event."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from chalice.app import Blueprint, Request, Response

import stripe_events._observability as observability
from stripe_events._bus import publish_event
from stripe_events._envelope import Entry, EventHeader, decode_body, parse_event, to_entry
from stripe_events._errors import PublishFailed, Rejected, SettingsError
from stripe_events._signature import verify

if TYPE_CHECKING:
    from stripe_events._bus import Publisher
    from stripe_events._payloads import PayloadStore
    from stripe_events._settings import Settings
    from stripe_events._stores import Store

log = logging.getLogger("stripe_events.webhook")

PATH = "/stripe/webhook"
# Stripe sends application/json. Any content type is let in so that a wrong one gets our
# own JSON error (from the signature check) rather than Chalice's bare 415.
CONTENT_TYPES = ["*/*"]


def ingest(
    body: bytes,
    signature_header: str | None,
    settings: Settings,
    now: float,
    secrets: Sequence[str] | None = None,
) -> tuple[EventHeader, Entry]:
    """The webhook's own work: verify, check, build the entry. Raises Rejected on bad input."""
    if len(body) > settings.max_body_bytes:
        raise Rejected(
            413,
            "payload_too_large",
            f"The body has {len(body)} bytes; at most {settings.max_body_bytes} are accepted "
            "(STRIPE_WEBHOOK_MAX_BYTES).",
        )
    if secrets is None:
        secrets = settings.webhook_secrets
    verify(
        body,
        signature_header,
        secrets,
        settings.tolerance_seconds,
        now,
        settings.webhook_secret_setting,
    )
    text = decode_body(body)
    header = parse_event(text, settings.livemode)
    return header, to_entry(text, header, settings)


def _as_bytes(raw: str | bytes | None) -> bytes:
    # Chalice gives bytes; the str case only exists in its type hints.
    return raw.encode() if isinstance(raw, str) else raw or b""


NOT_CONFIGURED = "The webhook is not fully configured; its logs say what is missing."
PUBLISH_FAILED = "The event could not be published now; Stripe will retry."


def _error(status: int, code: str, message: str) -> Response:
    return _json(status, {"error": code, "message": message})


def _json(status: int, body: dict[str, Any]) -> Response:
    return Response(body=body, status_code=status, headers={"Content-Type": "application/json"})


def already_published(store: Callable[[], Store], event_id: str) -> bool:
    """True when the ledger says the event is on the bus: Stripe delivered it again."""
    try:
        entry = store().event(event_id)
    except Exception:
        # The ledger is a shortcut here, not a gate: publish, the handlers are idempotent.
        log.exception("could not read the ledger for %s; publishing", event_id)
        return False
    return entry is not None and entry.published_at is not None


def webhook_blueprint(
    settings: Settings,
    secrets: Callable[[], tuple[str, ...]],
    publisher: Callable[[], Publisher],
    store: Callable[[], Store],
    payloads: Callable[[], PayloadStore],
) -> Blueprint:
    """The blueprint; the callables give the publisher and stores when they are first needed."""
    blueprint = Blueprint(__name__)

    @blueprint.route(PATH, methods=["POST"], content_types=CONTENT_TYPES)
    def stripe_webhook() -> Response:
        observability.count("EventsReceived")
        try:
            return handle(blueprint.current_request)
        finally:
            observability.flush()

    def handle(request: Request) -> Response:
        try:
            signing_secrets = secrets()
        except SettingsError as error:
            log.error("%s; answering 503 so that Stripe retries", error)
            return _error(503, "not_configured", NOT_CONFIGURED)
        if not signing_secrets:
            log.error(
                "no webhook signing secret is set (%s); answering 503 so that Stripe retries",
                settings.webhook_secret_setting,
            )
            return _error(503, "not_configured", "The webhook has no signing secret yet.")
        try:
            header, entry = ingest(
                _as_bytes(request.raw_body),
                request.headers.get("stripe-signature"),
                settings,
                time.time(),
                signing_secrets,
            )
        except Rejected as rejected:
            log.warning(
                "rejected (%s): %s",
                rejected.code,
                rejected.message,
                extra={"outcome": "rejected", "reason": rejected.code},
            )
            observability.count("EventsRejected", reason=rejected.code)
            return _error(rejected.status, rejected.code, rejected.message)
        fields = {"event_id": header.id, "event_type": header.type}
        if already_published(store, header.id):
            log.info(
                "duplicate delivery of %s %s: already published",
                header.type,
                header.id,
                extra={**fields, "outcome": "duplicate"},
            )
            observability.count("EventsDuplicate")
            return _json(200, {"received": True, "id": header.id, "duplicate": True})
        try:
            publish_event(entry, header, publisher(), store(), payloads, settings.max_entry_bytes)
        except SettingsError as error:
            log.error("event %s %s not published: %s", header.id, header.type, error)
            return _error(503, "not_configured", NOT_CONFIGURED)
        except PublishFailed as failed:
            log.error("event %s %s not published: %s", header.id, header.type, failed)
            return _error(503, "publish_failed", PUBLISH_FAILED)
        log.info(
            "published %s %s", header.type, header.id, extra={**fields, "outcome": "published"}
        )
        observability.count("EventsPublished")
        return _json(200, {"received": True, "id": header.id})

    return blueprint
