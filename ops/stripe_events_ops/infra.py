"""The AWS resources of a deployed stage, defined once, deployed two ways.

- Production: `chalice package --merge-template infra/merge.json` gives one SAM template;
  CloudFormation creates the table, bucket, topic and dead-letter queue with the functions,
  and wires each event function's on-failure destination and its rule's dead-letter queue.
- Quick path: `stripe-events infra up --stage dev` creates the same resources with boto3
  for `chalice deploy`, and `infra down` removes them.

Both take names and settings from this module. Every name derives from Chalice's prefix
`{app}-{stage}`; in CloudFormation the prefix is the stack's name, so the stack of stage
`prod` is to be called `stripe-events-prod` (then the CLI's `--stage prod` finds the same
table). Each function has its own IAM policy, built here twice: with exact ARNs
(`Fn::Sub`) in the template, which replace the roles' policies Chalice generates, and as
static files `.chalice/policy-<stage>-<function>.json` for `chalice deploy`.

`stripe-events infra render` writes infra/merge.json, the policy files and their entries
in `.chalice/config.json` from app.py's functions; `make test` fails while they are stale.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import click

from stripe_events.settings import LOCAL_BUS, PARTNER_SOURCE_PREFIX, SettingsError
from stripe_events.stores.schema import (
    EVENTS_FOLDER,
    KEY_SCHEMA,
    RETENTION_DAYS,
    STATE_FOLDER,
    TTL_ATTRIBUTE,
    table_definition,
)
from stripe_events_ops.project import current_project, routing_app, stage_environment

# Chalice's name for the REST API's function: the webhook and the billing route.
API_HANDLER = "api_handler"
# Chalice's rules only listen on the default bus (aws/chalice #1755), so the webhook
# publishes there in every deployed stage.
EVENT_BUS = "default"

# payloads.S3PayloadStore keeps the bodies of oversized events under this prefix, and
# projected items too large for a DynamoDB item under the other, which never expires.
BODIES_PREFIX = f"{EVENTS_FOLDER}/"
STATE_PREFIX = f"{STATE_FOLDER}/"
BODY_RETENTION_DAYS = RETENTION_DAYS
BODY_RULE_ID = "expire-oversized-event-bodies"
# SQS keeps messages at most 14 days: the time to notice a failure and replay it.
DLQ_RETENTION_SECONDS = 14 * 24 * 3600
# Lambda's asynchronous invocation (EventBridge -> function): after the first attempt, two
# retries (the most Lambda allows), then the event goes to the dead-letter queue. Six hours
# (the most) keeps events that wait for a throttled function.
ASYNC_RETRY = {"MaximumRetryAttempts": 2, "MaximumEventAgeInSeconds": 6 * 3600}
# EventBridge's delivery to the function (or to the default bus): its own maximums, so a
# Lambda outage does not drop events; what still fails goes to the dead-letter queue.
RULE_RETRY = {"MaximumRetryAttempts": 185, "MaximumEventAgeInSeconds": 24 * 3600}

PUBLIC_ACCESS_BLOCK = {
    "BlockPublicAcls": True,
    "BlockPublicPolicy": True,
    "IgnorePublicAcls": True,
    "RestrictPublicBuckets": True,
}
# CloudFormation's spelling; the S3 API's is in _lifecycle_rule_api.
LIFECYCLE_RULE: dict[str, Any] = {
    "Id": BODY_RULE_ID,
    "Status": "Enabled",
    "Prefix": BODIES_PREFIX,
    "ExpirationInDays": BODY_RETENTION_DAYS,
}

MERGE_TEMPLATE = Path("infra") / "merge.json"
CONFIG = Path(".chalice") / "config.json"
# How long `infra up` waits for a new table to accept point-in-time recovery.
PITR_WAIT_SECONDS = 120


@dataclass(frozen=True)
class Names:
    """The names of a stage's resources, from the prefix `{app}-{stage}` and the account."""

    prefix: str
    account: str

    @property
    def table(self) -> str:
        return self.prefix

    @property
    def bucket(self) -> str:
        # Bucket names are global: the account makes the name ours.
        return f"{self.prefix}-bodies-{self.account}"

    @property
    def topic(self) -> str:
        return f"{self.prefix}-notifications"

    @property
    def queue(self) -> str:
        return f"{self.prefix}-dlq"

    @property
    def webhook_secret_param(self) -> str:
        return f"/{self.prefix}/webhook-secret"

    @property
    def api_key_param(self) -> str:
        return f"/{self.prefix}/api-key"

    @property
    def partner_forward_rule(self) -> str:
        return f"{self.prefix}-stripe-partner-forward"

    def function(self, name: str) -> str:
        """The Lambda function's name, as `chalice deploy` gives it (at most 64 characters)."""
        # Chalice names the REST API's handler `{app}-{stage}`, without its own name.
        return self.prefix if name == API_HANDLER else f"{self.prefix}-{name}"


