"""`stripe-events infra`: the generated files, and a stage's resources for `chalice deploy`.

- `render` writes infra/merge.json (`template.merge_template`), each function's policy
  file, and their entries in `.chalice/config.json`, from app.py's functions; `make test`
  fails while any of them is stale.
- `up --stage dev` deploys `template.stage_stack_template` as the CloudFormation stack
  `{app}-{stage}`, waits for it while it prints each resource's progress, and writes the
  names from the stack's outputs into the stage's environment in `.chalice/config.json`.
  `down` deletes the stack, and its data with it.

CloudFormation does all the work: nothing here creates or changes a resource itself.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from stripe_events._errors import SettingsError
from stripe_events._observability import SERVICE_VARIABLE
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_ops.clients import NO_REGION, aws_region
from stripe_events_ops.index_ledger import index_earlier_items
from stripe_events_ops.monitoring import ALARM_EMAIL
from stripe_events_ops.options import deployed_stage_option, stage_events
from stripe_events_ops.project import (
    CONFIG,
    Stage,
    current_project,
    deployed_stages,
    function_handlers,
    load_stage,
    read_config,
)
from stripe_events_ops.template import (
    API_HANDLER,
    Names,
    file_policy,
    merge_template,
    policy_file,
    stage_stack_template,
)

MERGE_TEMPLATE = Path("infra") / "merge.json"
# CloudFormation's own statuses: the stack is done (well or not) in one of these.
DONE = ("CREATE_COMPLETE", "UPDATE_COMPLETE", "DELETE_COMPLETE")
FAILED_SUFFIXES = ("_FAILED", "ROLLBACK_COMPLETE")
# A new table, bucket and queue take a minute or two; give up well after that.
STACK_WAIT_SECONDS = 30 * 60
POLL_SECONDS = 5.0
# index-ledger reports its progress every so many items (a scan reads about 1 MB a request).
PROGRESS_EVERY = 1000
# What a stage's functions read, and the output of the stack that names it.
STAGE_VARIABLES = {
    "STRIPE_EVENTS_TABLE": "TableName",
    "STRIPE_EVENTS_BUCKET": "BodiesBucketName",
    "STRIPE_EVENTS_TOPIC_ARN": "NotificationsTopicArn",
}


def dump_json(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


# --- infra render: the generated files ----------------------------------------------------


@dataclass(frozen=True)
class Size:
    """A function's memory (MB; Lambda gives CPU in proportion) and timeout (seconds)."""

    memory_mb: int
    timeout_seconds: int


# From `make bench` (docs/deploy.md, "Sizing the functions"): every function peaks under 70 MB.
# 256 MB gives a cold start about a seventh of a core, twice 128 MB's, for what is CPU
# work (imports, JSON, signatures), at the same cost per unit of it. The webhook stops
# at Stripe's own wait for an answer, 10 s; an event function at Chalice's default 60 s,
# which is also how long a crashed run's claim holds.
WEBHOOK_SIZE = Size(memory_mb=256, timeout_seconds=10)
EVENT_FUNCTION_SIZE = Size(memory_mb=256, timeout_seconds=60)


