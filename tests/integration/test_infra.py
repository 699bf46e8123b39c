"""Infrastructure: generated files in sync, least privilege, `infra up` and `down` on moto."""

from __future__ import annotations

import io
import json
import os
import time
import zipfile
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import boto3
import pytest
from click.testing import CliRunner, Result

from stripe_events._dispatch import Dispatcher
from stripe_events._notifier import Notification, SnsNotifier
from stripe_events._payloads import S3PayloadStore
from stripe_events._router import Router
from stripe_events._schema import (
    INDEX_SHARD,
    ITEM_SK,
    KEY_SCHEMA,
    PARTITION_KEY,
    RUNNING_SHARDS,
    SORT_KEY,
    TTL_ATTRIBUTE,
)
from stripe_events._stores import RUNS, Claim
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_local.payloads import LocalPayloadStore
from stripe_events_ops import infra
from stripe_events_ops.infra import (
    MERGE_TEMPLATE,
    STAGE_VARIABLES,
    StackFailed,
    infra_group,
    stale_files,
    wait_for_stack,
)
from stripe_events_ops.project import CONFIG, deployed_stages, function_handlers, read_config
from stripe_events_ops.template import (
    API_HANDLER,
    BODIES_PREFIX,
    DLQ_RETENTION_SECONDS,
    EVENT_BUS,
    STATE_PREFIX,
    TRACING_ACTIONS,
    Names,
    file_policy,
    merge_template,
    policy_file,
    policy_problems,
    stack_policy,
    stage_stack_template,
)
from stripe_events_testing import samples
from tests.conftest import REGION
from tests.helpers import ROOT
from tests.sqs_poller import unique

FUNCTIONS = function_handlers(ROOT)
APP = read_config(ROOT)["app_name"]


def actions(policy: dict[str, Any]) -> set[str]:
    return {action for s in policy["Statement"] for action in s["Action"]}


def resources(policy: dict[str, Any], action: str) -> list[str]:
    return [r for s in policy["Statement"] if action in s["Action"] for r in s["Resource"]]


def test_the_generated_files_are_up_to_date() -> None:
    changed, unused = stale_files(ROOT)
    stale = sorted(str(p.relative_to(ROOT)) for p in [*changed, *unused])
    assert not stale, f"stale: {stale}. Run .venv/bin/stripe-events infra render"


def test_app_py_has_event_functions() -> None:
    # Everything below iterates over them: an empty list would make it pass vacuously.
    assert "customers" in FUNCTIONS
    assert len(FUNCTIONS) == len(set(FUNCTIONS))


@pytest.mark.parametrize("stage", ["dev", "prod"])
def test_each_deployed_stage_names_what_infra_creates(stage: str) -> None:
    config = read_config(ROOT)
    assert config["autogen_policy"] is False  # Chalice's analyser cannot see chalicelib's clients
    settings = config["stages"][stage]
    assert "iam_policy_file" not in settings  # each function has its own
    [deployed] = [s for s in deployed_stages(ROOT) if s.name == stage]
    names = Names(deployed.prefix, "any")
    env = deployed.env
    assert env["STRIPE_EVENTS_BUS"] == EVENT_BUS
    assert env["STRIPE_EVENTS_TABLE"] == names.table
    assert env["STRIPE_WEBHOOK_SECRET_PARAM"] == names.webhook_secret_param
    assert env["STRIPE_API_KEY_PARAM"] == names.api_key_param
    # Secrets live in SSM; `infra up` (or the template) fills in the account's names.
    assert "STRIPE_WEBHOOK_SECRET" not in env and "STRIPE_API_KEY" not in env
    assert {"STRIPE_EVENTS_BUCKET", "STRIPE_EVENTS_TOPIC_ARN"} <= set(env)
    files = {name: f["iam_policy_file"] for name, f in settings["lambda_functions"].items()}
    assert files == {f: policy_file(deployed, f) for f in [API_HANDLER, *FUNCTIONS]}
    # `chalice deploy` traces the functions and the API's stage, as the template does.
    assert settings["xray"] is True


def all_policies() -> Iterator[tuple[str, dict[str, Any], bool]]:
    """(label, policy, exact): the policy files, and the stack's policies (exact ARNs)."""
    for stage in deployed_stages(ROOT):
        for function in [API_HANDLER, *FUNCTIONS]:
            path = ROOT / ".chalice" / policy_file(stage, function)
            yield path.name, json.loads(path.read_text()), False
    for function in [API_HANDLER, *FUNCTIONS]:
        yield f"stack {function}", stack_policy(function), True