@dataclass(frozen=True)
class Stage:
    """A stage of .chalice/config.json, with the environment Chalice gives its functions."""

    app: str
    name: str
    env: dict[str, str]

    @property
    def prefix(self) -> str:
        return f"{self.app}-{self.name}"

    @property
    def deployed(self) -> bool:
        return self.env.get("STRIPE_EVENTS_BUS", "").strip() != LOCAL_BUS

    @property
    def webhook_secret_param(self) -> str:
        return self.env.get("STRIPE_WEBHOOK_SECRET_PARAM", "").strip()

    @property
    def api_key_param(self) -> str:
        return self.env.get("STRIPE_API_KEY_PARAM", "").strip()


def read_config(project_dir: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((project_dir / CONFIG).read_text(encoding="utf-8"))
    return config


def dump_json(document: Any) -> str:
    return json.dumps(document, indent=2) + "\n"


def load_stage(name: str, project_dir: Path) -> Stage:
    app = read_config(project_dir)["app_name"]
    return Stage(app, name, stage_environment(name, project_dir))


def deployed_stages(project_dir: Path) -> list[Stage]:
    """The stages that run on AWS (not on the local bus)."""
    stages = [load_stage(name, project_dir) for name in read_config(project_dir)["stages"]]
    return [stage for stage in stages if stage.deployed]


def event_functions(project_dir: Path) -> list[str]:
    """The names of app.py's @app.on_cw_event functions: one per resource module."""
    from chalice.app import CloudWatchEventConfig

    return [
        source.name
        for source in routing_app(project_dir).event_sources
        if isinstance(source, CloudWatchEventConfig)
    ]


def cfn_name(function: str) -> str:
    """The logical id `chalice package` gives a function (APIHandler for the REST API)."""
    from chalice.utils import to_cfn_resource_name

    return "APIHandler" if function == API_HANDLER else str(to_cfn_resource_name(function))


def cfn_role_name(function: str) -> str:
    """The logical id of the role `chalice package` makes for a function (autogen_policy off)."""
    from chalice.utils import to_cfn_resource_name

    return str(to_cfn_resource_name(f"{function}_role"))


# --- IAM: one policy per function, only what it uses --------------------------------------


@dataclass(frozen=True)
class Place:
    """Where a policy's ARNs point: a stage in the policy files, or the stack in the template."""

    names: Names
    partition: str
    region: str
    account: str
    in_template: bool

    def arn(self, service: str, resource: str) -> Any:
        text = f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"
        return {"Fn::Sub": text} if self.in_template else text

    def s3_arn(self, resource: str) -> Any:
        text = f"arn:{self.partition}:s3:::{resource}"
        return {"Fn::Sub": text} if self.in_template else text


def file_place(stage: Stage) -> Place:
    """The static policy files: exact resource names; any region; any account, except that
    the bucket's name holds the caller's account (an IAM policy variable). The resources'
    own policies keep other accounts out."""
    return Place(Names(stage.prefix, "${aws:PrincipalAccount}"), "aws", "*", "*", False)


# What CloudFormation fills in, inside Fn::Sub: the stack's exact ARNs.
STACK_PLACE = Place(
    Names("${AWS::StackName}", "${AWS::AccountId}"),
    "${AWS::Partition}",
    "${AWS::Region}",
    "${AWS::AccountId}",
    True,
)


def _allow(sid: str, actions: Sequence[str], resources: Sequence[Any]) -> dict[str, Any]:
    return {"Sid": sid, "Effect": "Allow", "Action": list(actions), "Resource": list(resources)}


def function_policy(
    function: str, place: Place, webhook_secret_param: str, api_key_param: str
) -> dict[str, Any]:
    """The IAM policy of one function: its own log group and what its code calls.

    SecureString parameters encrypted with the AWS managed key aws/ssm need no
    kms:Decrypt here: that key's policy lets SSM decrypt for the account's principals.
    A customer managed key would need kms:Decrypt on that key. An empty parameter name
    (the stage reads no such parameter) grants nothing.
    """
    names = place.names
    log_group = f"log-group:/aws/lambda/{names.function(function)}"
    table = place.arn("dynamodb", f"table/{names.table}")
    bucket = names.bucket
    statements = [
        _allow(
            "OwnLogGroup",
            ["logs:CreateLogGroup", "logs:CreateLogStream", "logs:PutLogEvents"],
            [place.arn("logs", log_group), place.arn("logs", f"{log_group}:*")],
        )
    ]
    if function == API_HANDLER:
        statements += [
            _allow(
                "PublishEvents",
                ["events:PutEvents"],
                [place.arn("events", f"event-bus/{EVENT_BUS}")],
            ),
            # Duplicates are looked up in the ledger, published events recorded in it; the
            # billing route reads the projections.
            _allow(
                "LedgerAndBillingState",
                ["dynamodb:GetItem", "dynamodb:Query", "dynamodb:UpdateItem"],
                [table],
            ),
            _allow(
                "KeepOversizedBodies",
                ["s3:PutObject"],
                [place.s3_arn(f"{bucket}/{BODIES_PREFIX}*")],
            ),
            # The billing route reads projected items, which may be kept there.
            _allow(
                "ReadOversizedItems",
                ["s3:GetObject"],
                [place.s3_arn(f"{bucket}/{STATE_PREFIX}*")],
            ),
        ]
        parameters = [("WebhookSigningSecret", webhook_secret_param)]
    else:
        statements += [
            # The ledger, the projections and the idempotency records (conditional puts,
            # and deletes when a handler fails).
            _allow(
                "LedgerStateAndIdempotency",
                [
                    "dynamodb:GetItem",
                    "dynamodb:PutItem",
                    "dynamodb:UpdateItem",
                    "dynamodb:DeleteItem",
                    "dynamodb:Query",
                ],
                [table],
            ),
            _allow("Notify", ["sns:Publish"], [place.arn("sns", names.topic)]),
            # Oversized events' bodies, and what a DynamoDB item cannot hold: a received
            # event's body (the ledger keeps it for replay), a projected item.
            _allow(
                "OversizedBodiesAndItems",
                ["s3:GetObject", "s3:PutObject"],
                [
                    place.s3_arn(f"{bucket}/{BODIES_PREFIX}*"),
                    place.s3_arn(f"{bucket}/{STATE_PREFIX}*"),
                ],
            ),
            # Without it S3 answers a missing body with AccessDenied instead of NoSuchKey,
            # and the dispatcher could not tell a missing body from a permission problem.
            _allow("TellMissingBodies", ["s3:ListBucket"], [place.s3_arn(bucket)]),
            # Lambda sends a failed asynchronous event to the on-failure destination with
            # the function's own role.
            _allow("OnFailureDestination", ["sqs:SendMessage"], [place.arn("sqs", names.queue)]),
        ]
        parameters = [("StripeApiKey", api_key_param)]
    for sid, name in parameters:
        if name:
            arn = place.arn("ssm", "parameter/" + name.lstrip("/"))
            statements.append(_allow(sid, ["ssm:GetParameter"], [arn]))
    return {"Version": "2012-10-17", "Statement": statements}


def file_policy(stage: Stage, function: str) -> dict[str, Any]:
    """The policy file of a function of `stage`, for `chalice deploy`."""
    return function_policy(
        function, file_place(stage), stage.webhook_secret_param, stage.api_key_param
    )


def stack_policy(function: str) -> dict[str, Any]:
    """The policy of a function in the CloudFormation stack: every ARN exact."""
    names = STACK_PLACE.names
    return function_policy(function, STACK_PLACE, names.webhook_secret_param, names.api_key_param)


# The only wildcards a policy may hold: a log group's streams, and the keys of the bodies.
ALLOWED_WILDCARD_ENDINGS = {"logs": (":*",), "s3": (f"/{BODIES_PREFIX}*", f"/{STATE_PREFIX}*")}


def policy_problems(policy: dict[str, Any], *, exact: bool) -> list[str]:
    """What in an IAM policy is broader than one named resource, or than named actions.

    `exact` also refuses "*" for a region or an account (the stack knows both).
    """
    problems = []
    for statement in policy["Statement"]:
        sid = statement.get("Sid", "(no Sid)")
        if statement.get("Effect") != "Allow" or {"NotAction", "NotResource"} & set(statement):
            problems.append(f"{sid}: only plain Allow statements are expected")
        for action in _as_list(statement.get("Action")):
            if "*" in action or ":" not in action:
                problems.append(f"{sid}: action {action!r} is not one named action")
        for resource in _as_list(statement.get("Resource")):
            arn = resource.get("Fn::Sub") if isinstance(resource, dict) else resource
            if isinstance(arn, str):  # a Ref or Fn::GetAtt names one resource of the stack
                problems += _arn_problems(sid, arn, exact)
    return problems


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _arn_problems(sid: str, arn: str, exact: bool) -> list[str]:
    # ${AWS::Region} and ${aws:PrincipalAccount} are filled in with one value each (by
    # CloudFormation, by IAM), never a pattern; their colons must not split the ARN.
    parts = re.sub(r"\$\{[^}]+\}", "VALUE", arn).split(":", 5)
    if len(parts) != 6 or parts[0] != "arn":
        return [f"{sid}: {arn!r} is not an ARN"]
    service, region, account, resource = parts[2:]
    problems = []
    if exact and "*" in region + account:
        problems.append(f"{sid}: {arn!r} does not name its region and account")
    endings = ALLOWED_WILDCARD_ENDINGS.get(service, ())
    name = resource[:-1] if resource.endswith(endings) else resource
    if not name or "*" in name or "?" in name:
        problems.append(f"{sid}: {arn!r} names no single resource")
    return problems


def policy_file(stage: Stage, function: str) -> str:
    return f"policy-{stage.name}-{function}.json"


# --- CloudFormation: merged into what `chalice package` generates --------------------------


def _sub(text: str) -> dict[str, str]:
    return {"Fn::Sub": text}


def _stack_arn(service: str, resource: str) -> Any:
    return STACK_PLACE.arn(service, resource)


def _function_resources(function: str, environment: dict[str, Any]) -> dict[str, Any]:
    """What the template adds to a function of Chalice's, and to its role."""
    names = STACK_PLACE.names
    role = cfn_role_name(function)
    properties: dict[str, Any] = {
        # The name `chalice deploy` would give it: log groups and rules follow from it.
        "FunctionName": _sub(names.function(function)),
        "Environment": environment,
    }
    return {
        cfn_name(function): {"Properties": properties},
        # SAM ignores a function's Policies when it has a Role, and Chalice always sets one:
        # so the template replaces the role's policy (a list: the merge replaces it whole).
        role: {
            "Properties": {
                "Policies": [
                    {"PolicyName": f"{role}Policy", "PolicyDocument": stack_policy(function)}
                ]
            }
        },
    }


def merge_template(functions: Sequence[str]) -> dict[str, Any]:
    """The template to merge into `chalice package`'s output, for these event functions.

    Chalice merges it into its own template by key: a resource with the logical id of one
    of Chalice's (`Customers`, `CustomersRole`, `APIHandler`) extends it, any other is
    added; a list replaces Chalice's. Functions get the names `chalice deploy` would give
    them, exact policies, and an environment that points at the stack's own resources.
    """
    names = STACK_PLACE.names
    dlq_arn = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    environment = {
        "Variables": {
            "STRIPE_EVENTS_TABLE": {"Ref": "Table"},
            "STRIPE_EVENTS_BUCKET": {"Ref": "BodiesBucket"},
            "STRIPE_EVENTS_TOPIC_ARN": {"Ref": "NotificationsTopic"},
            "STRIPE_WEBHOOK_SECRET_PARAM": _sub(names.webhook_secret_param),
            "STRIPE_API_KEY_PARAM": _sub(names.api_key_param),
        }
    }
    resources: dict[str, Any] = {
        "Table": {
            "Type": "AWS::DynamoDB::Table",
            # The ledger is the record of what ran: keep it when the stack goes.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "TableName": _sub(names.table),
                **table_definition(),
                "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        },
        "BodiesBucket": {
            "Type": "AWS::S3::Bucket",
            # CloudFormation cannot delete a bucket that still holds bodies.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "BucketName": _sub(names.bucket),
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCK,
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "LifecycleConfiguration": {"Rules": [LIFECYCLE_RULE]},
            },
        },
        "NotificationsTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": _sub(names.topic)},
        },
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": _sub(names.queue),
                "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        },
    }
    resources.update(_function_resources(API_HANDLER, environment))
    rule_arns: list[Any] = []
    for function in functions:
        logical = cfn_name(function)
        rule_name = names.function(function)
        rule_arns.append(_stack_arn("events", f"rule/{rule_name}"))
        resources.update(_function_resources(function, environment))
        resources[logical]["Properties"]["Events"] = {
            f"{logical}Event": {
                "Properties": {
                    # A known name, so the queue's policy can name the rule.
                    "RuleName": _sub(rule_name),
                    "DeadLetterConfig": {"Arn": dlq_arn},
                    "RetryPolicy": RULE_RETRY,
                }
            }
        }
        resources[f"{logical}EventInvokeConfig"] = {
            "Type": "AWS::Lambda::EventInvokeConfig",
            "Properties": {
                "FunctionName": {"Ref": logical},
                "Qualifier": "$LATEST",
                **ASYNC_RETRY,
                "DestinationConfig": {"OnFailure": {"Destination": dlq_arn}},
            },
        }
    rule_arns.append(
        {
            "Fn::If": [
                "ForwardFromStripePartnerBus",
                _stack_arn(
                    "events", f"rule/${{StripePartnerEventSource}}/{names.partner_forward_rule}"
                ),
                {"Ref": "AWS::NoValue"},
            ]
        }
    )
    resources["DeadLetterQueuePolicy"] = {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": "DeadLetterQueue"}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        # EventBridge sends what its rules could not deliver; only our rules.
                        "Sid": "RulesDeadLetters",
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": dlq_arn,
                        "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                    }
                ],
            },
        },
    }
    resources.update(_partner_forwarding(names, dlq_arn))
    return {
        "Parameters": {
            "StripePartnerEventSource": {
                "Type": "String",
                "Default": "",
                "AllowedPattern": f"^$|^{PARTNER_SOURCE_PREFIX.replace('.', '[.]')}.+$",
                "Description": (
                    "The partner event source of Stripe's EventBridge destination "
                    f"({PARTNER_SOURCE_PREFIX}ed_...). When set, the stack creates its event "
                    "bus and forwards its events to the default bus, where the functions' "
                    "rules match them. Leave empty for webhooks only."
                ),
            }
        },
        "Conditions": {
            "ForwardFromStripePartnerBus": {
                "Fn::Not": [{"Fn::Equals": [{"Ref": "StripePartnerEventSource"}, ""]}]
            }
        },
        "Resources": resources,
        "Outputs": {
            "TableName": {"Value": {"Ref": "Table"}},
            "BodiesBucketName": {"Value": {"Ref": "BodiesBucket"}},
            "NotificationsTopicArn": {"Value": {"Ref": "NotificationsTopic"}},
            "DeadLetterQueueUrl": {"Value": {"Ref": "DeadLetterQueue"}},
        },
    }


