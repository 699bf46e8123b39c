"""The `stripe-events` command: send test events, read the catalog and the ledger."""

from __future__ import annotations

import importlib
import json
import pkgutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterable

import click

from chalicelib.stripe_events import catalog, samples
from chalicelib.stripe_events.router import Router
from chalicelib.stripe_events.settings import SettingsError
from chalicelib.stripe_events.signature import expected_signature
from chalicelib.stripe_events.stages import stage_settings
from chalicelib.stripe_events.store import open_store

DEFAULT_URL = "http://127.0.0.1:8000/stripe/webhook"
RESOURCES_PACKAGE = "chalicelib.resources"


def resource_routers(package: str = RESOURCES_PACKAGE) -> list[Router]:
    """The `router` of every resource module, as app.py wires them."""
    routers = []
    for info in pkgutil.iter_modules(importlib.import_module(package).__path__):
        module = importlib.import_module(f"{package}.{info.name}")
        router = getattr(module, "router", None)
        if isinstance(router, Router):
            routers.append(router)
    return routers


def subscribers(routers: Iterable[Router]) -> dict[str, list[str]]:
    """Event type -> the routers that handle it."""
    result: dict[str, list[str]] = {}
    for router in routers:
        for event_type in router.event_types():
            result.setdefault(event_type, []).append(router.name)
    return result


stage_option = click.option(
    "--stage", default="local", show_default=True, help="Stage in .chalice/config.json."
)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Stripe events -> EventBridge -> one function per Stripe resource."""


@main.command()
@click.argument("event_type")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The webhook to post to.")
@stage_option
def send(event_type: str, url: str, stage: str) -> None:
    """Sign a realistic EVENT_TYPE event with the stage's secret and POST it to the webhook."""
    try:
        catalog.expand(event_type)
        settings = stage_settings(stage)
    except (catalog.UnknownEventType, SettingsError) as error:
        raise click.UsageError(str(error)) from None
    if "*" in event_type:
        raise click.UsageError("send takes one event type, not a pattern")
    if not settings.webhook_secrets:
        raise click.UsageError(f"stage {stage!r} sets no STRIPE_WEBHOOK_SECRET to sign with")
    event = samples.sample_event(event_type, livemode=bool(settings.livemode))
    body = samples.encode(event)
    timestamp = int(time.time())
    signature = expected_signature(body, timestamp, settings.webhook_secrets[0])
    request = urllib.request.Request(
        url,
        data=body,
        method="POST",
        headers={
            "Content-Type": "application/json; charset=utf-8",
            "Stripe-Signature": f"t={timestamp},v1={signature}",
        },
    )
    click.echo(f"POST {url}  {event_type}  {event['id']}  ({len(body)} bytes)")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, answer = response.status, response.read().decode()
    except urllib.error.HTTPError as error:
        status, answer = error.code, error.read().decode()
    except urllib.error.URLError as error:
        raise click.ClickException(
            f"cannot reach {url}: {error.reason}. Is the app running (`make run`)?"
        ) from None
    click.echo(f"{status} {answer}")
    if not 200 <= status < 300:
        sys.exit(1)


@main.command(name="catalog")
@click.option("--subscribed", is_flag=True, help="Only the types the app handles.")
def show_catalog(subscribed: bool) -> None:
    """List Stripe's event types by resource; '*' marks those the app handles."""
    handled = subscribers(resource_routers())
    for resource, types in sorted(catalog.by_resource().items()):
        shown = [t for t in types if t in handled or not subscribed]
        if not shown:
            continue
        click.echo(f"{resource}")
        for event_type in shown:
            if event_type in handled:
                click.echo(f"  * {event_type}  -> {', '.join(handled[event_type])}")
            else:
                click.echo(f"    {event_type}")
    if not subscribed:
        click.echo(f"\n{len(handled)} of {len(catalog.event_types())} types handled (*)")


@main.command(name="enabled-events")
def enabled_events() -> None:
    """Print the event types to enable on the Stripe endpoint, one per line."""
    for event_type in sorted(subscribers(resource_routers())):
        click.echo(event_type)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@stage_option
def ledger(as_json: bool, limit: int, stage: str) -> None:
    """Recent events and the status of each handler, newest first."""
    try:
        store = open_store(stage_settings(stage))
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    entries = store.recent(limit)
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    if not entries:
        click.echo("The ledger is empty: no event has reached a function yet.")
        return
    for entry in entries:
        click.echo(f"{entry.received_at}  {entry.id}  {entry.type}")
        for name, outcome in entry.handlers.items():
            detail = f"  {outcome.error}" if outcome.error else ""
            click.echo(f"    {name}: {outcome.status} (attempts {outcome.attempts}){detail}")
        if not entry.handlers:
            click.echo("    (no handler for this type)")
