"""The `stripe-events` command: each group of commands lives in a module of its own."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from stripe_events_ops.backfill import backfill_command
from stripe_events_ops.build import build_command
from stripe_events_ops.clients import aws_problem
from stripe_events_ops.develop import enabled_events, outbox, run_local, send, show_catalog
from stripe_events_ops.doctor import doctor_command
from stripe_events_ops.endpoint import endpoint_group
from stripe_events_ops.history import failures, ledger, replay
from stripe_events_ops.infra import infra_group
from stripe_events_ops.state import state


class Commands(click.Group):
    """The command group: an AWS setup problem is one line and exit 1, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as error:
            problem = aws_problem(error)
            if problem is None:
                raise
            raise click.ClickException(problem) from None


@click.group(cls=Commands, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--project",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="The Chalice project (default: the one around the current directory).",
)
@click.pass_context
def main(context: click.Context, project: Path | None) -> None:
    """Stripe events -> EventBridge -> one function per Stripe resource."""
    context.obj = project.resolve() if project else None


for command in (run_local, send, show_catalog, enabled_events, ledger, failures, replay, outbox):
    main.add_command(command)
for command in (state, backfill_command, build_command, infra_group, endpoint_group):
    main.add_command(command)
main.add_command(doctor_command)