def _partner_forwarding(names: Names, dlq_arn: dict[str, Any]) -> dict[str, Any]:
    """A rule on Stripe's partner event bus that forwards every event to the default bus.

    Chalice's rules only listen on the default bus (aws/chalice #1755).
    """
    condition = "ForwardFromStripePartnerBus"
    default_bus = _stack_arn("events", "event-bus/default")
    return {
        "StripePartnerEventBus": {
            "Type": "AWS::Events::EventBus",
            "Condition": condition,
            # Creating the bus with the source's name associates it with the source.
            "Properties": {
                "Name": {"Ref": "StripePartnerEventSource"},
                "EventSourceName": {"Ref": "StripePartnerEventSource"},
            },
        },
        "StripePartnerForwardRole": {
            "Type": "AWS::IAM::Role",
            "Condition": condition,
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "events.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                            "Condition": {
                                "StringEquals": {"aws:SourceAccount": {"Ref": "AWS::AccountId"}}
                            },
                        }
                    ],
                },
                "Policies": [
                    {
                        "PolicyName": "PutEventsOnTheDefaultBus",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                {
                                    "Effect": "Allow",
                                    "Action": ["events:PutEvents"],
                                    "Resource": [default_bus],
                                }
                            ],
                        },
                    }
                ],
            },
        },
        "StripePartnerForwardRule": {
            "Type": "AWS::Events::Rule",
            "Condition": condition,
            "Properties": {
                "Name": _sub(names.partner_forward_rule),
                "EventBusName": {"Ref": "StripePartnerEventBus"},
                "EventPattern": {"source": [{"prefix": PARTNER_SOURCE_PREFIX}]},
                "State": "ENABLED",
                "Targets": [
                    {
                        "Id": "DefaultBus",
                        "Arn": default_bus,
                        "RoleArn": {"Fn::GetAtt": ["StripePartnerForwardRole", "Arn"]},
                        "DeadLetterConfig": {"Arn": dlq_arn},
                        "RetryPolicy": RULE_RETRY,
                    }
                ],
            },
        },
    }


