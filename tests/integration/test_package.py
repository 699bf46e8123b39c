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

from stripe_events._schema import KEY_SCHEMA, TTL_ATTRIBUTE
from stripe_events_ops.infra import MERGE_TEMPLATE
from stripe_events_ops.monitoring import API_STAGE
from stripe_events_ops.project import Stage, deployed_stages, function_handlers, stage_environment
from stripe_events_ops.template import (
    ACCESS_LOG_RETENTION_DAYS,
    API_GATEWAY_LOGS_ACTIONS,
    API_HANDLER,
    ASYNC_RETRY,
    BODIES_PREFIX,
    BODY_RETENTION_DAYS,
    BODY_RULE_ID,
    EVENT_FUNCTION_CONCURRENCY,
    NONCURRENT_RETENTION_DAYS,
    RULE_RETRY,
    THROTTLING_BURST,
    THROTTLING_RATE,
    TRACING_ACTIONS,
    WEBHOOK_CONCURRENCY,
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
DEVELOPMENT_ONLY = (
    "stripe_events_ops",
    "stripe_events_local",
    "stripe_events_testing",
    "ops",
    "src",
    "tests",
    "bench",
)


def run_chalice_package(
    project: Path, stage: str, out: Path, *options: str
) -> subprocess.CompletedProcess[str]:
    """`chalice package --stage STAGE [options] OUT` in `project`, as a user runs it."""
    env = {
        **os.environ,
        "AWS_DEFAULT_REGION": REGION,
        # chalice package needs no AWS call; should it try one, it fails on a closed port.
        "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
    }
    chalice = Path(sys.executable).parent / "chalice"
    return subprocess.run(
        [str(chalice), "package", "--stage", stage, *options, str(out)],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


def chalice_package(out: Path) -> Path:
    """Run `chalice package` on the project; the wheels are cached in .chalice/deployments."""
    started = time.monotonic()
    # The first run downloads the wheels from PyPI; later runs take about 5 s.
    result = run_chalice_package(ROOT, STAGE, out, "--merge-template", str(MERGE_TEMPLATE))
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
    # The operator's command, stage local's stand-ins for AWS, the test kit with its
    # fixtures, the tests, the benchmark and the template stay out.
    assert not [n for n in names if n.split("/")[0] in DEVELOPMENT_ONLY]
    assert not [n for n in names if n.endswith(("stripe-fixtures3.json", "sqlite.py"))]
    runtime = {n.removeprefix("stripe_events/") for n in names if n.startswith("stripe_events/")}
    assert "data/event_types.json" in runtime  # the catalog the routers check names against
    assert not {"testing.py", "samples.py", "outbox.py"} & runtime
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
    [rule] = [r for r in properties["LifecycleConfiguration"]["Rules"] if r["Id"] == BODY_RULE_ID]
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
    # The partner bus's forwarding role too; API Gateway's logging role is the account's
    # (test_the_api_stage_logs_each_request).
    roles = [
        r
        for name, r in resources.items()
        if r["Type"] == "AWS::IAM::Role" and name != "ApiGatewayLogsRole"
    ]
    assert len(roles) == len(FUNCTIONS) + 2
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


# --- The hardening: throttling, concurrency, access logs, tracing, encryption, versions ------


def the_stage(cfn: dict[str, Any]) -> dict[str, Any]:
    """The API Gateway stage SAM made from the REST API: what Stripe's deliveries reach."""
    [stage] = [r for r in cfn["Resources"].values() if r["Type"] == "AWS::ApiGateway::Stage"]
    assert stage["Properties"]["StageName"] == API_STAGE
    properties: dict[str, Any] = stage["Properties"]
    return properties


def holds(condition: Any, parameters: dict[str, str]) -> bool:
    """A template condition's value for these parameter values (the functions it uses)."""
    [(function, arguments)] = condition.items()
    if function == "Fn::Not":
        return not holds(arguments[0], parameters)
    if function == "Fn::Or":
        return any(holds(argument, parameters) for argument in arguments)
    assert function == "Fn::Equals", function
    left, right = (parameters[a["Ref"]] if isinstance(a, dict) else a for a in arguments)
    return bool(left == right)


def test_the_api_stage_is_throttled_by_parameters_with_sane_defaults(cfn: dict[str, Any]) -> None:
    [setting] = the_stage(cfn)["MethodSettings"]
    assert setting == {
        "ResourcePath": "/*",  # every route, the webhook's and the billing route
        "HttpMethod": "*",
        "ThrottlingRateLimit": {"Ref": THROTTLING_RATE},
        "ThrottlingBurstLimit": {"Ref": THROTTLING_BURST},
    }
    rate, burst = (cfn["Parameters"][name] for name in (THROTTLING_RATE, THROTTLING_BURST))
    assert (rate["Type"], rate["Default"], rate["MinValue"]) == ("Number", 100, 1)
    assert (burst["Type"], burst["Default"], burst["MinValue"]) == ("Number", 200, 1)


def test_reserved_concurrency_is_optional_and_off_by_default(cfn: dict[str, Any]) -> None:
    for function in [API_HANDLER, *FUNCTIONS]:
        concurrency = WEBHOOK_CONCURRENCY if function == API_HANDLER else EVENT_FUNCTION_CONCURRENCY
        properties = cfn["Resources"][cfn_name(function)]["Properties"]
        assert properties["ReservedConcurrentExecutions"] == {
            "Fn::If": [concurrency.condition, {"Ref": concurrency.name}, {"Ref": "AWS::NoValue"}]
        }, function
    for concurrency in (WEBHOOK_CONCURRENCY, EVENT_FUNCTION_CONCURRENCY):
        parameter = cfn["Parameters"][concurrency.name]
        assert (parameter["Type"], parameter["Default"]) == ("String", "")
        condition = cfn["Conditions"][concurrency.condition]
        reserves = {v: holds(condition, {concurrency.name: v}) for v in ("", "0", "1", "25")}
        assert reserves == {"": False, "0": False, "1": True, "25": True}


def test_the_api_stage_logs_each_request(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    group = resources["ApiAccessLogs"]
    assert group["Type"] == "AWS::Logs::LogGroup"
    assert group["Properties"]["RetentionInDays"] == ACCESS_LOG_RETENTION_DAYS == 365
    setting = the_stage(cfn)["AccessLogSetting"]
    arn = {"Fn::GetAtt": ["ApiAccessLogs", "Arn"]}
    # Made after the account's logging role is set, when the stack sets it.
    assert setting["DestinationArn"] == {
        "Fn::If": [
            "CreateApiGatewayLogsRole",
            {"Fn::Select": [0, [arn, {"Ref": "ApiGatewayAccount"}]]},
            arn,
        ]
    }
    line = json.loads(setting["Format"])  # one JSON line per request
    assert line["requestId"] == "$context.requestId"  # API Gateway requires it
    assert {"ip", "status", "path", "latencyMs", "xrayTraceId"} <= set(line)
    assert all(value.startswith("$context.") for value in line.values())

    parameter = cfn["Parameters"]["ApiGatewayCloudWatchRole"]
    assert (parameter["Default"], parameter["AllowedValues"]) == ("create", ["create", "existing"])
    condition = cfn["Conditions"]["CreateApiGatewayLogsRole"]
    assert holds(condition, {"ApiGatewayCloudWatchRole": "create"})
    assert not holds(condition, {"ApiGatewayCloudWatchRole": "existing"})
    account, role = resources["ApiGatewayAccount"], resources["ApiGatewayLogsRole"]
    assert account["Condition"] == role["Condition"] == "CreateApiGatewayLogsRole"
    assert account["Properties"] == {
        "CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]}
    }
    # The account's setting outlives the stack: so does the role it names.
    assert role["DeletionPolicy"] == role["UpdateReplacePolicy"] == "Retain"
    [trust] = role["Properties"]["AssumeRolePolicyDocument"]["Statement"]
    assert trust["Principal"] == {"Service": "apigateway.amazonaws.com"}
    [policy] = role["Properties"]["Policies"]
    [statement] = policy["PolicyDocument"]["Statement"]
    assert statement["Action"] == list(API_GATEWAY_LOGS_ACTIONS)
    # Every API of the region logs through it: this account's and region's log groups.
    assert statement["Resource"] == [
        {"Fn::Sub": "arn:${AWS::Partition}:logs:${AWS::Region}:${AWS::AccountId}:log-group:*"}
    ]


def test_the_api_stage_and_every_function_are_traced(cfn: dict[str, Any]) -> None:
    assert the_stage(cfn)["TracingEnabled"] is True
    for function in [API_HANDLER, *FUNCTIONS]:
        properties = cfn["Resources"][cfn_name(function)]["Properties"]
        assert properties["TracingConfig"] == {"Mode": "Active"}, function
        # Its role may send the segments (X-Ray's uploads take no resource but "*").
        [policy] = cfn["Resources"][cfn_role_name(function)]["Properties"]["Policies"]
        tracing = [s for s in policy["PolicyDocument"]["Statement"] if s["Sid"] == "Tracing"]
        assert tracing == [
            {
                "Sid": "Tracing",
                "Effect": "Allow",
                "Action": list(TRACING_ACTIONS),
                "Resource": ["*"],
            }
        ]


def test_tracing_costs_the_functions_no_import() -> None:
    """With Lambda's tracing environment, neither function imports the X-Ray SDK (it is
    installed here, so an import would show; Powertools imports its Tracer's module, which
    loads the SDK only when a Tracer is made, and none is)."""
    probe = "import sys, app; print(sorted(m for m in sys.modules if m.startswith('aws_xray_sdk')))"
    tracing = {
        "_X_AMZN_TRACE_ID": "Root=1-5759e988-bd862e3fe1be46a994272793;Sampled=1",
        "AWS_XRAY_CONTEXT_MISSING": "LOG_ERROR",
        "AWS_XRAY_DAEMON_ADDRESS": "169.254.79.129:2000",
    }
    for handler in ("app.app", "app.on_customer_event"):
        env = {
            **os.environ,
            **stage_environment("prod", ROOT),
            **tracing,
            "AWS_DEFAULT_REGION": REGION,
            "_HANDLER": handler,
        }
        result = subprocess.run(
            [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "[]", handler


def test_the_deployment_package_ships_no_xray_sdk(packaged: Path) -> None:
    with zipfile.ZipFile(packaged / "deployment.zip") as archive:
        assert not [n for n in archive.namelist() if n.startswith("aws_xray_sdk")]


def test_the_notifications_are_encrypted_with_the_aws_managed_key(cfn: dict[str, Any]) -> None:
    resources = cfn["Resources"]
    assert resources["NotificationsTopic"]["Properties"]["KmsMasterKeyId"] == "alias/aws/sns"
    # That key's own policy lets the account's principals use it through SNS: no key of
    # the stack's, and no kms: action in the publishers' policies.
    assert not [r for r in resources.values() if r["Type"].startswith("AWS::KMS::")]
    for function in [API_HANDLER, *FUNCTIONS]:
        actions = {a for s in stack_policy(function)["Statement"] for a in s["Action"]}
        assert not [a for a in actions if a.startswith("kms:")], function


def test_the_bucket_keeps_replaced_versions_a_month_and_state_for_ever(cfn: dict[str, Any]) -> None:
    properties = cfn["Resources"]["BodiesBucket"]["Properties"]
    assert properties["VersioningConfiguration"] == {"Status": "Enabled"}
    rules = properties["LifecycleConfiguration"]["Rules"]
    assert all(rule["Status"] == "Enabled" for rule in rules)
    # Only the bodies' current versions expire: nothing under state/ does.
    expiring = [r for r in rules if {"ExpirationInDays", "ExpirationDate"} & set(r)]
    assert [r["Prefix"] for r in expiring] == [BODIES_PREFIX]
    [noncurrent] = [r for r in rules if "NoncurrentVersionExpiration" in r]
    assert "Prefix" not in noncurrent and "TagFilters" not in noncurrent  # the whole bucket
    assert noncurrent["NoncurrentVersionExpiration"] == {
        "NoncurrentDays": NONCURRENT_RETENTION_DAYS
    }
    assert NONCURRENT_RETENTION_DAYS == 30
    assert noncurrent["ExpiredObjectDeleteMarker"] is True
