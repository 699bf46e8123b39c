"""`chalice package --merge-template infra/merge.json`: what CloudFormation would get.

The packaged SAM template is checked with cfn-lint and transformed with aws-sam-translator
(as CloudFormation's transform would), offline, so that mistakes show before a deploy.
"""

from __future__ import annotations

import ast
import copy
import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint  # type: ignore[import-untyped]
from samtranslator.parser.parser import Parser  # type: ignore[import-untyped]
from samtranslator.translator.translator import Translator  # type: ignore[import-untyped]

from stripe_events.stores.schema import KEY_SCHEMA, TTL_ATTRIBUTE
from stripe_events_ops.infra import MERGE_TEMPLATE
from stripe_events_ops.project import Stage, deployed_stages, function_handlers
from stripe_events_ops.template import (
    API_HANDLER,
    ASYNC_RETRY,
    BODIES_PREFIX,
    BODY_RETENTION_DAYS,
    RULE_RETRY,
    Names,
    cfn_name,
    cfn_role_name,
    policy_problems,
    stack_policy,
    stage_stack_template,
)
from tests.helpers import ROOT

STAGE = "prod"
STACK = "stripe-events-prod"
ACCOUNT = "123456789012"
REGION = "us-east-1"
FUNCTIONS = function_handlers(ROOT)
DLQ_ARN = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
# What the project itself puts in the deployment package (the rest is its requirements).
OURS = {"app.py", "chalicelib", "stripe_events"}


def chalice_package(out: Path) -> Path:
    """Run `chalice package` on the project; the wheels are cached in .chalice/deployments."""
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": REGION,
        # chalice package needs no AWS call; should it try one, it fails on a closed port.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    chalice = Path(sys.executable).parent / "chalice"
    command = [str(chalice), "package", "--stage", STAGE, "--merge-template", str(MERGE_TEMPLATE)]
    started = time.monotonic()
    # The first run downloads the wheels from PyPI; later runs take about 5 s.
    result = subprocess.run(
        [*command, str(out)], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
    )
    assert result.returncode == 0, result.stdout + result.stderr
    print(f"chalice package took {time.monotonic() - started:.1f} s")
    return out / "sam.json"


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The folder `chalice package` writes: sam.json and deployment.zip."""
    return chalice_package(tmp_path_factory.mktemp("out")).parent


@pytest.fixture(scope="module")
def sam(packaged: Path) -> dict[str, Any]:
    template: dict[str, Any] = json.loads((packaged / "sam.json").read_text())
    return template


def test_the_deployment_package_holds_the_runtime_wing_only(packaged: Path) -> None:
    with zipfile.ZipFile(packaged / "deployment.zip") as archive:
        names = archive.namelist()
        ours = [n for n in names if n.split("/")[0] in OURS]
        sources = {n: archive.read(n).decode() for n in ours if n.endswith(".py")}
    assert {n.split("/")[0] for n in ours} == OURS
    # The operator's command, the tests, the benchmark and the template stay out.
    assert not [n for n in names if n.split("/")[0] in ("stripe_events_ops", "ops", "tests")]
    assert "stripe_events/data/stripe-fixtures3.json" in names  # the test kit's examples
    for name, source in sources.items():
        imported = {
            alias.name.split(".")[0]
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.Import)
            for alias in node.names
        } | {
            (node.module or "").split(".")[0]
            for node in ast.walk(ast.parse(source))
            if isinstance(node, ast.ImportFrom) and node.level == 0
        }
        # click is not packaged, and the operator's wing must not be reached from Lambda.
        assert not imported & {"click", "stripe_events_ops", "pytest", "moto"}, name


def transform(sam: dict[str, Any], **parameters: str) -> dict[str, Any]:
    """CloudFormation's SAM transform, offline: no managed policies, no AWS call."""
    template = copy.deepcopy(sam)
    for resource in template["Resources"].values():
        if "CodeUri" in resource.get("Properties", {}):
            # What `aws cloudformation package` does: upload the zip, point at S3.
            resource["Properties"]["CodeUri"] = "s3://artifacts/deployment.zip"
    translator = Translator({}, Parser(), boto_session=boto3.session.Session(region_name=REGION))
    pseudo = {"AWS::AccountId": ACCOUNT, "AWS::StackName": STACK}
    result: dict[str, Any] = translator.translate(
        template, {**pseudo, **parameters}, get_managed_policy_map=lambda: {}
    )
    return result


@pytest.fixture(scope="module")
def cfn(sam: dict[str, Any]) -> dict[str, Any]:
    return transform(sam)


def lint_problems(template: dict[str, Any]) -> list[str]:
    matches = lint(json.dumps(template), config=ManualArgs(regions=[REGION]))
    return [f"{m.rule.id} {m.message} ({m.path})" for m in matches]


def test_cfn_lint_finds_no_problem(sam: dict[str, Any]) -> None:
    assert lint_problems(sam) == []


def test_cfn_lint_finds_no_problem_in_the_stack_infra_up_deploys() -> None:
    assert lint_problems(stage_stack_template(FUNCTIONS, "stripe-events")) == []


