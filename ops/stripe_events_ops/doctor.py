"""`stripe-events doctor --stage prod`: is the stage ready to receive Stripe's events?

It checks the stage's settings, its SSM parameters, the AWS resources it names, and its
Stripe endpoint (found as `endpoint sync` finds it), and prints one line per check: "✓"
when it passes, "✗ <problem> — <fix>" when it does not, "-" for a check that could not
run because an earlier one failed (no AWS credentials, no API key). Each check runs on
its own, so that one failure does not hide the others; an unexpected error in a check
becomes that check's "✗" line. It exits 1 when any check failed. It changes nothing and
never prints a secret.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import click
import stripe

from stripe_events._errors import SettingsError
from stripe_events._schema import (
    INDEX_KEY_SCHEMA,
    KEY_SCHEMA,
    LEDGER_INDEX,
    TTL_ATTRIBUTE,
)
from stripe_events._settings import LOCAL_SECRET, Settings
from stripe_events_ops import project
from stripe_events_ops.clients import AwsClients, stripe_client
from stripe_events_ops.destination import find_destination, list_destinations
from stripe_events_ops.endpoint import (
    endpoint_field,
    find_endpoint,
    list_endpoints,
    recreate_advice,
)
from stripe_events_ops.endpoint_target import (
    STAGE_TAG,
    EndpointError,
    error_code,
    is_live_key,
    mode_name,
    parameter_secrets,
    parameter_type,
    pinned_api_version,
    wanted_event_types,
)
from stripe_events_ops.options import deployed_stage_option
from stripe_events_ops.template import EVENT_BUS

PASSED = "✓"
FAILED = "✗"
SKIPPED = "-"
# A problem line lists this many event types, then says how many more there are.
SHOWN_TYPES = 6


@dataclass
class Report:
    passed: int = 0
    problems: list[str] = field(default_factory=list)

    def ok(self, text: str) -> None:
        self.passed += 1
        click.echo(f"{PASSED} {text}")

    def problem(self, text: str, fix: str = "") -> None:
        line = f"{text} — {fix}" if fix else text
        self.problems.append(line)
        click.echo(f"{FAILED} {line}")

    def skip(self, text: str) -> None:
        click.echo(f"{SKIPPED} {text}")

    def guard(self, what: str, check: Callable[[], None], fix: str) -> None:
        """Run one check; an error it did not expect is its problem, not the others'."""
        try:
            check()
        except Exception as error:
            self.problem(f"could not check {what}: {describe(error)}", fix)


def describe(error: Exception) -> str:
    response = getattr(error, "response", None)
    if isinstance(response, dict) and "Error" in response:
        return f"{error_code(error)}: {response['Error'].get('Message', '')}".rstrip(": ")
    if isinstance(error, stripe.StripeError):
        return error.user_message or str(error)
    return f"{type(error).__name__}: {error}"


def listed(types: Iterable[str]) -> str:
    names = sorted(types)
    shown = ", ".join(names[:SHOWN_TYPES])
    more = len(names) - SHOWN_TYPES
    return f"{shown} and {more} more" if more > 0 else shown