def planned_files(project_dir: Path) -> dict[Path, str]:
    """Every generated file and its content: the merge template, the policy files, the config.

    In the config, each deployed stage's `lambda_functions` names each function's policy
    file, memory and timeout; entries of functions that no longer exist lose them. Its
    environment names the service its metrics are counted under, and `xray` turns on the
    tracing the template has (the functions' and the API stage's) for `chalice deploy`.
    """
    handlers = function_handlers(project_dir)
    functions = list(handlers)
    config = read_config(project_dir)
    files = {project_dir / MERGE_TEMPLATE: dump_json(merge_template(handlers))}
    for stage in deployed_stages(project_dir):
        stage_config = config["stages"][stage.name]
        # What the stage's metrics are found by (observability.py): its stack's name.
        stage_config.setdefault("environment_variables", {})[SERVICE_VARIABLE] = stage.prefix
        stage_config["xray"] = True
        lambda_functions: dict[str, Any] = stage_config.setdefault("lambda_functions", {})
        for name in list(lambda_functions):
            if name not in (API_HANDLER, *functions):
                for generated in ("iam_policy_file", "lambda_memory_size", "lambda_timeout"):
                    lambda_functions[name].pop(generated, None)
                if not lambda_functions[name]:
                    del lambda_functions[name]
        for function in (API_HANDLER, *functions):
            filename = policy_file(stage, function)
            files[project_dir / ".chalice" / filename] = dump_json(file_policy(stage, function))
            size = WEBHOOK_SIZE if function == API_HANDLER else EVENT_FUNCTION_SIZE
            lambda_functions.setdefault(function, {}).update(
                iam_policy_file=filename,
                lambda_memory_size=size.memory_mb,
                lambda_timeout=size.timeout_seconds,
            )
    files[project_dir / CONFIG] = dump_json(config)
    return files


def stale_files(project_dir: Path) -> tuple[dict[Path, str], list[Path]]:
    """(files whose content differs from the plan, policy files no function uses)."""
    planned = planned_files(project_dir)
    changed = {
        path: text
        for path, text in planned.items()
        if not path.exists() or path.read_text(encoding="utf-8") != text
    }
    prefixes = [f"policy-{stage.name}-" for stage in deployed_stages(project_dir)]
    unused = [
        path
        for path in sorted((project_dir / ".chalice").glob("policy-*.json"))
        if path not in planned and any(path.name.startswith(p) for p in prefixes)
    ]
    return changed, unused


# --- infra up / down: the stage's stack, for `chalice deploy` --------------------------------


class Aws:
    """The clients for one stage, in the region and account of the current credentials."""

    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        region = aws_region()
        if not region:
            raise click.ClickException(NO_REGION)
        session = boto3.session.Session(region_name=region)
        self.region: str = region
        self.partition: str = session.get_partition_for_region(self.region)
        config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard"})
        self.client: Callable[[str], Any] = lambda service: session.client(service, config=config)
        self.account: str = self.client("sts").get_caller_identity()["Account"]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


Echo = Callable[[str], None]


class StackFailed(click.ClickException):
    """CloudFormation could not bring the stack to the state asked for."""


def describe_stack(cloudformation: Any, name: str) -> dict[str, Any] | None:
    try:
        [stack] = cloudformation.describe_stacks(StackName=name)["Stacks"]
    except Exception as error:
        if "does not exist" in str(error):
            return None
        raise
    return dict(stack)


def stack_status(cloudformation: Any, name: str) -> str | None:
    stack = describe_stack(cloudformation, name)
    return None if stack is None else str(stack["StackStatus"])


def wait_for_stack(
    cloudformation: Any,
    name: str,
    since: datetime | None,
    echo: Echo,
    sleep: Callable[[float], None] = time.sleep,
) -> str:
    """Print the stack's events after `since` as they come, until it is done; its status.

    Raises StackFailed with each failed resource's reason when it ends badly.
    """
    seen: set[str] = set()
    failures: list[str] = []
    deadline = time.monotonic() + STACK_WAIT_SECONDS
    while True:
        status = stack_status(cloudformation, name) or "DELETE_COMPLETE"
        events = _new_events(cloudformation, name, since, seen)
        for event in events:
            reason = event.get("ResourceStatusReason") or ""
            line = f"  {event['LogicalResourceId']} ({event['ResourceType']}): "
            echo(line + event["ResourceStatus"] + (f": {reason}" if reason else ""))
            if event["ResourceStatus"].endswith("_FAILED"):
                failures.append(f"{event['LogicalResourceId']}: {reason or 'failed'}")
        if not status.endswith("_IN_PROGRESS"):
            break
        if time.monotonic() > deadline:
            raise StackFailed(f"stack {name} is still {status} after {STACK_WAIT_SECONDS} s")
        sleep(POLL_SECONDS)
    if status.endswith(FAILED_SUFFIXES) or status not in DONE:
        detail = "; ".join(failures) or "see its events in the CloudFormation console"
        raise StackFailed(f"stack {name} ended {status}: {detail}")
    return status