# --- infra render: the generated files ----------------------------------------------------


def planned_files(project_dir: Path) -> dict[Path, str]:
    """Every generated file and its content: the merge template, the policy files, the config.

    In the config, each deployed stage's `lambda_functions` names each function's policy
    file; entries of functions that no longer exist lose theirs.
    """
    functions = event_functions(project_dir)
    config = read_config(project_dir)
    files = {project_dir / MERGE_TEMPLATE: dump_json(merge_template(functions))}
    for stage in deployed_stages(project_dir):
        stage_config = config["stages"][stage.name]
        lambda_functions: dict[str, Any] = stage_config.setdefault("lambda_functions", {})
        for name in list(lambda_functions):
            if name not in (API_HANDLER, *functions):
                lambda_functions[name].pop("iam_policy_file", None)
                if not lambda_functions[name]:
                    del lambda_functions[name]
        for function in (API_HANDLER, *functions):
            filename = policy_file(stage, function)
            files[project_dir / ".chalice" / filename] = dump_json(file_policy(stage, function))
            lambda_functions.setdefault(function, {})["iam_policy_file"] = filename
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


# --- infra up / down: the same resources with boto3, for `chalice deploy` ------------------


class Aws:
    """The clients for one stage, in the region and account of the current credentials."""

    def __init__(self) -> None:
        import boto3
        from botocore.config import Config

        session = boto3.session.Session()
        if not session.region_name:
            raise click.UsageError(
                "no AWS region: set AWS_REGION (or a profile's region), as for `chalice deploy`"
            )
        self.region: str = session.region_name
        self.partition: str = session.get_partition_for_region(self.region)
        config = Config(connect_timeout=5, read_timeout=30, retries={"mode": "standard"})
        self.client: Callable[[str], Any] = lambda service: session.client(service, config=config)
        self.account: str = self.client("sts").get_caller_identity()["Account"]

    def arn(self, service: str, resource: str) -> str:
        return f"arn:{self.partition}:{service}:{self.region}:{self.account}:{resource}"


