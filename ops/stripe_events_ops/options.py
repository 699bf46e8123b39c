"""Options and helpers the commands share: the stage, a time window, loading the app."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

import click
from click.decorators import FC

from stripe_events._errors import SettingsError
from stripe_events_ops.durations import parse_since
from stripe_events_ops.project import current_project, load_events, routing_app, subscribers

if TYPE_CHECKING:
    from stripe_events._core import StripeEvents

stage_option = click.option(
    "--stage", default="local", show_default=True, help="Stage in .chalice/config.json."
)
deployed_stage_option = click.option(
    "--stage", required=True, help="A deployed stage of .chalice/config.json, e.g. dev."
)


def since_option(help_text: str) -> Callable[[FC], FC]:
    return click.option("--since", default=None, metavar="2h|3d|ISO", help=help_text)


def iso_since(since: str | None) -> str:
    if since is None:
        return ""
    try:
        return parse_since(since).isoformat()
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None


def stage_events(stage: str) -> StripeEvents:
    """The project's StripeEvents under `stage`; a usage error when it cannot be loaded."""
    try:
        return load_events(stage, current_project())
    except SettingsError as error:
        raise click.UsageError(str(error)) from None


def handled() -> dict[str, list[str]]:
    """Event type -> the project's functions that handle it."""
    try:
        return subscribers(routing_app(current_project()))
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