@dataclass
class Doctor:
    stage: str
    url: str | None
    report: Report = field(default_factory=Report)

    @property
    def infra_fix(self) -> str:
        return (
            f"run `stripe-events infra up --stage {self.stage}`, or deploy with "
            "infra/merge.json (docs/deploy.md)"
        )

    def sync_fix(self, url: str | None) -> str:
        return f"run `stripe-events endpoint sync --stage {self.stage} --url {url or '<URL>'}`"

    # --- settings ------------------------------------------------------------------------

    def settings(self) -> Settings | None:
        # As load_events merges them: the stage's variables over the shell's.
        try:
            env = {**os.environ, **project.stage_environment(self.stage, project.current_project())}
        except SettingsError as error:
            raise click.UsageError(str(error)) from None
        try:
            settings = Settings.from_env(env)
        except SettingsError as error:
            self.report.problem(
                f"stage {self.stage}'s settings: {error}",
                "fix its environment_variables in .chalice/config.json",
            )
            return None
        if settings.is_local:
            raise click.UsageError(
                f"stage {self.stage!r} runs on the local bus, on this machine: there is nothing "
                "on AWS or in Stripe to check. Pick a deployed stage, such as dev or prod."
            )
        self.report.ok(f"stage {self.stage}'s settings read from .chalice/config.json")
        return settings

    def plain_secrets(self, settings: Settings) -> bool:
        try:
            settings.check_stage()
        except SettingsError as error:  # its message names the variable and the fix
            self.report.problem(str(error))
            return False
        self.report.ok("no secret in plain text: the stage reads them from SSM")
        return True

    def app_loads(self) -> None:
        try:
            project.load_events(self.stage, project.current_project())
        except Exception as error:
            self.report.problem(
                f"app.py does not load with stage {self.stage}'s settings: {describe(error)}",
                "fix that first: every function of the stage would fail the same way",
            )
            return
        self.report.ok(f"app.py loads with stage {self.stage}'s settings")

    def wiring(self) -> None:
        """Every resource module runs in a function, and what derives from app.py is fresh."""
        from stripe_events_ops.infra import stale_files

        root = project.current_project()
        for module in project.unwired_routers(root):
            self.report.problem(
                f"{module} has a router that no function of app.py dispatches: its handlers "
                "never run",
                "declare its function in app.py with @app.on_cw_event (docs/handlers.md), "
                "then run `stripe-events infra render`",
            )
        changed, unused = stale_files(root)
        if changed or unused:
            stale = ", ".join(str(p.relative_to(root)) for p in (*changed, *unused))
            self.report.problem(
                f"files generated from app.py are stale: {stale}",
                "run `stripe-events infra render`",
            )
        else:
            self.report.ok("every resource module runs in a function; infra render is up to date")

    def names(self, settings: Settings) -> None:
        missing = False
        for variable, value, fix in (
            ("STRIPE_EVENTS_TABLE", settings.table, self.infra_fix),
            ("STRIPE_EVENTS_BUCKET", settings.bucket, self.infra_fix),
            ("STRIPE_EVENTS_TOPIC_ARN", settings.topic_arn, self.infra_fix),
            (
                "STRIPE_WEBHOOK_SECRET_PARAM",
                settings.webhook_secret_param,
                "set it in .chalice/config.json, e.g. to "
                f"/stripe-events-{self.stage}/webhook-secret",
            ),
            (
                "STRIPE_API_KEY_PARAM",
                settings.api_key_param,
                f"set it in .chalice/config.json, e.g. to /stripe-events-{self.stage}/api-key",
            ),
        ):
            if not value:
                missing = True
                self.report.problem(f"stage {self.stage} sets no {variable}", fix)
        if settings.bus != EVENT_BUS:
            missing = True
            self.report.problem(
                f"STRIPE_EVENTS_BUS is {settings.bus!r}, but the functions' rules listen on "
                f"the {EVENT_BUS} bus only (aws/chalice #1755)",
                f"set it to {EVENT_BUS} in .chalice/config.json",
            )
        if not missing:
            self.report.ok(
                f"stage {self.stage} names its table, bucket, topic and SSM parameters, "
                f"and the {EVENT_BUS} bus"
            )

    # --- AWS -----------------------------------------------------------------------------

    def credentials(self, aws: AwsClients) -> bool:
        try:
            account = aws("sts").get_caller_identity()["Account"]
        except Exception as error:
            self.report.problem(
                f"no usable AWS credentials ({describe(error)})",
                "configure them as for `chalice deploy` (AWS_PROFILE, or `aws configure`)",
            )
            return False
        self.report.ok(f"AWS credentials: account {account}, region {aws.region}")
        return True

    def parameter(self, ssm: Any, name: str, what: str, fix_missing: str) -> bool:
        """Whether the parameter exists; reported with its type."""
        kind = parameter_type(ssm, name)
        if kind is None:
            self.report.problem(f"parameter {name} ({what}) does not exist", fix_missing)
            return False
        if kind != "SecureString":
            self.report.problem(
                f"parameter {name} ({what}) is a {kind}, so it is stored unencrypted",
                f"store it again as a SecureString: aws ssm put-parameter --name {name} "
                "--type SecureString --overwrite --value …",
            )
        else:
            self.report.ok(f"parameter {name} ({what}) is a SecureString")
        return True

    def webhook_secret(self, ssm: Any, settings: Settings) -> None:
        name = settings.webhook_secret_param
        fix = (
            f"{self.sync_fix(self.url)} to create the endpoint and store its secret; for an "
            "endpoint that exists, reveal its secret in the Dashboard (Developers → Webhooks) "
            f"and store it: aws ssm put-parameter --name {name} --type SecureString --value …"
        )
        if not self.parameter(ssm, name, "the signing secret", fix):
            return
        secrets = parameter_secrets(ssm, name)
        if LOCAL_SECRET in secrets:
            self.report.problem(
                f"parameter {name} holds the local development secret",
                "store the signing secret of the stage's Stripe endpoint there (from the "
                f"Dashboard, or {self.sync_fix(self.url)} --recreate)",
            )
        elif not secrets or not all(s.startswith("whsec_") for s in secrets):
            self.report.problem(
                f"parameter {name} holds something other than signing secrets (whsec_…)",
                "store the endpoint's signing secret(s) there, separated by commas",
            )

    def api_key(self, ssm: Any, settings: Settings) -> str:
        """The stage's Stripe API key, checked; "" when there is none to use."""
        name = settings.api_key_param
        fix = (
            f"aws ssm put-parameter --name {name} --type SecureString --value … (a restricted "
            "key with read access to Events and write access to Webhook Endpoints)"
        )
        if not self.parameter(ssm, name, "the Stripe API key", fix):
            return ""
        value = ssm.get_parameter(Name=name, WithDecryption=True)["Parameter"]["Value"]
        key = str(value).strip()
        if not key.startswith(("sk_", "rk_")):
            self.report.problem(
                f"parameter {name} holds no Stripe secret or restricted key (sk_…, rk_…)", fix
            )
            return ""
        live = is_live_key(key)
        if settings.livemode is not None and settings.livemode != live:
            self.report.problem(
                f"parameter {name} holds a {mode_name(live)} key, but stage {self.stage} "
                f"accepts {mode_name(settings.livemode)} events only (STRIPE_LIVEMODE)",
                "store a key of the stage's mode: the other mode's endpoint sends events "
                "the webhook refuses",
            )
            return ""
        return key

    def event_bus(self, events: Any, bus: str) -> None:
        try:
            events.describe_event_bus(Name=bus)
        except events.exceptions.ResourceNotFoundException:
            self.report.problem(
                f"event bus {bus} does not exist",
                f"set STRIPE_EVENTS_BUS to {EVENT_BUS} in .chalice/config.json",
            )
            return
        self.report.ok(f"event bus {bus} exists")

    def table(self, dynamodb: Any, name: str) -> None:
        try:
            table = dynamodb.describe_table(TableName=name)["Table"]
        except dynamodb.exceptions.ResourceNotFoundException:
            self.report.problem(f"table {name} does not exist", self.infra_fix)
            return
        keys = tuple((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"])
        if keys != KEY_SCHEMA:
            self.report.problem(
                f"table {name} has the keys {keys}; the app needs {KEY_SCHEMA}",
                "point STRIPE_EVENTS_TABLE at another name and run infra up, or delete it",
            )
            return
        status = table.get("TableStatus")
        if status != "ACTIVE":
            self.report.problem(
                f"table {name} is {status}, not ACTIVE", "wait a minute and run doctor again"
            )
        else:
            self.report.ok(f"table {name} exists (ACTIVE)")
        self.ledger_index(name, table)
        ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
        on = ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING")
        if on and ttl.get("AttributeName") == TTL_ATTRIBUTE:
            self.report.ok(f"table {name} expires the claims of dead runs by {TTL_ATTRIBUTE} (TTL)")
        else:
            self.report.problem(
                f"table {name} has no TTL on {TTL_ATTRIBUTE}: the claims of dead runs are kept",
                self.infra_fix,
            )
        backups = dynamodb.describe_continuous_backups(TableName=name)
        pitr = backups["ContinuousBackupsDescription"].get("PointInTimeRecoveryDescription", {})
        if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
            self.report.ok(f"table {name} has point-in-time recovery")
        else:
            self.report.problem(
                f"table {name} has no point-in-time recovery: a lost ledger could not be restored",
                self.infra_fix,
            )

    def ledger_index(self, name: str, table: dict[str, Any]) -> None:
        """The index that `ledger`, `failures` and `replay --failed` query."""
        found = [
            i for i in table.get("GlobalSecondaryIndexes", []) if i["IndexName"] == LEDGER_INDEX
        ]
        if not found:
            self.report.problem(
                f"table {name} has no index {LEDGER_INDEX}: `ledger`, `failures` and "
                "`replay --failed` cannot list events",
                f"{self.infra_fix}; then index the events recorded before it "
                "(docs/operations.md, Queries that scale)",
            )
            return
        [index] = found
        keys = tuple((k["AttributeName"], k["KeyType"]) for k in index["KeySchema"])
        if keys != INDEX_KEY_SCHEMA:
            self.report.problem(
                f"index {LEDGER_INDEX} of table {name} has the keys {keys}; the app needs "
                f"{INDEX_KEY_SCHEMA}",
                f"delete the index (aws dynamodb update-table --table-name {name} "
                "--global-secondary-index-updates "
                f'\'[{{"Delete": {{"IndexName": "{LEDGER_INDEX}"}}}}]\'), then '
                f"{self.infra_fix}",
            )
            return
        status = index.get("IndexStatus")
        if status == "ACTIVE":
            self.report.ok(f"table {name} has the index {LEDGER_INDEX} (ACTIVE)")
        else:
            self.report.problem(
                f"index {LEDGER_INDEX} of table {name} is {status}, not ACTIVE: until "
                "DynamoDB has built it, `ledger` and `failures` cannot read it",
                "wait (minutes for a large table) and run doctor again",
            )

    def bucket(self, s3: Any, name: str) -> None:
        from botocore.exceptions import ClientError

        try:
            s3.head_bucket(Bucket=name)
        except ClientError as error:
            code = error_code(error)
            if code in ("404", "NoSuchBucket", "NotFound"):
                self.report.problem(f"bucket {name} does not exist", self.infra_fix)
                return
            if code in ("403", "AccessDenied", "Forbidden"):
                self.report.problem(
                    f"bucket {name} exists, but these credentials may not read it",
                    "bucket names are global: if another account owns it, set "
                    "STRIPE_EVENTS_BUCKET to a name of your own and run infra up",
                )
                return
            raise
        self.report.ok(f"bucket {name} exists")

    def topic(self, sns: Any, arn: str) -> None:
        try:
            sns.get_topic_attributes(TopicArn=arn)
        except sns.exceptions.NotFoundException:
            self.report.problem(f"topic {arn} does not exist", self.infra_fix)
            return
        except sns.exceptions.InvalidParameterException:
            self.report.problem(
                f"STRIPE_EVENTS_TOPIC_ARN {arn!r} is not a topic ARN", self.infra_fix
            )
            return
        self.report.ok(f"topic {arn} exists")

    # --- Stripe --------------------------------------------------------------------------

    def endpoint(self, api_key: str, settings: Settings) -> None:
        client = stripe_client(api_key)
        mode = mode_name(is_live_key(api_key))
        try:
            endpoints = list_endpoints(client)
        except stripe.AuthenticationError:
            self.report.problem(
                f"Stripe refused the API key in {settings.api_key_param}", "store a valid key there"
            )
            return
        try:
            found = find_endpoint(endpoints, self.stage, self.url)
        except EndpointError as error:  # several candidates: the message says what to do
            self.report.problem(error.message)
            return
        if found is None:
            where = f" nor the URL {self.url}" if self.url else ""
            self.report.problem(
                f"no Stripe endpoint ({mode}) has metadata {STAGE_TAG}={self.stage}{where}",
                self.sync_fix(self.url),
            )
            return
        url = str(endpoint_field(found, "url") or "")
        fix = self.sync_fix(self.url or url)
        self.report.ok(f"Stripe endpoint {found.id} ({mode}) sends to {url}")
        if self.url and url != self.url:
            self.report.problem(f"endpoint {found.id} sends to {url}, not to {self.url}", fix)
        if endpoint_field(found, "status") == "enabled":
            self.report.ok(f"endpoint {found.id} is enabled")
        else:
            self.report.problem(
                f"endpoint {found.id} is disabled: Stripe sends it nothing",
                f"see why in the Dashboard (its failed deliveries), {fix} to enable it, then "
                f"`stripe-events backfill --stage {self.stage} --since <when it stopped>`",
            )
        self.event_types(found.id, set(endpoint_field(found, "enabled_events") or []), fix)
        version = endpoint_field(found, "api_version") or "the account's default"
        if version == pinned_api_version():
            self.report.ok(f"endpoint {found.id} uses API version {version}, as the stripe package")
        else:
            self.report.problem(
                f"endpoint {found.id} sends events in API version {version}, the stripe package "
                f"expects {pinned_api_version()}",
                recreate_advice(self.stage, self.url or url),
            )

    def thin_destination(self, api_key: str) -> None:
        """The stage's event destination with thin payloads, when the app handles thin types."""
        wanted = set(wanted_event_types(thin=True))
        if not wanted:
            return
        fix = self.sync_fix(self.url)
        found = find_destination(list_destinations(stripe_client(api_key)), self.stage)
        if found is None:
            self.report.problem(
                f"no thin event destination has metadata {STAGE_TAG}={self.stage}: the "
                f"{len(wanted)} thin type(s) the routers handle never arrive",
                fix,
            )
            return
        if found.status == "enabled":
            self.report.ok(f"thin event destination {found.id} is enabled")
        else:
            self.report.problem(f"thin event destination {found.id} is disabled", fix)
        enabled = set(found.enabled_events or [])
        if enabled == wanted:
            self.report.ok(
                f"thin event destination {found.id} sends exactly the {len(wanted)} thin "
                "type(s) the routers handle"
            )
        else:
            missing, extra = listed(wanted - enabled), listed(enabled - wanted)
            self.report.problem(
                f"thin event destination {found.id} differs: missing {missing or 'none'}, "
                f"unused {extra or 'none'}",
                fix,
            )

    def event_types(self, endpoint_id: str, enabled: set[str], fix: str) -> None:
        wanted = set(wanted_event_types())
        if "*" in enabled:
            self.report.problem(
                f"endpoint {endpoint_id} sends every event type ('*'), most to no handler",
                f"{fix} to enable only the {len(wanted)} types the routers handle",
            )
            return
        missing, extra = wanted - enabled, enabled - wanted
        if missing:
            self.report.problem(
                f"endpoint {endpoint_id} does not send {len(missing)} type(s) the routers "
                f"handle: {listed(missing)}",
                fix,
            )
        else:
            self.report.ok(
                f"endpoint {endpoint_id} sends every type the routers handle ({len(wanted)})"
            )
        if extra:
            self.report.problem(
                f"endpoint {endpoint_id} sends {len(extra)} type(s) no handler uses: "
                f"{listed(extra)}",
                f"{fix} (each would cost a delivery, a function call and a PutEvents for nothing)",
            )
        else:
            self.report.ok(f"endpoint {endpoint_id} sends no type that no handler uses")

    # --- all of it -----------------------------------------------------------------------

    def run(self) -> Report:
        report = self.report
        settings = self.settings()
        if settings is None:
            report.skip("nothing else checked: the other checks need the stage's settings")
            return report
        if self.plain_secrets(settings):
            self.app_loads()
            self.wiring()
        else:
            report.skip("app.py not loaded: it refuses secrets in plain text (see above)")
        self.names(settings)
        aws = AwsClients(settings.region)
        if not self.credentials(aws):
            report.skip("AWS resources and the Stripe endpoint not checked: no AWS credentials")
            return report
        aws_fix = "check the AWS credentials and their permissions"
        ssm = aws("ssm")
        if settings.webhook_secret_param:
            report.guard(
                "the signing secret's parameter",
                lambda: self.webhook_secret(ssm, settings),
                aws_fix,
            )
        api_key = ""
        if settings.api_key_param:

            def check_key() -> None:
                nonlocal api_key
                api_key = self.api_key(ssm, settings)

            report.guard("the API key's parameter", check_key, aws_fix)
        else:
            api_key = settings.api_key
        report.guard(
            "the event bus",
            lambda: self.event_bus(aws("events"), settings.bus),
            aws_fix,
        )
        resources: list[tuple[str, str, Callable[[], None]]] = [
            (
                "table",
                settings.table,
                lambda: self.table(aws("dynamodb"), settings.table),
            ),
            (
                "bucket",
                settings.bucket,
                lambda: self.bucket(aws("s3"), settings.bucket),
            ),
            (
                "topic",
                settings.topic_arn,
                lambda: self.topic(aws("sns"), settings.topic_arn),
            ),
        ]
        for what, name, check in resources:
            if name:  # an unset name is reported above
                report.guard(f"the {what} {name}", check, aws_fix)
        if not api_key:
            report.skip("Stripe endpoint not checked: it needs the stage's API key (see above)")
        else:
            report.guard(
                "the Stripe endpoint",
                lambda: self.endpoint(api_key, settings),
                f"check the network, and the API key in {settings.api_key_param}",
            )
            report.guard(
                "the thin event destination",
                lambda: self.thin_destination(api_key),
                f"check the network, and the API key in {settings.api_key_param}",
            )
        return report


@click.command(name="doctor")
@deployed_stage_option
@click.option(
    "--url",
    default=None,
    metavar="URL",
    help="The webhook's URL: also find the endpoint by it, and check that it sends there.",
)
def doctor_command(stage: str, url: str | None) -> None:
    """Check a deployed stage: settings, SSM parameters, AWS resources, Stripe endpoint.

    One line per check, "✓" or "✗ problem — fix"; exits 1 when anything needs fixing.
    Changes nothing. Needs the AWS credentials you deploy with; reads the Stripe API key
    from the stage's parameter (STRIPE_API_BASE points it at another server).
    """
    report = Doctor(stage, url).run()
    if report.problems:
        click.echo(f"\n{len(report.problems)} problem(s) to fix; {report.passed} check(s) passed.")
        sys.exit(1)
    click.echo(f"\nAll {report.passed} checks passed: stage {stage} is ready for Stripe's events.")