def _error_code(error: Exception) -> str:
    response = getattr(error, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def ensure_table(dynamodb: Any, name: str) -> list[str]:
    try:
        table = dynamodb.describe_table(TableName=name)["Table"]
    except dynamodb.exceptions.ResourceNotFoundException:
        dynamodb.create_table(
            TableName=name,
            KeySchema=[{"AttributeName": k, "KeyType": kind} for k, kind in KEY_SCHEMA],
            AttributeDefinitions=[
                {"AttributeName": k, "AttributeType": "S"} for k, _ in KEY_SCHEMA
            ],
            BillingMode="PAY_PER_REQUEST",
        )
        dynamodb.get_waiter("table_exists").wait(TableName=name)
        _ensure_ttl(dynamodb, name)
        _ensure_pitr(dynamodb, name)
        return [
            f"created table {name} (keys pk, sk; on demand; TTL on {TTL_ATTRIBUTE}; "
            "point-in-time recovery)"
        ]
    keys = tuple((k["AttributeName"], k["KeyType"]) for k in table["KeySchema"])
    if keys != KEY_SCHEMA:
        raise click.ClickException(
            f"table {name} exists with keys {keys}; the app needs {KEY_SCHEMA}. Delete it "
            "or pick another stage name."
        )
    lines = [f"table {name} exists"]
    if _ensure_ttl(dynamodb, name):
        lines.append(f"table {name}: turned on TTL on {TTL_ATTRIBUTE}")
    if _ensure_pitr(dynamodb, name):
        lines.append(f"table {name}: turned on point-in-time recovery")
    return lines


def _ensure_ttl(dynamodb: Any, name: str) -> bool:
    ttl = dynamodb.describe_time_to_live(TableName=name)["TimeToLiveDescription"]
    status, attribute = ttl.get("TimeToLiveStatus"), ttl.get("AttributeName")
    if status in ("ENABLED", "ENABLING") and attribute == TTL_ATTRIBUTE:
        return False
    if status in ("ENABLED", "ENABLING"):
        raise click.ClickException(
            f"table {name} expires items by {attribute!r}; Powertools' idempotency records "
            f"need {TTL_ATTRIBUTE!r}. Turn its TTL off, wait an hour (AWS's rule), run again."
        )
    dynamodb.update_time_to_live(
        TableName=name,
        TimeToLiveSpecification={"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
    )
    return True


def _ensure_pitr(dynamodb: Any, name: str) -> bool:
    backups = dynamodb.describe_continuous_backups(TableName=name)
    description = backups["ContinuousBackupsDescription"]
    pitr = description.get("PointInTimeRecoveryDescription", {})
    if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
        return False
    # A table that was just created refuses for a little while ("backups are being
    # enabled"): wait for it, within a bound.
    deadline = time.monotonic() + PITR_WAIT_SECONDS
    while True:
        try:
            dynamodb.update_continuous_backups(
                TableName=name,
                PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
            )
            return True
        except dynamodb.exceptions.ContinuousBackupsUnavailableException:
            if time.monotonic() > deadline:
                raise
            time.sleep(5)


def _bucket_exists(s3: Any, name: str) -> bool:
    from botocore.exceptions import ClientError

    try:
        s3.head_bucket(Bucket=name)
    except ClientError as error:
        code = _error_code(error)
        if code in ("404", "NoSuchBucket", "NotFound"):
            return False
        if code in ("403", "AccessDenied", "Forbidden"):
            raise click.ClickException(
                f"bucket {name} belongs to another account, or these credentials may not read it"
            ) from None
        raise
    return True


def ensure_bucket(s3: Any, name: str, region: str) -> list[str]:
    from botocore.exceptions import ClientError

    if not _bucket_exists(s3, name):
        # us-east-1 is the one region that refuses an explicit location constraint.
        location = {} if region == "us-east-1" else {"LocationConstraint": region}
        s3.create_bucket(
            Bucket=name,
            **({"CreateBucketConfiguration": location} if location else {}),
            ObjectOwnership="BucketOwnerEnforced",
        )
        s3.get_waiter("bucket_exists").wait(Bucket=name)
        _put_public_access_block(s3, name)
        _put_encryption(s3, name)
        _put_lifecycle(s3, name, [])
        return [
            f"created bucket {name} (encrypted, public access blocked, "
            f"bodies under {BODIES_PREFIX} expire after {BODY_RETENTION_DAYS} days)"
        ]
    lines = [f"bucket {name} exists"]
    try:
        block = s3.get_public_access_block(Bucket=name)["PublicAccessBlockConfiguration"]
    except ClientError:
        block = {}
    if block != PUBLIC_ACCESS_BLOCK:
        _put_public_access_block(s3, name)
        lines.append(f"bucket {name}: blocked public access")
    try:
        s3.get_bucket_encryption(Bucket=name)
    except ClientError:
        _put_encryption(s3, name)
        lines.append(f"bucket {name}: turned on default encryption")
    try:
        rules = s3.get_bucket_lifecycle_configuration(Bucket=name)["Rules"]
    except ClientError:
        rules = []
    if not any(_is_our_lifecycle_rule(rule) for rule in rules):
        _put_lifecycle(s3, name, [r for r in rules if r.get("ID") != BODY_RULE_ID])
        lines.append(
            f"bucket {name}: bodies under {BODIES_PREFIX} now expire after "
            f"{BODY_RETENTION_DAYS} days"
        )
    return lines


def _put_public_access_block(s3: Any, name: str) -> None:
    s3.put_public_access_block(Bucket=name, PublicAccessBlockConfiguration=PUBLIC_ACCESS_BLOCK)


def _put_encryption(s3: Any, name: str) -> None:
    s3.put_bucket_encryption(
        Bucket=name,
        ServerSideEncryptionConfiguration={
            "Rules": [{"ApplyServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}]
        },
    )


def _lifecycle_rule_api() -> dict[str, Any]:
    """LIFECYCLE_RULE as the S3 API spells it (CloudFormation's names differ)."""
    return {
        "ID": BODY_RULE_ID,
        "Status": "Enabled",
        "Filter": {"Prefix": BODIES_PREFIX},
        "Expiration": {"Days": BODY_RETENTION_DAYS},
    }


def _is_our_lifecycle_rule(rule: dict[str, Any]) -> bool:
    prefix = rule.get("Filter", {}).get("Prefix", rule.get("Prefix"))
    days = rule.get("Expiration", {}).get("Days")
    return (
        rule.get("ID") == BODY_RULE_ID
        and rule.get("Status") == "Enabled"
        and prefix == BODIES_PREFIX
        and isinstance(days, int)
        and days >= BODY_RETENTION_DAYS
    )


def _put_lifecycle(s3: Any, name: str, other_rules: list[dict[str, Any]]) -> None:
    s3.put_bucket_lifecycle_configuration(
        Bucket=name,
        LifecycleConfiguration={"Rules": [*other_rules, _lifecycle_rule_api()]},
    )


def ensure_topic(sns: Any, name: str, arn: str) -> list[str]:
    try:
        sns.get_topic_attributes(TopicArn=arn)
    except sns.exceptions.NotFoundException:
        sns.create_topic(Name=name)
        return [f"created topic {name}"]
    return [f"topic {name} exists"]


def ensure_queue(sqs: Any, name: str) -> list[str]:
    try:
        sqs.get_queue_url(QueueName=name)
    except sqs.exceptions.QueueDoesNotExist:
        try:
            sqs.create_queue(
                QueueName=name,
                Attributes={
                    "MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS),
                    "SqsManagedSseEnabled": "true",
                },
            )
        except sqs.exceptions.QueueDeletedRecently:
            raise click.ClickException(
                f"queue {name} was deleted less than a minute ago, and SQS gives its name "
                "back only after 60 s: run `infra up` again in a minute"
            ) from None
        return [f"created queue {name} (keeps messages for {DLQ_RETENTION_SECONDS // 86400} days)"]
    return [f"queue {name} exists"]


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


def wire_function(lambda_: Any, function: str, queue_arn: str) -> str | None:
    """Send a deployed function's failed asynchronous events to the dead-letter queue.

    None when the function is not deployed (yet).
    """
    try:
        lambda_.get_function(FunctionName=function)
    except lambda_.exceptions.ResourceNotFoundException:
        return None
    wanted = {**ASYNC_RETRY, "DestinationConfig": {"OnFailure": {"Destination": queue_arn}}}
    try:
        current = lambda_.get_function_event_invoke_config(FunctionName=function)
    except lambda_.exceptions.ResourceNotFoundException:
        current = {}
    if all(current.get(key) == value for key, value in wanted.items()):
        return f"function {function} sends its failed events to the dead-letter queue"
    lambda_.put_function_event_invoke_config(FunctionName=function, **wanted)
    return f"function {function}: its failed events now go to the dead-letter queue"


def unwire_function(lambda_: Any, function: str) -> list[str]:
    try:
        lambda_.delete_function_event_invoke_config(FunctionName=function)
    except lambda_.exceptions.ResourceNotFoundException:
        return []
    return [f"function {function}: removed its on-failure destination"]


def delete_queue(sqs: Any, name: str) -> list[str]:
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except sqs.exceptions.QueueDoesNotExist:
        return [f"queue {name} does not exist"]
    sqs.delete_queue(QueueUrl=url)
    return [f"deleted queue {name}"]


def delete_topic(sns: Any, name: str, arn: str) -> list[str]:
    try:
        sns.get_topic_attributes(TopicArn=arn)
    except sns.exceptions.NotFoundException:
        return [f"topic {name} does not exist"]
    sns.delete_topic(TopicArn=arn)
    return [f"deleted topic {name}"]


def delete_bucket(s3: Any, name: str) -> list[str]:
    if not _bucket_exists(s3, name):
        return [f"bucket {name} does not exist"]
    deleted = 0
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=name):
        keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
        if keys:  # a page holds at most 1,000 keys: what delete_objects takes
            s3.delete_objects(Bucket=name, Delete={"Objects": keys, "Quiet": True})
            deleted += len(keys)
    s3.delete_bucket(Bucket=name)
    return [f"deleted bucket {name} ({deleted} object(s))"]


def delete_table(dynamodb: Any, name: str) -> list[str]:
    try:
        dynamodb.delete_table(TableName=name)
    except dynamodb.exceptions.ResourceNotFoundException:
        return [f"table {name} does not exist"]
    dynamodb.get_waiter("table_not_exists").wait(TableName=name)
    return [f"deleted table {name}"]


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


def infra_up(stage: Stage, project_dir: Path, functions: Iterable[str]) -> list[str]:
    aws = Aws()
    names = Names(stage.prefix, aws.account)
    topic_arn = aws.arn("sns", names.topic)
    sqs = aws.client("sqs")
    ssm = aws.client("ssm")
    lines = [
        *ensure_table(aws.client("dynamodb"), names.table),
        *ensure_bucket(aws.client("s3"), names.bucket, aws.region),
        *ensure_topic(aws.client("sns"), names.topic, topic_arn),
        *ensure_queue(sqs, names.queue),
        *check_parameter(ssm, stage.webhook_secret_param, "the webhook's signing secret"),
        *check_parameter(
            ssm,
            stage.api_key_param,
            "a Stripe API key",
            "; or remove STRIPE_API_KEY_PARAM from the stage",
        ),
    ]
    lambda_ = aws.client("lambda")
    queue_arn = aws.arn("sqs", names.queue)
    missing = []
    for function in functions:
        line = wire_function(lambda_, names.function(function), queue_arn)
        if line is None:
            missing.append(function)
        else:
            lines.append(line)
    if missing:
        lines.append(
            f"functions not deployed yet: {', '.join(missing)}; after `chalice deploy`, run "
            "`infra up` again to send their failed events to the dead-letter queue"
        )
    lines += set_stage_variables(
        project_dir,
        stage.name,
        {
            "STRIPE_EVENTS_TABLE": names.table,
            "STRIPE_EVENTS_BUCKET": names.bucket,
            "STRIPE_EVENTS_TOPIC_ARN": topic_arn,
        },
    )
    return lines


def infra_down(stage: Stage, functions: Iterable[str]) -> list[str]:
    aws = Aws()
    names = Names(stage.prefix, aws.account)
    lambda_ = aws.client("lambda")
    lines: list[str] = []
    for function in functions:
        lines += unwire_function(lambda_, names.function(function))
    return [
        *lines,
        *delete_queue(aws.client("sqs"), names.queue),
        *delete_topic(aws.client("sns"), names.topic, aws.arn("sns", names.topic)),
        *delete_bucket(aws.client("s3"), names.bucket),
        *delete_table(aws.client("dynamodb"), names.table),
    ]


# --- the `stripe-events infra` commands ---------------------------------------------------


def _deployed_stage(name: str) -> Stage:
    try:
        stage = load_stage(name, current_project())
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    if not stage.deployed:
        raise click.UsageError(f"stage {name!r} runs on the local bus and needs no AWS resources")
    return stage


stage_argument = click.option(
    "--stage", required=True, help="A deployed stage of .chalice/config.json, e.g. dev."
)


@click.group(name="infra")
def infra_group() -> None:
    """A stage's AWS resources: DynamoDB table, S3 bucket, SNS topic, dead-letter queue."""


@infra_group.command(name="up")
@stage_argument
def up_command(stage: str) -> None:
    """Create the stage's resources for `chalice deploy`, or check them. Safe to run again.

    It writes the bucket's name and the topic's ARN into the stage's environment in
    .chalice/config.json. Run it again after the first `chalice deploy`: it then sends the
    functions' failed events to the dead-letter queue.
    """
    project = current_project()
    for line in infra_up(_deployed_stage(stage), project, event_functions(project)):
        click.echo(line)


@infra_group.command(name="down")
@stage_argument
@click.option("--yes", is_flag=True, help="Do not ask first.")
def down_command(stage: str, yes: bool) -> None:
    """Delete the stage's resources and their data (not its functions, nor its SSM parameters)."""
    chosen = _deployed_stage(stage)
    if not yes:
        click.confirm(
            f"Delete the table, bucket, topic and queue of stage {stage} ({chosen.prefix}), "
            "with the ledger and every stored body?",
            abort=True,
        )
    for line in infra_down(chosen, event_functions(current_project())):
        click.echo(line)


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
