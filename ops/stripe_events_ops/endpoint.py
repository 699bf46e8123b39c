"""`stripe-events endpoint sync`: the stage's Stripe webhook endpoint, as the code needs it.

The endpoint is made to match the code: its URL, the event types the routers handle (the
list `stripe-events enabled-events` prints), enabled, and the API version the installed
`stripe` package is built for. The signing secret Stripe returns when it creates an
endpoint goes straight into the stage's SSM parameter (SecureString); it is never printed.

Which endpoint is the stage's: the one whose metadata says `stripe_events_stage=<stage>`;
when none does, the one with the given URL (sync then tags it). The tag comes first
because the URL is what changes: a new API Gateway id after `chalice delete` and deploy,
or a move to a custom domain. Sync then updates the URL in place, and the signing secret
in SSM stays valid, where a search by URL alone would create a second endpoint. The
fallback by URL adopts an endpoint that was made in the Dashboard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

import click
import stripe

from stripe_events_ops.destination import WantedDestination, sync_destination
from stripe_events_ops.endpoint_target import (
    PAGE_SIZE,
    SECRET_CACHE_MINUTES,
    STAGE_TAG,
    UNSET,
    WEBHOOK_PATH,
    EndpointError,
    Target,
    change_lines,
    description_for,
    load_target,
    mode_name,
    parameter_secrets,
    parameter_type,
    pinned_api_version,
    redact,
    store_secrets,
    wanted_event_types,
)
from stripe_events_ops.options import deployed_stage_option

if TYPE_CHECKING:
    from stripe.params import WebhookEndpointCreateParams, WebhookEndpointUpdateParams


def list_endpoints(client: stripe.StripeClient) -> list[stripe.WebhookEndpoint]:
    """Every webhook endpoint of the key's account and mode (all pages)."""
    return list(client.v1.webhook_endpoints.list({"limit": PAGE_SIZE}).auto_paging_iter())


def endpoint_field(endpoint: stripe.WebhookEndpoint, name: str) -> Any:
    """A field of the endpoint, or None when the answer lacks it (`secret` after creation)."""
    return getattr(endpoint, name, None)


def tag_of(endpoint: stripe.WebhookEndpoint) -> str:
    metadata = endpoint_field(endpoint, "metadata")
    return str(metadata[STAGE_TAG] or "") if metadata and STAGE_TAG in metadata else ""


def find_endpoint(
    endpoints: Sequence[stripe.WebhookEndpoint], stage: str, url: str | None
) -> stripe.WebhookEndpoint | None:
    """The stage's endpoint: tagged with the stage, else (with `url`) the one at that URL."""
    tagged = [e for e in endpoints if tag_of(e) == stage]
    if len(tagged) > 1:
        ids = ", ".join(e.id for e in tagged)
        raise EndpointError(
            f"several endpoints have metadata {STAGE_TAG}={stage}: {ids}. Keep one: delete "
            "the others in the Dashboard (Developers → Webhooks), or remove their tag."
        )
    if tagged:
        return tagged[0]
    if url is None:
        return None
    # An endpoint tagged for another stage is that stage's, even at the same URL.
    at_url = [e for e in endpoints if e.url == url and not tag_of(e)]
    if len(at_url) > 1:
        ids = ", ".join(e.id for e in at_url)
        raise EndpointError(
            f"several endpoints send to {url}: {ids}. Delete the extra ones in the Dashboard, "
            f"or add metadata {STAGE_TAG}={stage} to the one to keep."
        )
    return at_url[0] if at_url else None


@dataclass(frozen=True)
class Wanted:
    """The endpoint the code needs for a stage."""

    stage: str
    url: str
    enabled_events: tuple[str, ...]
    api_version: str

    @property
    def description(self) -> str:
        return description_for(self.stage)

    def create_params(self) -> WebhookEndpointCreateParams:
        params = {
            "url": self.url,
            "enabled_events": list(self.enabled_events),
            # Only creation can set it: an endpoint keeps its API version for life.
            "api_version": self.api_version,
            "description": self.description,
            "metadata": {STAGE_TAG: self.stage},
        }
        # The SDK types enabled_events and api_version as Literals of every known value;
        # ours come from the same package's catalog and version.
        return cast("WebhookEndpointCreateParams", params)


