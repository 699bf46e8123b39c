"""The stage's thin event destination, beside its webhook endpoint.

Thin event types cannot be enabled on a (v1) webhook endpoint: they go to an event
destination of the v2 API whose payload is `thin`. `endpoint sync` keeps one per stage
when the app handles thin types: it sends to the same URL, has its own signing secret
(which goes into the stage's parameter beside the endpoint's, so that the webhook
verifies both), and carries the same stage tag in its metadata.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

import click
import stripe

from stripe_events_ops.endpoint_target import (
    STAGE_TAG,
    EndpointError,
    Target,
    change_lines,
    description_for,
    parameter_secrets,
    redact,
    store_secrets,
)

if TYPE_CHECKING:
    from stripe.params.v2.core import (
        EventDestinationCreateParams,
        EventDestinationUpdateParams,
    )
    from stripe.v2.core import EventDestination

PAYLOAD = "thin"


@dataclass(frozen=True)
class WantedDestination:
    """The thin event destination the code needs for a stage."""

    stage: str
    url: str
    enabled_events: tuple[str, ...]

    @property
    def name(self) -> str:
        return f"stripe-events {self.stage} (thin events)"

    def create_params(self) -> EventDestinationCreateParams:
        params = {
            "name": self.name,
            "description": description_for(self.stage),
            "type": "webhook_endpoint",
            "event_payload": PAYLOAD,
            "enabled_events": list(self.enabled_events),
            "webhook_endpoint": {"url": self.url},
            "metadata": {STAGE_TAG: self.stage},
            # Stripe returns the signing secret in this answer only, and only when asked.
            "include": ["webhook_endpoint.signing_secret"],
        }
        return cast("EventDestinationCreateParams", params)


def list_destinations(client: stripe.StripeClient) -> list[EventDestination]:
    """The account's event destinations (all pages), with their webhook URLs shown."""
    first = client.v2.core.event_destinations.list({"include": ["webhook_endpoint.url"]})
    return list(first.auto_paging_iter())


def _url(destination: EventDestination) -> str:
    endpoint = destination.webhook_endpoint
    return str(getattr(endpoint, "url", None) or "")


def _tag(destination: EventDestination) -> str:
    metadata = destination.metadata
    return str(metadata[STAGE_TAG]) if metadata and STAGE_TAG in metadata else ""


def find_destination(
    destinations: Sequence[EventDestination], stage: str
) -> EventDestination | None:
    """The stage's thin destination: a thin one tagged with the stage."""
    tagged = [d for d in destinations if d.event_payload == PAYLOAD and _tag(d) == stage]
    if len(tagged) > 1:
        ids = ", ".join(d.id for d in tagged)
        raise EndpointError(
            f"several thin event destinations have metadata {STAGE_TAG}={stage}: {ids}. Keep "
            "one: delete the others in the Dashboard (Developers → Event destinations)."
        )
    return tagged[0] if tagged else None


@dataclass(frozen=True)
class DestinationDiff:
    url: tuple[str, str] | None
    added: tuple[str, ...]
    removed: tuple[str, ...]
    enable: bool

    @property
    def changes(self) -> bool:
        return bool(self.url or self.added or self.removed or self.enable)

    def update_params(self, wanted: WantedDestination) -> EventDestinationUpdateParams:
        params: dict[str, Any] = {}
        if self.url:
            params["webhook_endpoint"] = {"url": wanted.url}
        if self.added or self.removed:
            params["enabled_events"] = list(wanted.enabled_events)
        return cast("EventDestinationUpdateParams", params)

    def lines(self) -> list[str]:
        return change_lines(self.url, self.enable, self.added, self.removed)


def diff_destination(existing: EventDestination, wanted: WantedDestination) -> DestinationDiff:
    current, goal = set(existing.enabled_events or []), set(wanted.enabled_events)
    url = _url(existing)
    return DestinationDiff(
        url=(url, wanted.url) if url != wanted.url else None,
        added=tuple(sorted(goal - current)),
        removed=tuple(sorted(current - goal)),
        enable=existing.status != "enabled",
    )


def sync_destination(
    target: Target, wanted: WantedDestination, *, yes: bool, dry_run: bool
) -> None:
    """Create or update the stage's thin destination; its secret joins the parameter's."""
    existing = find_destination(list_destinations(target.client), target.stage)
    if existing is None:
        click.echo(f"Create a thin event destination for stage {target.stage}:")
        click.echo(f"  url: {wanted.url}")
        click.echo(f"  enabled_events: {len(wanted.enabled_events)}")
        for event_type in wanted.enabled_events:
            click.echo(f"    + {event_type}")
        click.echo(f"  signing secret → SSM parameter {target.secret_param}, beside the others")
        if dry_run:
            click.echo("Dry run: nothing changed.")
            return
        if not yes:
            click.confirm("Create it?", abort=True)
        created = create_destination(target, wanted)
        click.echo(
            f"Created thin event destination {created.id}. Its signing secret is in "
            f"{target.secret_param} too."
        )
        return
    changes = diff_destination(existing, wanted)
    if not changes.changes:
        click.echo(
            f"Thin event destination {existing.id} is up to date: "
            f"{len(wanted.enabled_events)} event types, enabled."
        )
        return
    click.echo(f"Thin event destination {existing.id} (stage {target.stage}) differs:")
    for line in changes.lines():
        click.echo(line)
    if dry_run:
        click.echo("Dry run: nothing changed.")
        return
    if not yes:
        click.confirm(f"Update thin event destination {existing.id}?", abort=True)
    service = target.client.v2.core.event_destinations
    if changes.url or changes.added or changes.removed:
        service.update(existing.id, changes.update_params(wanted))
    if changes.enable:
        service.enable(existing.id)
    click.echo(f"Updated thin event destination {existing.id}.")


def create_destination(target: Target, wanted: WantedDestination) -> EventDestination:
    """Create the destination and add its secret to the parameter (the others stay).

    As for an endpoint: if the secret cannot be stored, the destination is deleted again.
    """
    kept = parameter_secrets(target.ssm, target.secret_param)
    created = target.client.v2.core.event_destinations.create(wanted.create_params())
    secret = str(getattr(created.webhook_endpoint, "signing_secret", None) or "")
    try:
        if not secret:
            raise EndpointError(f"Stripe created {created.id} but returned no signing secret.")
        store_secrets(target, [*kept, secret])
    except Exception as error:
        message = redact(str(error), [secret, *kept])
        try:
            target.client.v2.core.event_destinations.delete(created.id)
            undo = f"deleted the new destination {created.id} again, so nothing changed"
        except stripe.StripeError:
            undo = f"delete the new destination {created.id} in the Dashboard before you run again"
        raise EndpointError(
            f"could not store the signing secret in {target.secret_param} ({message}); {undo}."
        ) from None
    return created