def test_cfn_lint_does_check_the_merged_resources(sam: dict[str, Any]) -> None:
    # A lint that saw nothing would pass too: break two merged resources on purpose.
    broken = copy.deepcopy(sam)
    broken["Resources"]["Table"]["Properties"]["BillingMode"] = "FREE"
    invoke_config = broken["Resources"]["CustomersEventInvokeConfig"]["Properties"]
    invoke_config["MaximumRetryAttempts"] = 7
    problems = lint_problems(broken)
    assert any("FREE" in p for p in problems), problems
    assert any("MaximumRetryAttempts" in p for p in problems), problems


def test_the_rest_api_is_named_after_the_stack_as_its_alarms_name_it(cfn: dict[str, Any]) -> None:
    [api] = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::RestApi"]
    stack = {"Fn::Sub": "${AWS::StackName}"}
    assert api["Properties"]["Name"] == api["Properties"]["Body"]["info"]["title"] == stack
    alarm = cfn["Resources"]["WebhookServerErrorsAlarm"]["Properties"]
    assert {"Name": "ApiName", "Value": stack} in alarm["Dimensions"]
    assert cfn["Resources"]["Dashboard"]["Type"] == "AWS::CloudWatch::Dashboard"


def test_the_table(cfn: dict[str, Any]) -> None:
    table = cfn["Resources"]["Table"]
    assert table["Type"] == "AWS::DynamoDB::Table"
    assert table["DeletionPolicy"] == "Retain"
    properties = table["Properties"]
    assert properties["TableName"] == {"Fn::Sub": "${AWS::StackName}"}
    assert [(k["AttributeName"], k["KeyType"]) for k in properties["KeySchema"]] == list(KEY_SCHEMA)
    assert {a["AttributeName"]: a["AttributeType"] for a in properties["AttributeDefinitions"]} == {
        "pk": "S",
        "sk": "S",
        "ledger_shard": "S",
        "ledger_order": "S",
    }
    [index] = properties["GlobalSecondaryIndexes"]  # what `ledger` and `failures` query
    assert index["IndexName"] == "ledger"
    assert [(k["AttributeName"], k["KeyType"]) for k in index["KeySchema"]] == [
        ("ledger_shard", "HASH"),
        ("ledger_order", "RANGE"),
    ]
    assert index["Projection"] == {"ProjectionType": "KEYS_ONLY"}
    assert properties["BillingMode"] == "PAY_PER_REQUEST"
    assert properties["TimeToLiveSpecification"] == {
        "AttributeName": TTL_ATTRIBUTE,
        "Enabled": True,
    }
    assert properties["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}


def test_the_bucket_of_oversized_bodies(cfn: dict[str, Any]) -> None:
    bucket = cfn["Resources"]["BodiesBucket"]
    assert bucket["Type"] == "AWS::S3::Bucket"
    properties = bucket["Properties"]
    [encryption] = properties["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert encryption["ServerSideEncryptionByDefault"]["SSEAlgorithm"] == "AES256"
    block = properties["PublicAccessBlockConfiguration"]
    assert block == dict.fromkeys(
        ["BlockPublicAcls", "BlockPublicPolicy", "IgnorePublicAcls", "RestrictPublicBuckets"], True
    )
    [rule] = properties["LifecycleConfiguration"]["Rules"]
    assert rule["Status"] == "Enabled"
    assert rule["Prefix"] == BODIES_PREFIX
    assert rule["ExpirationInDays"] == BODY_RETENTION_DAYS >= 35


def test_the_topic_and_the_dead_letter_queue(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    assert resources["NotificationsTopic"]["Type"] == "AWS::SNS::Topic"
    queue = resources["DeadLetterQueue"]
    assert queue["Type"] == "AWS::SQS::Queue"
    assert queue["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600


def rule_of(cfn: dict[str, Any], function: str) -> dict[str, Any]:
    """The EventBridge rule SAM made for a function's CloudWatchEvent."""
    rules: list[dict[str, Any]] = [
        r
        for r in cfn["Resources"].values()
        if r["Type"] == "AWS::Events::Rule"
        and r["Properties"]["Targets"][0]["Arn"] == {"Fn::GetAtt": [cfn_name(function), "Arn"]}
    ]
    [rule] = rules
    return rule


def test_every_event_function_retries_and_keeps_what_fails(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    queue_policy = resources["DeadLetterQueuePolicy"]["Properties"]
    [statement] = queue_policy["PolicyDocument"]["Statement"]
    assert statement["Principal"] == {"Service": "events.amazonaws.com"}
    allowed_rules = statement["Condition"]["ArnEquals"]["aws:SourceArn"]
    functions = {
        name
        for name, r in resources.items()
        if r["Type"] == "AWS::Lambda::Function" and name != "APIHandler"
    }
    assert functions == {cfn_name(f) for f in FUNCTIONS}
    for function in FUNCTIONS:
        logical = cfn_name(function)
        invoke_config = resources[f"{logical}EventInvokeConfig"]
        assert invoke_config["Type"] == "AWS::Lambda::EventInvokeConfig"
        assert invoke_config["Properties"] == {
            "FunctionName": {"Ref": logical},
            "Qualifier": "$LATEST",
            **ASYNC_RETRY,
            "DestinationConfig": {"OnFailure": {"Destination": DLQ_ARN}},
        }
        [target] = rule_of(cfn, function)["Properties"]["Targets"]
        assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}
        assert target["RetryPolicy"] == RULE_RETRY
        name = rule_of(cfn, function)["Properties"]["Name"]["Fn::Sub"]
        rule_arn = (
            f"arn:${{AWS::Partition}}:events:${{AWS::Region}}:${{AWS::AccountId}}:rule/{name}"
        )
        assert {"Fn::Sub": rule_arn} in allowed_rules


def test_every_function_is_named_and_pointed_at_the_stack(cfn: dict[str, Any]) -> None:
    names = Names("${AWS::StackName}", "${AWS::AccountId}")
    for function in [API_HANDLER, *FUNCTIONS]:
        properties = cfn["Resources"][cfn_name(function)]["Properties"]
        assert properties["FunctionName"] == {"Fn::Sub": names.function(function)}
        variables = properties["Environment"]["Variables"]
        assert variables["STRIPE_EVENTS_TABLE"] == {"Ref": "Table"}
        assert variables["STRIPE_EVENTS_BUCKET"] == {"Ref": "BodiesBucket"}
        assert variables["STRIPE_EVENTS_TOPIC_ARN"] == {"Ref": "NotificationsTopic"}
        assert variables["STRIPE_WEBHOOK_SECRET_PARAM"] == {"Fn::Sub": names.webhook_secret_param}
        assert variables["STRIPE_EVENTS_STAGE"] == STAGE  # Chalice's own, kept by the merge


def test_every_function_is_sized_for_what_it_does(cfn: dict[str, Any]) -> None:
    for function in [API_HANDLER, *FUNCTIONS]:
        properties = cfn["Resources"][cfn_name(function)]["Properties"]
        # The webhook answers within Stripe's wait; an event function has Chalice's default.
        expected = (256, 10) if function == API_HANDLER else (256, 60)
        assert (properties["MemorySize"], properties["Timeout"]) == expected, function


def test_every_role_allows_only_its_functions_needs(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    for function in [API_HANDLER, *FUNCTIONS]:
        role = resources[cfn_name(function)]["Properties"]["Role"]
        assert role == {"Fn::GetAtt": [cfn_role_name(function), "Arn"]}
        [policy] = resources[cfn_role_name(function)]["Properties"]["Policies"]
        assert policy["PolicyDocument"] == stack_policy(function), function
    roles = [r for r in resources.values() if r["Type"] == "AWS::IAM::Role"]
    assert len(roles) == len(FUNCTIONS) + 2  # and the partner bus's forwarding role
    for role in roles:
        assert "ManagedPolicyArns" not in role["Properties"]
        for policy in role["Properties"]["Policies"]:
            assert policy_problems(policy["PolicyDocument"], exact=True) == []


def test_the_partner_bus_forwarding_is_optional(cfn: dict[str, Any]) -> None:
    parameter = cfn["Parameters"]["StripePartnerEventSource"]
    assert parameter["Default"] == ""
    condition = cfn["Conditions"]["ForwardFromStripePartnerBus"]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": "StripePartnerEventSource"}, ""]}]}
    resources = cfn["Resources"]
    forwarding = [name for name, r in resources.items() if name.startswith("StripePartner")]
    assert forwarding == [
        "StripePartnerEventBus",
        "StripePartnerForwardRole",
        "StripePartnerForwardRule",
    ]
    for name in forwarding:
        assert resources[name]["Condition"] == "ForwardFromStripePartnerBus"
    [target] = resources["StripePartnerForwardRule"]["Properties"]["Targets"]
    assert target["Arn"]["Fn::Sub"].endswith(":event-bus/default")
    assert target["DeadLetterConfig"] == {"Arn": DLQ_ARN}


def test_the_template_transforms_with_a_partner_event_source(sam: dict[str, Any]) -> None:
    source = "aws.partner/stripe.com/ed_test_61Rk5"
    cfn = transform(sam, StripePartnerEventSource=source)
    assert cfn["Resources"]["StripePartnerEventBus"]["Properties"]["EventSourceName"] == {
        "Ref": "StripePartnerEventSource"
    }


@pytest.mark.parametrize("stage", deployed_stages(ROOT), ids=lambda s: s.name)
def test_every_name_fits_aws_limits(stage: Stage) -> None:
    """Lambda function, IAM role and EventBridge rule names: at most 64 characters.

    Chalice names functions and roles `{app}-{stage}-{name}` (the REST API's handler
    `{app}-{stage}`) and does not check the length; the template names rules the same way.
    """
    names = Names(stage.prefix, ACCOUNT)
    for function in [API_HANDLER, *FUNCTIONS]:
        assert len(names.function(function)) <= 64, names.function(function)
    assert len(names.partner_forward_rule) <= 64
    assert len(names.bucket) <= 63  # S3's limit
    assert len(names.queue) <= 80 and len(names.topic) <= 256