@dataclass(frozen=True)
class Diff:
    """How an existing endpoint differs from the wanted one."""

    url: tuple[str, str] | None = None
    added: tuple[str, ...] = ()  # types to enable
    removed: tuple[str, ...] = ()  # types to stop
    enable: bool = False  # status disabled → enabled
    description: tuple[str, str] | None = None
    tag: tuple[str, str] | None = None
    # An update cannot change it: reported, never "changed".
    api_version: tuple[str, str] | None = None

    @property
    def changes(self) -> bool:
        return bool(
            self.url or self.added or self.removed or self.enable or self.description or self.tag
        )

    def update_params(self, wanted: Wanted) -> WebhookEndpointUpdateParams:
        """Only what differs, so the update changes exactly what the diff showed."""
        params: dict[str, Any] = {}
        if self.url:
            params["url"] = wanted.url
        if self.added or self.removed:
            params["enabled_events"] = list(wanted.enabled_events)
        if self.enable:
            params["disabled"] = False
        if self.description:
            params["description"] = wanted.description
        if self.tag:
            params["metadata"] = {STAGE_TAG: wanted.stage}  # other keys are kept
        return cast("WebhookEndpointUpdateParams", params)

    def lines(self) -> list[str]:
        lines = change_lines(self.url, self.enable, self.added, self.removed)
        if self.description:
            lines.append(f"  description: {self.description[0]!r} → {self.description[1]!r}")
        if self.tag:
            lines.append(f"  metadata {STAGE_TAG}: {self.tag[0]} → {self.tag[1]}")
        return lines


def diff(endpoint: stripe.WebhookEndpoint, wanted: Wanted) -> Diff:
    current = set(endpoint_field(endpoint, "enabled_events") or [])
    goal = set(wanted.enabled_events)
    api_version = endpoint_field(endpoint, "api_version") or ""
    description = endpoint_field(endpoint, "description") or ""
    return Diff(
        url=(endpoint.url, wanted.url) if endpoint.url != wanted.url else None,
        added=tuple(sorted(goal - current)),
        removed=tuple(sorted(current - goal)),
        enable=endpoint_field(endpoint, "status") != "enabled",
        description=(description, wanted.description)
        if description != wanted.description
        else None,
        tag=(tag_of(endpoint) or UNSET, wanted.stage) if tag_of(endpoint) != wanted.stage else None,
        api_version=(api_version or "the account's default", wanted.api_version)
        if api_version != wanted.api_version
        else None,
    )


def recreate_advice(stage: str, url: str) -> str:
    return (
        f"`stripe-events endpoint sync --stage {stage} --url {url} --recreate` creates a new "
        "endpoint with the pinned version; delete the old one once its pending retries are done"
    )


def check_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.netloc:
        raise click.BadParameter(f"Stripe sends webhooks to https:// URLs; got {url!r}.")
    if not parts.path.endswith(WEBHOOK_PATH) or parts.query or parts.fragment:
        base = url.split("?")[0].split("#")[0].rstrip("/")
        raise click.BadParameter(
            f"the webhook's route is {WEBHOOK_PATH}; did you mean {base}{WEBHOOK_PATH}? "
            "(`chalice deploy` prints the API's base URL.)"
        )
    return url