def test_no_policy_uses_a_wildcard_for_actions_or_resources() -> None:
    """No "*" action or resource; a "*" only ends a log group's streams or the bodies' keys.

    The static files may say "*" for region and account (IAM resolves the bucket's account
    with a policy variable); the stack's policies name both exactly. Only X-Ray's uploads
    of trace segments have Resource "*": IAM cannot scope them to a resource.
    """
    checked = 0
    for label, policy, exact in all_policies():
        assert policy_problems(policy, exact=exact) == [], label
        checked += 1
    assert checked == 3 * (1 + len(FUNCTIONS))


@pytest.mark.parametrize(
    ("action", "resource", "exact"),
    [
        ("*", "arn:aws:sns:*:*:topic", False),
        ("s3:*", "arn:aws:s3:::bucket/events/*", False),
        ("s3:Get*", "arn:aws:s3:::bucket/events/*", False),
        ("sns:Publish", "*", False),
        ("s3:GetObject", "arn:aws:s3:::*", False),
        ("s3:GetObject", "arn:aws:s3:::bucket/*", False),
        ("dynamodb:Query", "arn:aws:dynamodb:*:*:table/*", False),
        ("dynamodb:Query", "arn:aws:dynamodb:*:*:table/name", True),
        ("dynamodb:Query", {"Fn::Sub": "arn:aws:dynamodb:*:${AWS::AccountId}:table/x"}, True),
    ],
)
def test_the_wildcard_check_finds_wildcards(action: str, resource: Any, exact: bool) -> None:
    statement = {"Effect": "Allow", "Action": [action], "Resource": [resource]}
    assert policy_problems({"Statement": [statement]}, exact=exact)


def test_only_x_rays_uploads_may_have_any_resource() -> None:
    tracing = {"Effect": "Allow", "Action": list(TRACING_ACTIONS), "Resource": ["*"]}
    assert policy_problems({"Statement": [tracing]}, exact=True) == []
    with_more = {**tracing, "Action": [*TRACING_ACTIONS, "sns:Publish"]}
    assert policy_problems({"Statement": [with_more]}, exact=True)


WEBHOOK_ACTIONS = {
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "events:PutEvents",
    "dynamodb:GetItem",
    "dynamodb:Query",
    "dynamodb:UpdateItem",
    "s3:PutObject",
    "s3:GetObject",  # projected items too large for DynamoDB, for the billing route
    "ssm:GetParameter",
    *TRACING_ACTIONS,
}
RESOURCE_FUNCTION_ACTIONS = {
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:PutLogEvents",
    "dynamodb:GetItem",
    "dynamodb:PutItem",
    "dynamodb:UpdateItem",
    "dynamodb:DeleteItem",
    "dynamodb:Query",
    "sns:Publish",
    "s3:GetObject",
    "s3:PutObject",  # what a DynamoDB item cannot hold: a received body, a projected item
    "s3:ListBucket",
    "sqs:SendMessage",
    "ssm:GetParameter",
    *TRACING_ACTIONS,
}


@pytest.mark.parametrize("function", [API_HANDLER, *FUNCTIONS])
def test_each_function_may_do_only_what_it_does(function: str) -> None:
    [dev] = [s for s in deployed_stages(ROOT) if s.name == "dev"]
    names = Names("stripe-events-dev", "${aws:PrincipalAccount}")
    policy = file_policy(dev, function)
    webhook = function == API_HANDLER
    assert actions(policy) == (WEBHOOK_ACTIONS if webhook else RESOURCE_FUNCTION_ACTIONS)
    # Its own log group and nobody else's: no other function's name starts with it plus ":".
    group = f"log-group:/aws/lambda/{names.function(function)}"
    assert {r.split(":", 5)[5] for r in resources(policy, "logs:PutLogEvents")} == {
        group,
        f"{group}:*",
    }
    [parameter] = resources(policy, "ssm:GetParameter")
    secret = names.webhook_secret_param if webhook else names.api_key_param
    assert parameter.endswith(f":parameter{secret}")
    [table] = {
        r for a in actions(policy) if a.startswith("dynamodb:") for r in resources(policy, a)
    }
    assert table.endswith(f":table/{names.table}")
    bucket = f"arn:aws:s3:::{names.bucket}"
    assert resources(policy, "s3:PutObject") == (
        [f"{bucket}/{BODIES_PREFIX}*"]
        if webhook
        else [f"{bucket}/{BODIES_PREFIX}*", f"{bucket}/{STATE_PREFIX}*"]
    )
    # Items too large for DynamoDB are read back from the state prefix, never expired.
    assert f"{bucket}/{STATE_PREFIX}*" in resources(policy, "s3:GetObject")
    if not webhook:
        assert resources(policy, "sqs:SendMessage")[0].endswith(f":{names.queue}")
        assert resources(policy, "sns:Publish")[0].endswith(f":{names.topic}")
    # The stack's policy grants the same actions, on the stack's own resources.
    assert actions(stack_policy(function)) == actions(policy)


