"""A deployed stage as the `endpoint` commands see it: its Stripe client, its SSM parameter
of signing secrets, and the names both the endpoint and the thin destination carry."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import click
import stripe

import stripe_events._catalog as catalog
import stripe_events._secrets as stage_secrets
from stripe_events._errors import SettingsError
from stripe_events._settings import Settings
from stripe_events_ops.clients import AwsClients, stripe_client
from stripe_events_ops.project import current_project, load_events, routing_app, subscribers

STAGE_TAG = "stripe_events_stage"
WEBHOOK_PATH = "/stripe/webhook"  # the route webhook.py serves
PAGE_SIZE = 100  # the most Stripe returns per page
# The webhook caches its secrets this long: a new secret is used within that time, and
# Stripe retries the deliveries refused meanwhile.
SECRET_CACHE_MINUTES = stage_secrets.MAX_AGE_SECONDS // 60
UNSET = "(unset)"


class EndpointError(click.ClickException):
    """The stage's endpoint cannot be told apart or changed; the message says what to do."""


def wanted_event_types(thin: bool = False) -> tuple[str, ...]:
    """The snapshot (or thin) types the app's functions handle, wildcards expanded: what
    `enabled-events` (`--thin`) prints."""
    handled = subscribers(routing_app(current_project()))
    return tuple(sorted(t for t in handled if catalog.is_thin(t) == thin))


def pinned_api_version() -> str:
    """The API version the installed stripe package's types describe."""
    return str(stripe.api_version)


def description_for(stage: str) -> str:
    return f"stripe-events, stage {stage} (managed by `stripe-events endpoint sync`)"


def change_lines(
    url: tuple[str, str] | None, enable: bool, added: Iterable[str], removed: Iterable[str]
) -> list[str]:
    """How `endpoint sync` shows the changes an endpoint and a destination have in common."""
    added, removed = list(added), list(removed)
    lines = []
    if url:
        lines.append(f"  url: {url[0]} → {url[1]}")
    if enable:
        lines.append("  status: disabled → enabled")
    if added or removed:
        lines.append(f"  enabled_events: {len(added)} to add, {len(removed)} to remove")
        lines += [f"    + {t}" for t in added]
        lines += [f"    - {t}" for t in removed]
    return lines


def is_live_key(api_key: str) -> bool:
    # The rule core.StripeEvents uses: sk_live_…, rk_live_….
    return "_live_" in api_key


def mode_name(live: bool) -> str:
    return "live mode" if live else "test mode"


def error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def parameter_type(ssm: Any, name: str) -> str | None:
    """The parameter's type (String, StringList, SecureString), or None when it is missing.

    DescribeParameters returns no value, so nothing secret is read to answer.
    """
    found = ssm.describe_parameters(ParameterFilters=[{"Key": "Name", "Values": [name]}])
    for parameter in found.get("Parameters", []):
        if parameter.get("Name") == name:
            return str(parameter["Type"])
    return None


def parameter_secrets(ssm: Any, name: str) -> list[str]:
    """The comma-separated secrets the parameter holds ([] when it is missing)."""
    try:
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
    except ssm.exceptions.ParameterNotFound:
        return []
    return [s.strip() for s in str(value).split(",") if s.strip()]


def redact(text: str, secrets: Iterable[str]) -> str:
    """An error's message without the secrets a failed call carried."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "whsec_…")
    return text


@dataclass
class Target:
    """A deployed stage, its Stripe client and its SSM client."""

    settings: Settings
    client: stripe.StripeClient
    ssm: Any
    live: bool

    @property
    def stage(self) -> str:
        return self.settings.stage

    @property
    def secret_param(self) -> str:
        return self.settings.webhook_secret_param


def load_target(stage: str) -> Target:
    try:
        events = load_events(stage, current_project())
        settings = events.settings
        if settings.is_local:
            raise click.UsageError(
                f"stage {stage!r} runs on this machine, where Stripe cannot reach it; forward "
                f"events to it with `stripe listen --forward-to 127.0.0.1:8000{WEBHOOK_PATH}`."
            )
        if not settings.webhook_secret_param:
            raise click.UsageError(
                f"stage {stage!r} sets no STRIPE_WEBHOOK_SECRET_PARAM, so the signing secret "
                "would have nowhere to go: set it in .chalice/config.json, e.g. "
                f"/stripe-events-{stage}/webhook-secret."
            )
        api_key = events.api_key
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    if not api_key:
        raise click.UsageError(
            f"stage {stage!r} has no Stripe API key: put one (a restricted key with write "
            "access to Webhook Endpoints is enough) in the SSM parameter that "
            "STRIPE_API_KEY_PARAM names, as a SecureString."
        )
    live = is_live_key(api_key)
    if settings.livemode is not None and settings.livemode != live:
        raise click.UsageError(
            f"stage {stage!r} accepts {mode_name(settings.livemode)} events only "
            f"(STRIPE_LIVEMODE), but its API key is a {mode_name(live)} key: that key's "
            "endpoint would send events the webhook refuses. Store the key of the other mode."
        )
    client = stripe_client(api_key)
    return Target(settings, client, AwsClients(settings.region)("ssm"), live)


def store_secrets(target: Target, secrets: list[str]) -> None:
    target.ssm.put_parameter(
        Name=target.secret_param,
        Value=",".join(secrets),
        Type="SecureString",
        Overwrite=True,
        Description=f"Stripe webhook signing secret(s) of stage {target.stage}, newest first",
    )
    stage_secrets.forget()  # what this process reads next is the new value