def _events(cloudformation: Any, name: str) -> list[dict[str, Any]]:
    """The stack's events, newest first; none for a stack that is gone."""
    try:
        pages = cloudformation.get_paginator("describe_stack_events").paginate(StackName=name)
        return [e for page in pages for e in page["StackEvents"]]
    except Exception as error:
        if "does not exist" in str(error):
            return []
        raise


def last_event_time(cloudformation: Any, name: str) -> datetime | None:
    """When the stack's newest event happened, by CloudFormation's clock (not ours)."""
    events = _events(cloudformation, name)
    return max((e["Timestamp"] for e in events), default=None)


def _new_events(
    cloudformation: Any, name: str, since: datetime | None, seen: set[str]
) -> list[dict[str, Any]]:
    """The stack's events after `since` not printed yet, oldest first."""
    events = _events(cloudformation, name)
    fresh = [
        e for e in events if (since is None or e["Timestamp"] > since) and e["EventId"] not in seen
    ]
    seen.update(e["EventId"] for e in fresh)
    return sorted(fresh, key=lambda e: e["Timestamp"])


def deploy_stack(
    cloudformation: Any,
    name: str,
    template: dict[str, Any],
    parameters: dict[str, str | None],
    echo: Echo,
    sleep: Callable[[float], None] = time.sleep,
) -> dict[str, str]:
    """Create or update the stack, wait for it; its outputs.

    A parameter given as None keeps the value the stack has (its default when the stack
    is new, or older than the parameter).
    """
    stack = describe_stack(cloudformation, name) or {}
    status = stack.get("StackStatus")
    has = (
        set()
        if status == "ROLLBACK_COMPLETE"
        else {p["ParameterKey"] for p in stack.get("Parameters", [])}
    )
    given = {k: v for k, v in parameters.items() if v is not None}
    kept = [k for k, v in parameters.items() if v is None and k in has]
    arguments = {
        "StackName": name,
        "TemplateBody": json.dumps(template),
        "Parameters": [{"ParameterKey": k, "ParameterValue": v} for k, v in given.items()]
        + [{"ParameterKey": k, "UsePreviousValue": True} for k in kept],
        # The partner bus's forwarding role has no fixed name.
        "Capabilities": ["CAPABILITY_IAM"],
    }
    if status == "ROLLBACK_COMPLETE":  # a first creation that failed: CloudFormation's rule
        echo(f"stack {name} failed to create before; deleting it to start again")
        since = last_event_time(cloudformation, name)
        cloudformation.delete_stack(StackName=name)
        wait_for_stack(cloudformation, name, since, echo, sleep)
        status = None
    since = last_event_time(cloudformation, name)
    if status is None:
        echo(f"creating stack {name}")
        cloudformation.create_stack(**arguments)
    else:
        try:
            cloudformation.update_stack(**arguments)
        except Exception as error:
            if "No updates are to be performed" not in str(error):
                raise
            echo(f"stack {name} is up to date")
            return stack_outputs(cloudformation, name)
        echo(f"updating stack {name}")
    final = wait_for_stack(cloudformation, name, since, echo, sleep)
    echo(f"stack {name}: {final}")
    return stack_outputs(cloudformation, name)


def stack_outputs(cloudformation: Any, name: str) -> dict[str, str]:
    [stack] = cloudformation.describe_stacks(StackName=name)["Stacks"]
    return {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])}


def deployed_functions(lambda_: Any, names: Names, functions: Iterable[str]) -> list[str]:
    """The event functions `chalice deploy` has made (their names are known in advance)."""
    found = []
    for function in functions:
        try:
            lambda_.get_function(FunctionName=names.function(function))
        except lambda_.exceptions.ResourceNotFoundException:
            continue
        found.append(function)
    return found


