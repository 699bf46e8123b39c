"""The `stripe-events` command: send test events, read the catalog and the ledger, replay."""

from __future__ import annotations

import importlib
import json
import os
import pkgutil
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict
from typing import TYPE_CHECKING

import click
from click.decorators import FC

from stripe_events import catalog, samples
from stripe_events.bus import publish_event
from stripe_events.envelope import parse_event, to_entry
from stripe_events.errors import PublishFailed
from stripe_events.ledger import LedgerEntry
from stripe_events.notifier import OutboxNotifier
from stripe_events.router import Router
from stripe_events.settings import SettingsError
from stripe_events.signature import expected_signature
from stripe_events_ops.backfill import API_BASE_VARIABLE, backfill_command, stripe_client
from stripe_events_ops.doctor import doctor_command
from stripe_events_ops.durations import parse_since
from stripe_events_ops.endpoint import endpoint_group
from stripe_events_ops.infra import infra_group
from stripe_events_ops.stages import PROJECT_DIR, load_events

if TYPE_CHECKING:
    from stripe_events.core import StripeEvents

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


def stage_events(stage: str) -> StripeEvents:
    try:
        return load_events(stage)
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


def since_option(help_text: str) -> Callable[[FC], FC]:
    return click.option("--since", default=None, metavar="2h|3d|ISO", help=help_text)


stage_option = click.option(
    "--stage", default="local", show_default=True, help="Stage in .chalice/config.json."
)


def iso_since(since: str | None) -> str:
    if since is None:
        return ""
    try:
        return parse_since(since).isoformat()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """Stripe events -> EventBridge -> one function per Stripe resource."""


@main.command(name="run")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to serve on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@stage_option
def run_local(host: str, port: int, stage: str) -> None:
    """Serve the app, as `chalice local --no-autoreload` does, taking bursts of deliveries."""
    from stripe_events_ops.local_server import serve

    serve(PROJECT_DIR, stage, host, port)


@main.command()
@click.argument("event_type")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The webhook to post to.")
@stage_option
def send(event_type: str, url: str, stage: str) -> None:
    """Sign a realistic EVENT_TYPE event with the stage's secret and POST it to the webhook."""
    try:
        catalog.expand(event_type)
    except catalog.UnknownEventType as error:
        raise click.UsageError(str(error)) from None
    if "*" in event_type:
        raise click.UsageError("send takes one event type, not a pattern")
    settings = stage_events(stage).settings
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


def echo_entries(entries: list[LedgerEntry], as_json: bool, empty: str) -> None:
    if as_json:
        click.echo(json.dumps([e.to_json() for e in entries], indent=2))
        return
    if not entries:
        click.echo(empty)
        return
    for entry in entries:
        published = "" if entry.published_at is None else f"  published {entry.published_at}"
        click.echo(f"{entry.seen_at}  {entry.id}  {entry.type}{published}")
        for name, o in entry.handlers.items():
            detail = f"  {o.error_type}: {o.error} (at {o.at})" if o.status == "error" else ""
            click.echo(f"    {name}: {o.status} (attempts {o.attempts}){detail}")
        if not entry.handlers:
            click.echo("    (no handler has run for it)")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@since_option("Only events seen since then.")
@stage_option
def ledger(as_json: bool, limit: int, since: str | None, stage: str) -> None:
    """Recent events and the status of each handler, newest first."""
    entries = stage_events(stage).store.recent(limit, since=iso_since(since))
    echo_entries(entries, as_json, "The ledger is empty: no event has been seen yet.")


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@since_option("Only events seen since then.")
@stage_option
def failures(as_json: bool, since: str | None, stage: str) -> None:
    """Events with a handler that is failing now: its error, attempts and time."""
    entries = stage_events(stage).store.failures(since=iso_since(since))
    echo_entries(entries, as_json, "No handler is failing.")
    if entries and not as_json:
        click.echo(
            f"\n{len(entries)} event(s) failing. Fix the cause, then: stripe-events replay --failed"
        )


