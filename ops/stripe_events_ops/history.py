"""Commands on the ledger: what happened to each event, what is failing, and replay."""

from __future__ import annotations

import json
import sys

import click

import stripe_events._catalog as catalog
import stripe_events_ops.ledger_view as view
from stripe_events._bus import publish_event
from stripe_events._core import StripeEvents
from stripe_events._envelope import parse_event, to_entry
from stripe_events._errors import PublishFailed
from stripe_events._ledger import LedgerEntry, Outcome
from stripe_events_ops.backfill import Listed
from stripe_events_ops.clients import stripe_client
from stripe_events_ops.options import iso_since, since_option, stage_events, stage_option


def echo_entries(entries: list[LedgerEntry], as_json: bool, empty: str) -> None:
    if as_json:
        click.echo(json.dumps([view.as_json(e) for e in entries], indent=2))
        return
    if not entries:
        click.echo(empty)
        return
    for entry in entries:
        click.echo(view.summary_line(entry))
        for line in view.handler_lines(entry):
            click.echo(f"    {line}")


@click.command()
@click.argument("event_id", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.option("--limit", default=20, show_default=True, type=click.IntRange(min=1))
@since_option("Only events seen since then.")
@stage_option
def ledger(event_id: str | None, as_json: bool, limit: int, since: str | None, stage: str) -> None:
    """Recent events (their object, customer and each handler's status), newest first; or
    all the ledger has of EVENT_ID: its times, outcomes, attempts, errors and body."""
    store = stage_events(stage).store
    if event_id is None:
        entries = store.recent(limit, since=iso_since(since))
        echo_entries(entries, as_json, "The ledger is empty: no event has been seen yet.")
        return
    entry = store.event(event_id)
    if entry is None:
        raise click.ClickException(
            f"{event_id} is not in stage {stage}'s ledger. For events that never arrived, "
            "use `stripe-events backfill`."
        )
    if as_json:
        click.echo(json.dumps(view.as_json(entry, body=True), indent=2))
        return
    for line in view.detail_lines(entry):
        click.echo(line)


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array.")
@since_option("Only events seen since then.")
@stage_option
def failures(as_json: bool, since: str | None, stage: str) -> None:
    """Events that need a replay: failing or stalled.

    Failing: a handler's latest outcome is an error (its type, message, attempts, time).
    Stalled: a run that crashed or timed out left handlers undone, and its lease is over.
    """
    entries = stage_events(stage).store.failures(since=iso_since(since))
    echo_entries(entries, as_json, "No handler is failing, and no run has stalled.")
    if entries:
        if not as_json:
            click.echo(
                f"\n{len(entries)} event(s) failing or stalled. Fix the cause, then: "
                "stripe-events replay --failed"
            )
        sys.exit(1)  # for scripts and CI: something needs a replay


def done_before(entry: LedgerEntry, handler: str, outcome: Outcome) -> bool:
    """Whether the replay left `handler` alone: it had succeeded, and was not run again."""
    return outcome.status == "ok" and entry.handlers.get(handler) == outcome


def replay_one(events: StripeEvents, entry: LedgerEntry) -> bool:
    """Publish the event again from its body; the handlers that completed are skipped."""
    body = entry.body
    if body is None and events.api_key:
        # The same client as backfill's: STRIPE_API_BASE applies, and JSON as Stripe sent it.
        client = stripe_client(events.api_key)
        if catalog.is_thin(entry.type):  # the v2 Events API; published as its notification
            body = json.dumps(Listed.thin(client.v2.core.events.retrieve(entry.id)).body)
        else:
            body = json.dumps(client.v1.events.retrieve(entry.id).to_dict(for_json=True))
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
    statuses = ", ".join(
        f"{name} skipped (done before)"
        if entry.handlers.get(name) == outcome
        else f"{name} {outcome.status}"
        for name, outcome in after.handlers.items()
    )
    click.echo(f"{entry.id}  {entry.type}: {statuses or 'published'}")
    return True


@click.command()
@click.argument("event_id", required=False)
@click.option(
    "--failed", is_flag=True, help="Replay every event `failures` lists (failing or stalled)."
)
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
            click.echo("No handler is failing, and no run has stalled: nothing to replay.")
            return
    replayed = sum(replay_one(events, entry) for entry in entries)
    click.echo(f"replayed {replayed} of {len(entries)} event(s)")
    if replayed < len(entries):
        sys.exit(1)