# --- infra up / infra down on the moto server ----------------------------------------------


def make_project(folder: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A copy of this project in `folder`, its app and resources linked, the command run there."""
    (folder / ".chalice").mkdir()
    for name in ("app.py", "chalicelib"):
        (folder / name).symlink_to(ROOT / name)
    monkeypatch.chdir(folder)


@pytest.fixture
def project(moto_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A project whose config names an app of its own, so that names never collide in moto."""
    # Never real AWS: boto3 goes to the loopback moto server, with fake credentials.
    assert os.environ["AWS_ENDPOINT_URL"].startswith("http://127.0.0.1:")
    assert os.environ["AWS_ACCESS_KEY_ID"] == "testing"
    config = read_config(ROOT)
    config["app_name"] = unique("infra")
    names = Names(f"{config['app_name']}-dev", "")
    env = config["stages"]["dev"]["environment_variables"]
    env["STRIPE_WEBHOOK_SECRET_PARAM"] = names.webhook_secret_param
    env["STRIPE_API_KEY_PARAM"] = names.api_key_param
    make_project(tmp_path, monkeypatch)
    (tmp_path / ".chalice" / "config.json").write_text(json.dumps(config))
    yield tmp_path


def invoke(*args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(infra_group, list(args), input=input)


def deploy_fake_function(name: str) -> None:
    """A function with the name `chalice deploy` would give it, for `up` to find."""
    role = boto3.client("iam").create_role(
        RoleName=unique("role"),
        AssumeRolePolicyDocument=json.dumps(
            {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Effect": "Allow",
                        "Principal": {"Service": "lambda.amazonaws.com"},
                        "Action": "sts:AssumeRole",
                    }
                ],
            }
        ),
    )["Role"]["Arn"]
    code = io.BytesIO()
    with zipfile.ZipFile(code, "w") as archive:
        archive.writestr("app.py", "def handler(event, context):\n    return None\n")
    boto3.client("lambda").create_function(
        FunctionName=name,
        Runtime="python3.11",
        Role=role,
        Handler="app.handler",
        Code={"ZipFile": code.getvalue()},
    )