def create_endpoint(
    target: Target, wanted: Wanted, replaced: stripe.WebhookEndpoint | None, keep: bool = False
) -> tuple[stripe.WebhookEndpoint, int]:
    """Create the endpoint and store its secret; with `replaced`, keep that one's secrets,
    and with `keep` (a thin destination's secret is there too), every secret stored.

    Returns the endpoint and how many older secrets the parameter kept.

    Stripe shows the secret only in this answer. If it cannot be stored, the new endpoint
    is deleted again, so that a second run starts clean instead of leaving an endpoint
    whose deliveries nothing can verify.
    """
    # While both endpoints deliver, the webhook must verify the old one's signatures too.
    keeping = replaced is not None or keep
    kept = parameter_secrets(target.ssm, target.secret_param) if keeping else []
    created = target.client.v1.webhook_endpoints.create(wanted.create_params())
    secret = str(endpoint_field(created, "secret") or "")
    try:
        if not secret:
            raise EndpointError(f"Stripe created {created.id} but returned no signing secret.")
        store_secrets(target, [secret, *(s for s in kept if s != secret)])
    except Exception as error:
        message = redact(str(error), [secret, *kept])
        try:
            target.client.v1.webhook_endpoints.delete(created.id)
            undo = f"deleted the new endpoint {created.id} again, so nothing changed"
        except stripe.StripeError:
            undo = f"delete the new endpoint {created.id} in the Dashboard before you run again"
        raise EndpointError(
            f"could not store the signing secret in {target.secret_param} ({message}); {undo}. "
            "Check that these AWS credentials may call ssm:PutParameter on it."
        ) from None
    return created, len(kept)


def show_create(target: Target, wanted: Wanted, replaced: stripe.WebhookEndpoint | None) -> None:
    if replaced is None:
        click.echo(f"Create an endpoint for stage {target.stage} ({mode_name(target.live)}):")
    else:
        click.echo(
            f"Create a new endpoint for stage {target.stage} ({mode_name(target.live)}) to "
            f"replace {replaced.id}, which keeps delivering until you delete it:"
        )
    click.echo(f"  url: {wanted.url}")
    click.echo(f"  api_version: {wanted.api_version}")
    click.echo(f"  enabled_events: {len(wanted.enabled_events)}")
    for event_type in wanted.enabled_events:
        click.echo(f"    + {event_type}")
    click.echo(f"  description: {wanted.description!r}")
    click.echo(f"  metadata {STAGE_TAG}: {wanted.stage}")
    kept = " (new first, then the old endpoint's)" if replaced is not None else ""
    click.echo(f"  signing secret → SSM parameter {target.secret_param}, SecureString{kept}")


def sync(
    target: Target,
    wanted: Wanted,
    *,
    yes: bool,
    dry_run: bool,
    recreate: bool,
    keep_secrets: bool = False,
) -> None:
    existing = find_endpoint(list_endpoints(target.client), target.stage, wanted.url)
    if existing is None or recreate:
        show_create(target, wanted, existing)
        if dry_run:
            click.echo("Dry run: nothing changed.")
            return
        if not yes:
            click.confirm("Create it?", abort=True)
        created, kept = create_endpoint(target, wanted, existing, keep_secrets)
        click.echo(
            f"Created endpoint {created.id}. Its signing secret is in {target.secret_param}; "
            f"the webhook uses it within {SECRET_CACHE_MINUTES} minutes, and Stripe retries "
            "what it refuses meanwhile."
        )
        if existing is not None:
            retire(target, existing, created, kept)
        return
    changes = diff(existing, wanted)
    if changes.changes:
        click.echo(
            f"Endpoint {existing.id} (stage {target.stage}, {mode_name(target.live)}) differs:"
        )
        for line in changes.lines():
            click.echo(line)
    warn_api_version(changes, target.stage, wanted.url)
    warn_missing_secret(target)
    if not changes.changes:
        click.echo(
            f"Endpoint {existing.id} is up to date: {existing.url}, "
            f"{len(wanted.enabled_events)} event types, enabled."
        )
        return
    if dry_run:
        click.echo("Dry run: nothing changed.")
        return
    if not yes:
        click.confirm(f"Update endpoint {existing.id}?", abort=True)
    target.client.v1.webhook_endpoints.update(existing.id, changes.update_params(wanted))
    click.echo(f"Updated endpoint {existing.id}.")
    if changes.enable:
        # Stripe does not send again what it created while the endpoint was disabled.
        click.echo(
            "It was disabled: for the events Stripe created meanwhile, run "
            f"`stripe-events backfill --stage {target.stage} --since <when it stopped>`."
        )