def replay_one(events: StripeEvents, entry: LedgerEntry) -> bool:
    """Publish the event again from its body; the handlers that completed are skipped."""
    body = entry.body
    if body is None and events.api_key:
        # The same client as backfill's: STRIPE_API_BASE applies, and JSON as Stripe sent it.
        client = stripe_client(events.api_key, os.environ.get(API_BASE_VARIABLE) or None)
        fetched = client.v1.events.retrieve(entry.id)
        body = json.dumps(fetched.to_dict(for_json=True))
    if body is None:
        click.echo(
            f"{entry.id}: no body in the ledger (no function received it); set "
            "STRIPE_API_KEY to fetch it from Stripe, or use `stripe-events backfill`"
        )
        return False
    header = parse_event(body, None)
    entry_to_publish = to_entry(body, header, events.settings)
    try:
        publish_event(
            entry_to_publish,
            header,
            events.publisher,
            events.store,
            lambda: events.payloads,
            events.settings.max_entry_bytes,
        )
    except PublishFailed as error:
        click.echo(f"{entry.id}: not published: {error}")
        return False
    after = events.store.event(entry.id) or entry
    statuses = ", ".join(f"{n} {o.status}" for n, o in after.handlers.items()) or "published"
    click.echo(f"{entry.id}  {entry.type}: {statuses}")
    return True


@main.command()
@click.argument("event_id", required=False)
@click.option("--failed", is_flag=True, help="Replay every event with a failing handler.")
@since_option("With --failed: only events seen since then.")
@stage_option
def replay(event_id: str | None, failed: bool, since: str | None, stage: str) -> None:
    """Dispatch EVENT_ID (or every failing event) again from the ledger.

    The event is published again, on the stage's bus; handlers that already completed
    for it are skipped, so only what failed (or never ran) runs.
    """
    if (event_id is None) == (not failed):
        raise click.UsageError("give an EVENT_ID or --failed (not both)")
    if since is not None and not failed:
        raise click.UsageError("--since goes with --failed")
    events = stage_events(stage)
    if event_id is not None:
        entry = events.store.event(event_id)
        if entry is None:
            raise click.ClickException(
                f"{event_id} is not in the ledger. For events that never arrived, use "
                "`stripe-events backfill`."
            )
        entries = [entry]
    else:
        entries = list(reversed(events.store.failures(since=iso_since(since))))
        if not entries:
            click.echo("No handler is failing: nothing to replay.")
            return
    replayed = sum(replay_one(events, entry) for entry in entries)
    click.echo(f"replayed {replayed} of {len(entries)} event(s)")
    if replayed < len(entries):
        sys.exit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
def outbox(as_json: bool, limit: int) -> None:
    """Notifications the handlers sent in stage local, newest first."""
    notifier = stage_events("local").notifier
    if not isinstance(notifier, OutboxNotifier):
        raise click.UsageError("the outbox exists in stage local only; on AWS, see the SNS topic")
    sent = notifier.sent(limit)
    if as_json:
        click.echo(json.dumps([asdict(n) for n in sent], indent=2))
        return
    if not sent:
        click.echo("The outbox is empty: no handler has sent a notification yet.")
    for n in sent:
        customer = f"  customer {n.customer}" if n.customer else ""
        click.echo(f"{n.at}  {n.kind}{customer}  {n.subject}")
        click.echo(f"    {json.dumps(n.message, sort_keys=True)}")


@main.group()
def state() -> None:
    """Read the billing state the resource modules keep."""


@state.command(name="customer")
@click.argument("customer_id")
@stage_option
def state_customer(customer_id: str, stage: str) -> None:
    """CUSTOMER_ID's subscriptions, entitlements, open invoices and open disputes, as JSON."""
    from chalicelib.resources.billing_state import customer_state

    found = customer_state(stage_events(stage).store, customer_id)
    if found is None:
        raise click.ClickException(f"no billing state for customer {customer_id}")
    click.echo(json.dumps(found, indent=2, sort_keys=True))


main.add_command(backfill_command)
main.add_command(infra_group)
main.add_command(endpoint_group)
main.add_command(doctor_command)