def check_parameter(ssm: Any, name: str, what: str, hint: str = "") -> list[str]:
    """Secrets are never created here: say whether the parameter is there, and how to add it."""
    if not name:
        return []
    try:
        kind = ssm.get_parameter(Name=name)["Parameter"]["Type"]
    except ssm.exceptions.ParameterNotFound:
        return [
            f"parameter {name} is missing ({what}{hint}): aws ssm put-parameter "
            f"--type SecureString --name {name} --value ..."
        ]
    if kind != "SecureString":
        return [f"parameter {name} is a {kind}: store {what} as a SecureString"]
    return [f"parameter {name} exists"]


def set_stage_variables(project_dir: Path, stage: str, values: dict[str, str]) -> list[str]:
    """Write the account's names into the stage's environment in .chalice/config.json."""
    config = read_config(project_dir)
    env = config["stages"][stage].setdefault("environment_variables", {})
    changed = {name: value for name, value in values.items() if env.get(name) != value}
    if not changed:
        return []
    env.update(changed)
    (project_dir / CONFIG).write_text(dump_json(config), encoding="utf-8")
    return [f"{CONFIG}: stage {stage}: {name} = {value}" for name, value in changed.items()]


def infra_up(
    stage: Stage,
    project: Path,
    functions: Mapping[str, Sequence[str]],
    partner_source: str,
    echo: Echo,
    sleep: Callable[[float], None] = time.sleep,
    alarm_email: str | None = None,
) -> None:
    """`functions`: the app's event functions, each with its handlers. `alarm_email`:
    None keeps the address the stack has."""
    aws = Aws()
    names = Names(stage.prefix, aws.account)
    deployed = deployed_functions(aws.client("lambda"), names, functions)
    outputs = deploy_stack(
        aws.client("cloudformation"),
        stage.prefix,
        # `chalice deploy` names the REST API after the app.
        stage_stack_template({f: functions[f] for f in deployed}, stage.app),
        {"StripePartnerEventSource": partner_source, ALARM_EMAIL: alarm_email},
        echo,
        sleep,
    )
    missing = [f for f in functions if f not in deployed]
    if deployed:
        echo(f"failed events of {', '.join(deployed)} go to the dead-letter queue {names.queue}")
    if missing:
        echo(
            f"functions not deployed yet: {', '.join(missing)}; after `chalice deploy`, run "
            "`infra up` again to send their failed events to the dead-letter queue"
        )
    ssm = aws.client("ssm")
    for line in [
        *check_parameter(ssm, stage.webhook_secret_param, "the webhook's signing secret"),
        *check_parameter(
            ssm,
            stage.api_key_param,
            "a Stripe API key",
            "; or remove STRIPE_API_KEY_PARAM from the stage",
        ),
        *set_stage_variables(
            project,
            stage.name,
            {variable: outputs[output] for variable, output in STAGE_VARIABLES.items()},
        ),
    ]:
        echo(line)


def infra_down(stage: Stage, echo: Echo, sleep: Callable[[float], None] = time.sleep) -> None:
    aws = Aws()
    names = Names(stage.prefix, aws.account)
    cloudformation = aws.client("cloudformation")
    if stack_status(cloudformation, stage.prefix) is None:
        echo(f"stack {stage.prefix} does not exist")
        return
    # CloudFormation deletes a bucket only when it is empty: the bodies go first.
    emptied = empty_bucket(aws.client("s3"), names.bucket)
    echo(f"emptied bucket {names.bucket} ({emptied} object(s))")
    since = last_event_time(cloudformation, stage.prefix)
    echo(f"deleting stack {stage.prefix}")
    cloudformation.delete_stack(StackName=stage.prefix)
    echo(
        f"stack {stage.prefix}: {wait_for_stack(cloudformation, stage.prefix, since, echo, sleep)}"
    )