def test_up_deploys_the_stages_stack_and_down_deletes_it(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    prefix = f"{read_config(project)['app_name']}-dev"
    account = boto3.client("sts").get_caller_identity()["Account"]
    names = Names(prefix, account)
    deploy_fake_function(names.function("customers"))

    first = invoke("up", "--stage", "dev")
    assert first.exit_code == 0, first.output
    lines = first.output.splitlines()
    assert lines[0] == f"creating stack {prefix}"
    assert f"  {prefix} (AWS::CloudFormation::Stack): CREATE_COMPLETE" in lines  # progress
    assert f"stack {prefix}: CREATE_COMPLETE" in lines
    assert f"failed events of customers go to the dead-letter queue {names.queue}" in lines
    others = [f for f in FUNCTIONS if f != "customers"]
    assert f"functions not deployed yet: {', '.join(others)};" in first.output
    assert f"parameter {names.webhook_secret_param} is missing" in first.output
    # The stack is the stage's template, with the deployed function's destination.
    cloudformation = boto3.client("cloudformation")
    deployed = cloudformation.get_template(StackName=prefix)["TemplateBody"]
    app = read_config(project)["app_name"]
    customers = {"customers": FUNCTIONS["customers"]}
    assert json.loads(json.dumps(deployed)) == stage_stack_template(customers, app)

    config = read_config(project)["stages"]["dev"]["environment_variables"]
    topic_arn = f"arn:aws:sns:{REGION}:{account}:{names.topic}"
    assert (config["STRIPE_EVENTS_TABLE"], config["STRIPE_EVENTS_BUCKET"]) == (
        names.table,
        names.bucket,
    )
    assert config["STRIPE_EVENTS_TOPIC_ARN"] == topic_arn
    assert f"{CONFIG}: stage dev: STRIPE_EVENTS_BUCKET = {names.bucket}" in lines
    assert_resources(names, topic_arn)
    assert_the_app_works_on_them(names, topic_arn)
    monkeypatch.setattr(infra, "PROGRESS_EVERY", 2)
    assert_earlier_items_get_indexed(names)

    ssm = boto3.client("ssm")
    ssm.put_parameter(Name=names.webhook_secret_param, Type="SecureString", Value="whsec_x")
    ssm.put_parameter(Name=names.api_key_param, Type="String", Value="sk_test_x")
    second = invoke("up", "--stage", "dev")
    assert second.exit_code == 0, second.output
    assert second.output.splitlines()[:2] == [
        f"stack {prefix} is up to date",
        f"failed events of customers go to the dead-letter queue {names.queue}",
    ]
    assert f"parameter {names.webhook_secret_param} exists" in second.output
    assert (
        f"parameter {names.api_key_param} is a String: store a Stripe API key as a SecureString"
        in second.output
    )
    assert "config.json" not in second.output  # nothing to change the second time
    assert_alarms_go_to_the_address_given(prefix)

    down = invoke("down", "--stage", "dev", "--yes")
    assert down.exit_code == 0, down.output
    assert down.output.splitlines()[:2] == [
        f"emptied bucket {names.bucket} (1 object(s))",
        f"deleting stack {prefix}",
    ]
    assert down.output.splitlines()[-1] == f"stack {prefix}: DELETE_COMPLETE"
    assert names.table not in boto3.client("dynamodb").list_tables()["TableNames"]
    again = invoke("down", "--stage", "dev", "--yes")
    assert (again.exit_code, again.output) == (0, f"stack {prefix} does not exist\n")
    back = invoke("up", "--stage", "dev")
    assert back.exit_code == 0, back.output
    assert back.output.startswith(f"creating stack {prefix}\n")
    assert invoke("down", "--stage", "dev", "--yes").exit_code == 0


def test_the_stage_stack_is_the_merge_templates_resources() -> None:
    # One definition: the quick path's stack holds the production template's resources,
    # which it deletes with the stack, and only deployed functions' destinations.
    merged = merge_template(FUNCTIONS)["Resources"]
    stack = stage_stack_template({"customers": FUNCTIONS["customers"]}, APP)["Resources"]
    for logical in ("Table", "BodiesBucket", "NotificationsTopic", "DeadLetterQueue"):
        kept = {k: v for k, v in merged[logical].items() if not k.endswith("Policy")}
        assert stack[logical] == kept, logical
        assert merged[logical].get("DeletionPolicy", "Retain") == "Retain"
    invoke_configs = {k for k, v in stack.items() if v["Type"] == "AWS::Lambda::EventInvokeConfig"}
    assert invoke_configs == {"CustomersEventInvokeConfig"}
    config = stack["CustomersEventInvokeConfig"]["Properties"]
    assert config["FunctionName"] == {"Fn::Sub": "${AWS::StackName}-customers"}
    assert config == {**merged["CustomersEventInvokeConfig"]["Properties"], **config}
    assert set(stage_stack_template({}, APP)["Outputs"]) == set(STAGE_VARIABLES.values()) | {
        "DeadLetterQueueUrl"
    }


def test_a_failed_stack_says_which_resource_failed_and_why() -> None:
    class Failing:
        def __init__(self) -> None:
            self.polls = 0

        def describe_stacks(self, StackName: str) -> dict[str, Any]:
            self.polls += 1
            status = "CREATE_IN_PROGRESS" if self.polls < 2 else "ROLLBACK_COMPLETE"
            return {"Stacks": [{"StackStatus": status}]}

        def get_paginator(self, name: str) -> Any:
            event = {
                "EventId": "1",
                "Timestamp": datetime(2026, 1, 1, tzinfo=UTC),
                "LogicalResourceId": "BodiesBucket",
                "ResourceType": "AWS::S3::Bucket",
                "ResourceStatus": "CREATE_FAILED",
                "ResourceStatusReason": "stripe-events-dev-bodies-1 already exists",
            }

            class Pages:
                def paginate(self, StackName: str) -> list[dict[str, Any]]:
                    return [{"StackEvents": [event]}]

            return Pages()

    printed: list[str] = []
    with pytest.raises(StackFailed) as failed:
        wait_for_stack(Failing(), "stripe-events-dev", None, printed.append, lambda s: None)
    assert printed == [
        "  BodiesBucket (AWS::S3::Bucket): CREATE_FAILED: stripe-events-dev-bodies-1 already exists"
    ]
    assert str(failed.value.message) == (
        "stack stripe-events-dev ended ROLLBACK_COMPLETE: BodiesBucket: "
        "stripe-events-dev-bodies-1 already exists"
    )


def assert_resources(names: Names, topic_arn: str) -> None:
    """What the stack made, as far as moto's CloudFormation makes it (the template's other
    settings, such as TTL, are checked in the template and by cfn-lint)."""
    dynamodb = boto3.client("dynamodb")
    table = dynamodb.describe_table(TableName=names.table)["Table"]
    assert tuple((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"]) == KEY_SCHEMA
    assert table["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST"
    assert boto3.client("s3").head_bucket(Bucket=names.bucket)
    topic = boto3.client("sns").get_topic_attributes(TopicArn=topic_arn)["Attributes"]
    assert topic["KmsMasterKeyId"] == "alias/aws/sns"
    sqs = boto3.client("sqs")
    url = sqs.get_queue_url(QueueName=names.queue)["QueueUrl"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert attributes["MessageRetentionPeriod"] == str(DLQ_RETENTION_SECONDS)


def assert_the_app_works_on_them(names: Names, topic_arn: str) -> None:
    """The app's own store, dispatch, payload store and notifier use what `up` made."""
    store = DynamoStore(names.table, REGION)
    store.record_published("evt_infra", "customer.created", 1, "2026-01-01T00:00:00+00:00")
    entry = store.event("evt_infra")
    assert entry is not None and entry.published_at is not None

    router = Router("infra")

    @router.on("customer.created")
    def noted(event: Any, context: Any) -> None:
        pass

    event = samples.sample_event("customer.created")
    outcomes = Dispatcher(store, lambda: LocalPayloadStore(Path("unused"))).dispatch(router, event)
    assert outcomes["infra.noted"].status == "ok"
    assert store.get(RUNS, f"{event['id']}:infra") is None  # the run's claim is released

    # A claim on an object in progress carries the table's TTL attribute: one left by a
    # dead run expires. A dead run's own claim does not: `failures` lists it until a
    # delivery or a replay runs the event.
    assert store.claim("fulfilments", "cs_dead", "request-1", 60) is Claim.TAKEN
    assert store.claim(RUNS, "evt_dead:infra", "request-1", 60) is Claim.TAKEN
    dynamodb = boto3.client("dynamodb")
    [fulfilment, run] = [
        dynamodb.get_item(
            TableName=names.table, Key={PARTITION_KEY: {"S": pk}, SORT_KEY: {"S": ITEM_SK}}
        )["Item"]
        for pk in ("fulfilments#cs_dead", f"{RUNS}#evt_dead:infra")
    ]
    assert int(fulfilment[TTL_ATTRIBUTE]["N"]) > time.time() + 60
    assert TTL_ATTRIBUTE not in run
    assert run[INDEX_SHARD]["S"].startswith(f"{RUNNING_SHARDS}#")

    ref = S3PayloadStore(names.bucket, REGION).save("evt_infra", '{"big": true}')
    assert ref["key"].startswith(BODIES_PREFIX)  # so the lifecycle rule expires it
    SnsNotifier(topic_arn, REGION).send(Notification("evt_infra:infra:test", "test", "hi", {}))


def assert_alarms_go_to_the_address_given(prefix: str) -> None:
    """`--alarm-email` sets the stack's AlarmEmail (which subscribes it to the alarm topic,
    see test_package: moto's CloudFormation makes no AWS::SNS::Subscription); `up` without
    the option keeps it."""

    def alarm_email() -> str:
        [stack] = boto3.client("cloudformation").describe_stacks(StackName=prefix)["Stacks"]
        given = {p["ParameterKey"]: str(p["ParameterValue"]) for p in stack["Parameters"]}
        return given["AlarmEmail"]

    assert alarm_email() == ""
    given = invoke("up", "--stage", "dev", "--alarm-email", "ops@example.com")
    assert given.exit_code == 0, given.output
    assert given.output.startswith(f"updating stack {prefix}\n")
    assert alarm_email() == "ops@example.com"
    kept = invoke("up", "--stage", "dev")
    assert kept.output.startswith(f"stack {prefix} is up to date\n"), kept.output
    assert alarm_email() == "ops@example.com"


def assert_earlier_items_get_indexed(names: Names) -> None:
    """`index-ledger` lists in `ledger` what a version before the index recorded."""
    earlier = [f"evt_before_{n}" for n in range(3)]
    for n, event_id in enumerate(earlier):
        boto3.client("dynamodb").put_item(
            TableName=names.table,
            Item={
                PARTITION_KEY: {"S": f"event#{event_id}"},
                SORT_KEY: {"S": "event"},
                "type": {"S": "invoice.paid"},
                "created": {"N": "5"},
                "published_at": {"S": f"2025-01-0{n + 1}T00:00:00+00:00"},
            },
        )
    store = DynamoStore(names.table, REGION)
    assert not {e.id for e in store.recent(50)} & set(earlier)

    result = invoke("index-ledger", "--stage", "dev")
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == [
        "... 2 items without index keys found, 2 indexed",
        f"indexed 3 earlier items of table {names.table}",
    ]
    assert [e.id for e in store.recent(50)][-3:] == earlier[::-1]
    assert invoke("index-ledger", "--stage", "dev").output.endswith(
        f"indexed 0 earlier items of table {names.table}\n"
    )


def test_emptying_the_versioned_bucket_deletes_every_version(moto_url: str) -> None:
    # CloudFormation deletes only a bucket with no object versions and no delete markers.
    s3 = boto3.client("s3")
    name = unique("versioned")
    s3.create_bucket(Bucket=name)
    s3.put_bucket_versioning(Bucket=name, VersioningConfiguration={"Status": "Enabled"})
    for body in (b"first", b"second"):
        s3.put_object(Bucket=name, Key=f"{STATE_PREFIX}item", Body=body)
    s3.delete_object(Bucket=name, Key=f"{STATE_PREFIX}item")
    assert infra.empty_bucket(s3, name) == 3  # two versions and the delete marker
    left = s3.list_object_versions(Bucket=name)
    assert not left.get("Versions") and not left.get("DeleteMarkers")


def test_up_and_down_refuse_the_local_stage(project: Path) -> None:
    for command in (["up"], ["down", "--yes"], ["index-ledger"]):
        result = invoke(*command, "--stage", "local")
        assert result.exit_code == 2
        assert "local bus" in result.output
    unknown = invoke("up", "--stage", "staging")
    assert unknown.exit_code == 2
    assert "no stage 'staging'" in unknown.output


def test_down_asks_before_it_deletes(project: Path) -> None:
    assert invoke("up", "--stage", "dev").exit_code == 0
    prefix = f"{read_config(project)['app_name']}-dev"
    refused = invoke("down", "--stage", "dev", input="n\n")
    assert refused.exit_code == 1
    assert f"of stage dev ({prefix})" in refused.output
    assert boto3.client("dynamodb").describe_table(TableName=prefix)["Table"]
    assert invoke("down", "--stage", "dev", input="y\n").exit_code == 0


def test_render_writes_what_is_stale_and_deletes_unused_policies(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(tmp_path, monkeypatch)
    for path in (ROOT / ".chalice").glob("*.json"):
        (tmp_path / ".chalice" / path.name).write_text(path.read_text())
    (tmp_path / ".chalice" / "policy-dev-customers.json").unlink()
    (tmp_path / ".chalice" / "policy-dev-gone.json").write_text("{}")

    check = invoke("render", "--check")
    assert check.exit_code == 1
    assert check.output.splitlines()[:3] == [
        "stale infra/merge.json",
        "stale .chalice/policy-dev-customers.json",
        "stale .chalice/policy-dev-gone.json",
    ]
    assert invoke("render").exit_code == 0
    assert not (tmp_path / ".chalice" / "policy-dev-gone.json").exists()
    assert (tmp_path / ".chalice" / "policy-dev-customers.json").read_text() == (
        ROOT / ".chalice" / "policy-dev-customers.json"
    ).read_text()
    assert (tmp_path / "infra" / "merge.json").read_text() == (ROOT / MERGE_TEMPLATE).read_text()
    again = invoke("render", "--check")
    assert (again.exit_code, again.output) == (0, "the generated files are up to date\n")