def retire(
    target: Target, old: stripe.WebhookEndpoint, new: stripe.WebhookEndpoint, kept: int
) -> None:
    """Untag the replaced endpoint, so that the stage has one endpoint again; keep it on.

    Deleting it now would drop the deliveries Stripe is still retrying to it.
    """
    target.client.v1.webhook_endpoints.update(
        old.id,
        {
            "description": f"replaced by {new.id}: delete once its pending deliveries are done",
            "metadata": {STAGE_TAG: ""},  # an empty value removes the key
        },
    )
    if kept:
        click.echo(
            f"The old endpoint {old.id} still delivers: the webhook verifies both, and "
            f"acknowledges the second copy of an event as a duplicate. Delete {old.id} in the "
            "Dashboard once its pending retries are done (up to 3 days); then the old secret "
            f"can go from {target.secret_param} (keep the first value)."
        )
    else:
        click.echo(
            f"The old endpoint {old.id} still delivers, but its secret was not in "
            f"{target.secret_param}, so the webhook refuses its deliveries; the new endpoint "
            f"sends the same events. Delete {old.id} in the Dashboard."
        )


def warn_api_version(changes: Diff, stage: str, url: str) -> None:
    if changes.api_version is None:
        return
    current, pinned = changes.api_version
    click.echo(
        f"! api_version: the endpoint sends events in {current}, the stripe package expects "
        f"{pinned}. Stripe sets an endpoint's version only when it creates it: "
        + recreate_advice(stage, url)
        + "."
    )


def warn_missing_secret(target: Target) -> None:
    """An existing endpoint's secret cannot be fetched again: the parameter must have it."""
    if parameter_type(target.ssm, target.secret_param) is not None:
        return
    click.echo(
        f"! {target.secret_param} does not exist, so the webhook cannot verify this "
        "endpoint's deliveries. Stripe returns a signing secret only when it creates an "
        "endpoint: reveal or roll it in the Dashboard (Developers → Webhooks → the endpoint) "
        f"and store it with `aws ssm put-parameter --name {target.secret_param} --type "
        "SecureString --overwrite --value …`; or run this command with --recreate."
    )


@click.group(name="endpoint")
def endpoint_group() -> None:
    """The stage's webhook endpoint in Stripe."""


@endpoint_group.command(name="sync")
@deployed_stage_option
@click.option(
    "--url",
    required=True,
    metavar="URL",
    help=f"The webhook: the URL `chalice deploy` prints, then {WEBHOOK_PATH.lstrip('/')}.",
)
@click.option("--yes", is_flag=True, help="Do not ask before changing the endpoint.")
@click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")
@click.option(
    "--recreate",
    is_flag=True,
    help="Create a new endpoint (new API version, new secret) and untag the old one.",
)
def sync_command(stage: str, url: str, yes: bool, dry_run: bool, recreate: bool) -> None:
    """Create or update the stage's Stripe endpoint to match the code.

    It enables the event types the routers handle (`stripe-events enabled-events`),
    pins the API version of the installed stripe package at creation, and stores the
    signing secret in the stage's SSM parameter (STRIPE_WEBHOOK_SECRET_PARAM). When the
    app handles thin types, it does the same for an event destination with thin
    payloads, whose secret goes into the parameter beside the endpoint's. It shows the
    difference first and asks before it changes anything. Uses the stage's
    STRIPE_API_KEY_PARAM key; STRIPE_API_BASE points it at another Stripe-compatible server.
    """
    check_url(url)
    target = load_target(stage)
    wanted = Wanted(stage, url, wanted_event_types(), pinned_api_version())
    thin = WantedDestination(stage, url, wanted_event_types(thin=True))
    try:
        sync(
            target,
            wanted,
            yes=yes,
            dry_run=dry_run,
            recreate=recreate,
            keep_secrets=bool(thin.enabled_events),
        )
        if thin.enabled_events:
            sync_destination(target, thin, yes=yes, dry_run=dry_run)
    except stripe.AuthenticationError:
        raise EndpointError(
            f"Stripe refused the API key of stage {stage} (in {target.settings.api_key_param}); "
            "store a valid key there."
        ) from None
    except stripe.PermissionError:
        raise EndpointError(
            f"the API key of stage {stage} may not manage webhook endpoints: give the "
            "restricted key write access to Webhook Endpoints."
        ) from None
    except stripe.StripeError as error:
        raise EndpointError(f"Stripe answered: {error.user_message or error}") from None
