"""Commands for working on the app locally: serve it, send it events, read its outbox,
and see which of Stripe's event types it handles."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict
from pathlib import Path
from typing import Any

import click

import stripe_events._catalog as catalog
from stripe_events._errors import SettingsError, UnknownEventType
from stripe_events._signature import expected_signature
from stripe_events_local.outbox import OutboxNotifier
from stripe_events_ops.listen_secret import SECRET_VARIABLE, NotASigningSecret, added_secrets
from stripe_events_ops.options import handled, stage_events, stage_option
from stripe_events_ops.project import current_project, stage_environment
from stripe_events_testing import samples

DEFAULT_URL = "http://127.0.0.1:8000/stripe/webhook"
# Stripe gives up on a whole delivery after about 10 s, so a client silent for longer
# between two reads is gone; the margin is for a busy laptop.
IDLE_TIMEOUT = 15.0


@click.command(name="run")
@click.option("--host", default="127.0.0.1", show_default=True, help="The address to serve on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535))
@click.option(
    "--allow-host",
    "allowed_hosts",
    multiple=True,
    metavar="NAME",
    help="A Host to answer besides loopback names, such as a tunnel's; repeatable.",
)
@click.option(
    "--idle-timeout",
    default=IDLE_TIMEOUT,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Seconds a connection may stay silent, idle or mid-request, before it is closed.",
)
@stage_option
def run_local(
    host: str, port: int, allowed_hosts: tuple[str, ...], idle_timeout: float, stage: str
) -> None:
    """Serve the app, as `chalice local --no-autoreload` does, taking bursts of deliveries.

    STRIPE_WEBHOOK_SECRET, in the shell or in a .env file beside .chalice/, is accepted
    besides the stage's own secret: the one `stripe listen` prints.

    Only requests to a loopback name (localhost, 127.0.0.1, [::1]) are answered, so that no
    web page can read the app through DNS rebinding; --allow-host adds others.
    """
    from stripe_events_ops.local_server import Policy, serve

    try:
        policy = Policy.of(allowed_hosts, idle_timeout)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--allow-host") from None
    project = current_project()
    try:
        added = added_secrets(project, stage_environment(stage, project), os.environ)
    except (NotASigningSecret, SettingsError) as error:
        raise click.UsageError(str(error)) from None
    variables = {}
    secrets_from = f"stage {stage}'s own (.chalice/config.json)"
    if added is not None:
        variables[SECRET_VARIABLE] = added.value
        secrets_from += (
            f", and {added.count} from {SECRET_VARIABLE} in {added.origin} (`stripe listen`)"
        )
    serve(project, stage, host, port, policy, variables, secrets_from)


@click.command()
@click.argument("event_type")
@click.option("--url", default=DEFAULT_URL, show_default=True, help="The webhook to post to.")
@click.option(
    "--data",
    "data_file",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A JSON file: the event to send, or the object to send it about.",
)
@click.option(
    "--set",
    "changes",
    multiple=True,
    metavar="PATH=VALUE",
    help="Set a field of the event's object (`customer=cus_1`, `metadata.plan=pro`), or of "
    "the event with `event.` (`event.livemode=true`); VALUE is JSON, or else a string.",
)
@stage_option
def send(
    event_type: str, url: str, data_file: Path | None, changes: tuple[str, ...], stage: str
) -> None:
    """Sign a realistic EVENT_TYPE event with the stage's secret and POST it to the webhook."""
    try:
        catalog.expand(event_type)
    except UnknownEventType as error:
        raise click.UsageError(str(error)) from None
    if "*" in event_type:
        raise click.UsageError("send takes one event type, not a pattern")
    settings = stage_events(stage).settings
    if not settings.webhook_secrets:
        raise click.UsageError(f"stage {stage!r} sets no STRIPE_WEBHOOK_SECRET to sign with")
    event = samples.sample_event(event_type, livemode=bool(settings.livemode))
    if data_file is not None:
        event = with_data(event, data_file)
    for change in changes:
        set_field(event, change)
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


@click.command(name="catalog")
@click.option("--subscribed", is_flag=True, help="Only the types the app handles.")
def show_catalog(subscribed: bool) -> None:
    """List Stripe's event types by resource, snapshot then thin; '*' marks those handled."""
    functions = handled()
    groups = sorted(catalog.by_resource().items(), key=lambda g: (catalog.is_thin(g[0]), g[0]))
    for resource, types in groups:
        shown = [t for t in types if t in functions or not subscribed]
        if not shown:
            continue
        click.echo(f"{resource}{'  (thin)' if catalog.is_thin(resource) else ''}")
        for event_type in shown:
            if event_type in functions:
                click.echo(f"  * {event_type}  -> {', '.join(functions[event_type])}")
            else:
                click.echo(f"    {event_type}")
    if not subscribed:
        thin = sum(catalog.is_thin(t) for t in functions)
        click.echo(
            f"\n{len(functions) - thin} of {len(catalog.event_types())} snapshot types and "
            f"{thin} of {len(catalog.thin_event_types())} thin types handled (*)"
        )


@click.command(name="enabled-events")
@click.option(
    "--thin", is_flag=True, help="The thin types, for an event destination with thin payloads."
)
def enabled_events(thin: bool) -> None:
    """Print the event types to enable on the Stripe endpoint, one per line.

    Snapshot types go on a webhook endpoint; thin types on an event destination whose
    payload is thin (`endpoint sync` sets up both).
    """
    types = sorted(t for t in handled() if catalog.is_thin(t) == thin)
    for event_type in types:
        click.echo(event_type)
    others = sum(catalog.is_thin(t) != thin for t in handled())
    if others and not thin:
        click.echo(f"(and {others} thin type(s): `stripe-events enabled-events --thin`)", err=True)


@click.command()
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


EVENT_OBJECTS = ("event", "v2.core.event")


def with_data(event: dict[str, Any], path: Path) -> dict[str, Any]:
    """The event a --data file gives: itself, if it is an event of the same type, or the
    sample event about the object it holds."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as error:
        raise click.BadParameter(f"{path} is not JSON: {error}", param_hint="--data") from None
    if not isinstance(data, dict):
        raise click.BadParameter(f"{path} holds no JSON object", param_hint="--data")
    if data.get("object") in EVENT_OBJECTS:
        if data.get("type") != event["type"]:
            raise click.BadParameter(
                f"{path} is a {data.get('type')!r} event, not {event['type']!r}",
                param_hint="--data",
            )
        return data
    if "data" not in event:
        raise click.BadParameter(
            "a thin event carries no object: give --data a whole notification",
            param_hint="--data",
        )
    return {**event, "data": {**event["data"], "object": data}}


def set_field(event: dict[str, Any], change: str) -> None:
    """Apply one --set PATH=VALUE to the event's object (or, under `event.`, the event)."""
    path, equals, raw = change.partition("=")
    if not equals or not path.strip("."):
        raise click.BadParameter(f"{change!r} is not PATH=VALUE", param_hint="--set")
    if path.startswith("event."):
        target, names = event, path.removeprefix("event.").split(".")
    elif "data" in event:
        target, names = event["data"]["object"], path.split(".")
    else:
        raise click.BadParameter(
            "a thin event carries no object: set its fields with `event.`", param_hint="--set"
        )
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw  # a plain string: `customer=cus_1`
    for name in names[:-1]:
        child = target.get(name)
        if not isinstance(child, dict):
            child = target[name] = {}
        target = child
    target[names[-1]] = value
