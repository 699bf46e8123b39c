"""`stripe-events state`: the billing state the app's resource modules keep."""

from __future__ import annotations

import json

import click

from stripe_events_ops.options import stage_events, stage_option


@click.group()
def state() -> None:
    """Read the billing state the resource modules keep."""


@state.command(name="customer")
@click.argument("customer_id")
@stage_option
def state_customer(customer_id: str, stage: str) -> None:
    """CUSTOMER_ID's subscriptions, entitlements, open invoices and open disputes, as JSON."""
    # Loading the app puts the project on sys.path, where chalicelib/ is.
    store = stage_events(stage).store
    from chalicelib.resources.billing_state import customer_state

    found = customer_state(store, customer_id)
    if found is None:
        raise click.ClickException(f"no billing state for customer {customer_id}")
    click.echo(json.dumps(found, indent=2, sort_keys=True))