def empty_bucket(s3: Any, name: str) -> int:
    """Delete every object in the bucket, each version of it and each delete marker (the
    bucket is versioned, and CloudFormation deletes only an empty bucket); how many there
    were. None if the bucket is gone."""
    deleted = 0
    try:
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=name):
            versions = [
                {"Key": item["Key"], "VersionId": item["VersionId"]}
                for item in [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            ]
            if versions:  # a page holds at most 1,000 of them: what delete_objects takes
                s3.delete_objects(Bucket=name, Delete={"Objects": versions, "Quiet": True})
                deleted += len(versions)
    except s3.exceptions.NoSuchBucket:
        return 0
    return deleted


# --- the `stripe-events infra` commands ---------------------------------------------------


def _deployed_stage(name: str) -> Stage:
    try:
        stage = load_stage(name, current_project())
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    if not stage.deployed:
        raise click.UsageError(f"stage {name!r} runs on the local bus and needs no AWS resources")
    return stage


@click.group(name="infra")
def infra_group() -> None:
    """A stage's AWS resources: DynamoDB table, S3 bucket, SNS topic, dead-letter queue."""


@infra_group.command(name="up")
@deployed_stage_option
@click.option(
    "--partner-source",
    default="",
    metavar="aws.partner/stripe.com/ed_...",
    help="Also forward the events of Stripe's EventBridge destination to the functions.",
)
@click.option(
    "--alarm-email",
    default=None,
    metavar="ops@example.com",
    help="Send the stage's alarms to this address (AWS asks it to confirm); '' for none. "
    "Without the option, the address the stack has stays.",
)
def up_command(stage: str, partner_source: str, alarm_email: str | None) -> None:
    """Deploy the stage's resources for `chalice deploy`, as a CloudFormation stack.

    It writes their names (from the stack's outputs) into the stage's environment in
    .chalice/config.json. Run it again after the first `chalice deploy`: the functions'
    failed events then go to the dead-letter queue, and their alarms are made. Safe to
    run again.
    """
    chosen = _deployed_stage(stage)
    project = current_project()
    handlers = function_handlers(project)
    infra_up(chosen, project, handlers, partner_source, click.echo, alarm_email=alarm_email)


@infra_group.command(name="down")
@deployed_stage_option
@click.option("--yes", is_flag=True, help="Do not ask first.")
def down_command(stage: str, yes: bool) -> None:
    """Delete the stage's stack and its data (not its functions, nor its SSM parameters)."""
    chosen = _deployed_stage(stage)
    if not yes:
        click.confirm(
            f"Delete the stack of stage {stage} ({chosen.prefix}): its table, bucket, topic "
            "and queue, with the ledger and every stored body?",
            abort=True,
        )
    infra_down(chosen, click.echo)


@infra_group.command(name="index-ledger")
@deployed_stage_option
def index_ledger_command(stage: str) -> None:
    """Once, after upgrading from a version without the ledger index: give its keys to
    what that version recorded, so that `ledger` and `failures` list it. Scans the table."""
    _deployed_stage(stage)
    store = stage_events(stage).store
    if not isinstance(store, DynamoStore):
        raise click.UsageError(f"stage {stage!r} keeps its ledger in {type(store).__name__}")
    found = indexed = 0
    for done in index_earlier_items(store):
        found += 1
        indexed += done
        if found % PROGRESS_EVERY == 0:
            click.echo(f"... {found} items without index keys found, {indexed} indexed")
    changed = found - indexed
    click.echo(
        f"indexed {indexed} earlier items of table {store.table}"
        + (
            f"; {changed} had changed meanwhile, and their new write set what they need"
            if changed
            else ""
        )
    )


@infra_group.command(name="render")
@click.option("--check", is_flag=True, help="Change nothing; exit 1 if a file is stale.")
def render_command(check: bool) -> None:
    """Write infra/merge.json and the per-function policy files from app.py's functions."""
    project = current_project()
    changed, unused = stale_files(project)
    for path in [*changed, *unused]:
        verb = "stale" if check else ("deleted" if path in unused else "wrote")
        click.echo(f"{verb} {path.relative_to(project)}")

    if not changed and not unused:
        click.echo("the generated files are up to date")
        return
    if check:
        raise SystemExit("run `stripe-events infra render` to update them")
    for path, text in changed.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
    for path in unused:
        path.unlink()
