"""The one definition of a deployed stage's AWS resources: a CloudFormation template.

Two templates come out of it, with the same resources:

- `merge_template(functions)`, for `chalice package --merge-template infra/merge.json`:
  the table, bucket, topic and dead-letter queue, and what it adds to Chalice's own
  functions (names, environment, exact policies, tracing, optional reserved concurrency,
  on-failure destinations, the rules' dead-letter queue and retries) and to its REST
  API's stage (throttling, access logs, tracing). CloudFormation deploys it all as one
  stack.
- `stage_stack_template(deployed)`, for `chalice deploy`: the same resources as a stack
  of their own, which `stripe-events infra up` deploys, and the on-failure destinations
  of the functions `chalice deploy` has made. Chalice manages those functions, their rules
  and the REST API: on this path the rules have no dead-letter queue of their own, and
  the stage is neither throttled nor access logged; `xray` in .chalice/config.json
  (`infra render`) traces the functions and the stage.

Both have the stage's alarms and dashboard (monitoring.py).

Names come from schema.py (the table's keys, index and TTL, the bucket's folders) and from the
stack's name, `{app}-{stage}`: `${AWS::StackName}` is the prefix of every name, so the
stack of stage `prod` is `stripe-events-prod`, and the CLI's `--stage prod` finds the
same table. Each function has its own IAM policy, built here twice: with exact ARNs
(`Fn::Sub`) in the template, and as static files `.chalice/policy-<stage>-<function>.json`
for `chalice deploy`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from stripe_events._schema import (
    EVENTS_FOLDER,
    INDEX_KEY_SCHEMA,
    KEY_SCHEMA,
    LEDGER_INDEX,
    RETENTION_DAYS,
    STATE_FOLDER,
    TTL_ATTRIBUTE,
)
from stripe_events._settings import PARTNER_SOURCE_PREFIX
from stripe_events_ops.monitoring import (
    Watched,
    monitoring_conditions,
    monitoring_parameters,
    monitoring_resources,
    service_variable,
    sub,
)
from stripe_events_ops.project import Stage


def _key_schema(keys: tuple[tuple[str, str], ...]) -> list[dict[str, str]]:
    return [{"AttributeName": key, "KeyType": kind} for key, kind in keys]


def table_definition() -> dict[str, Any]:
    """The table's keys, its index and billing, as both CreateTable and CloudFormation
    spell them."""
    return {
        "BillingMode": "PAY_PER_REQUEST",
        "AttributeDefinitions": [
            {"AttributeName": key, "AttributeType": "S"}
            for key, _ in (*KEY_SCHEMA, *INDEX_KEY_SCHEMA)
        ],
        "KeySchema": _key_schema(KEY_SCHEMA),
        "GlobalSecondaryIndexes": [
            {
                "IndexName": LEDGER_INDEX,
                "KeySchema": _key_schema(INDEX_KEY_SCHEMA),
                # The queries need the event ids (in pk) and the order, nothing else: each
                # entry is then read from the table, as `event` reads it.
                "Projection": {"ProjectionType": "KEYS_ONLY"},
            }
        ],
    }


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
# The bucket is versioned, so that a body or an item overwritten or deleted by mistake (a
# bug, a stray `aws s3 rm`) can be restored; a month is the time to notice. Its older
# versions then expire, and so do the delete markers they leave: without that rule, every
# update of a large projected item under state/ would keep its old copy forever.
NONCURRENT_RETENTION_DAYS = 30
NONCURRENT_RULE_ID = "expire-replaced-versions"
LIFECYCLE_RULES: list[dict[str, Any]] = [
    # The current version of a body expires (S3 puts a delete marker over it); state/ has
    # no such rule: an item stays as long as the store keeps it.
    {
        "Id": BODY_RULE_ID,
        "Status": "Enabled",
        "Prefix": BODIES_PREFIX,
        "ExpirationInDays": BODY_RETENTION_DAYS,
    },
    {
        "Id": NONCURRENT_RULE_ID,
        "Status": "Enabled",
        "NoncurrentVersionExpiration": {"NoncurrentDays": NONCURRENT_RETENTION_DAYS},
        "ExpiredObjectDeleteMarker": True,
    },
]
# The notifications carry customers' ids and hosted invoice URLs. The AWS managed key
# needs no key policy of ours: it lets the account's principals use it through SNS, which
# is how the functions publish.
NOTIFICATIONS_KEY = "alias/aws/sns"


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


# X-Ray's uploads of trace segments: IAM cannot scope them to a resource.
TRACING_ACTIONS = ("xray:PutTraceSegments", "xray:PutTelemetryRecords")


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
        ),
        # Lambda's active tracing sends the function's segments with its own role.
        _allow("Tracing", TRACING_ACTIONS, ["*"]),
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
            # The ledger, the projections and the runs' claims (conditional puts,
            # and deletes when a handler fails).
            _allow(
                "LedgerStateAndClaims",
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
    """The policy file of a function of `stage`, for `chalice deploy`; its Id says it is
    generated (an IAM policy has no room for comments)."""
    policy = function_policy(
        function, file_place(stage), stage.webhook_secret_param, stage.api_key_param
    )
    return {"Version": policy["Version"], "Id": GENERATED_POLICY_ID, **policy}


GENERATED_POLICY_ID = "generated-by-stripe-events-infra-render"


def stack_policy(function: str) -> dict[str, Any]:
    """The policy of a function in the CloudFormation stack: every ARN exact."""
    names = STACK_PLACE.names
    return function_policy(function, STACK_PLACE, names.webhook_secret_param, names.api_key_param)


# The only wildcards a policy may hold: a log group's streams, and the keys of the bodies;
# and Resource "*" for X-Ray's uploads, which IAM cannot scope to a resource.
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
        actions = _as_list(statement.get("Action"))
        for action in actions:
            if "*" in action or ":" not in action:
                problems.append(f"{sid}: action {action!r} is not one named action")
        unscoped = set(actions) <= set(TRACING_ACTIONS)
        for resource in _as_list(statement.get("Resource")):
            if resource == "*" and unscoped:
                continue
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


def _stack_arn(service: str, resource: str) -> Any:
    return STACK_PLACE.arn(service, resource)


def _function_resources(function: str, environment: dict[str, Any]) -> dict[str, Any]:
    """What the template adds to a function of Chalice's, and to its role."""
    names = STACK_PLACE.names
    role = cfn_role_name(function)
    concurrency = WEBHOOK_CONCURRENCY if function == API_HANDLER else EVENT_FUNCTION_CONCURRENCY
    properties: dict[str, Any] = {
        # The name `chalice deploy` would give it: log groups and rules follow from it.
        "FunctionName": sub(names.function(function)),
        "Environment": environment,
        # Lambda records the segments itself: the functions import no X-Ray SDK, so tracing
        # costs their cold start nothing.
        "Tracing": "Active",
        "ReservedConcurrentExecutions": {
            "Fn::If": [concurrency.condition, {"Ref": concurrency.name}, {"Ref": "AWS::NoValue"}]
        },
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


# --- The public API's stage and the functions' concurrency (the merge template's own) -----

# API Gateway's throttle of the stage, for every route (the webhook, the billing route).
# Stripe's API takes at most 100 requests a second from an account in live mode (its
# default limit), each making an event or a few, and Stripe's own runs (renewals, a
# billing date's invoices) send bursts: 100 a second with bursts of 200 lets them through.
# A flood of forged deliveries, each of which runs the webhook's function (where the
# signature is checked), stays at about 5 functions at once: it can neither starve the
# event functions of the account's concurrency nor run up the bill. Past the limit API
# Gateway answers 429, which Stripe retries as it retries any failure, for up to 3 days:
# a delivery is late, never lost.
THROTTLING_RATE = "ApiThrottlingRateLimit"
THROTTLING_BURST = "ApiThrottlingBurstLimit"
DEFAULT_RATE_LIMIT = 100
DEFAULT_BURST_LIMIT = 200


@dataclass(frozen=True)
class Concurrency:
    """A reserved concurrency parameter, and the condition that it reserves any."""

    name: str
    condition: str
    description: str


WEBHOOK_CONCURRENCY = Concurrency(
    "WebhookReservedConcurrency",
    "ReserveWebhookConcurrency",
    "Concurrent executions reserved for the webhook's function: always there for Stripe's "
    "deliveries, however busy the event functions are, and also its ceiling. Empty or 0: "
    "unreserved, from the account's shared pool.",
)
EVENT_FUNCTION_CONCURRENCY = Concurrency(
    "EventFunctionReservedConcurrency",
    "ReserveEventFunctionConcurrency",
    "Concurrent executions reserved for each event function, and its ceiling: a storm of "
    "events then cannot take the account's whole pool, and Lambda retries what it throttles "
    "for up to 6 hours. Empty or 0: unreserved, from the account's shared pool.",
)

# API Gateway writes access logs with one IAM role per account and region, its account
# setting, and refuses to make a stage with access logs while none is set.
LOGS_ROLE_PARAMETER = "ApiGatewayCloudWatchRole"
CREATE_LOGS_ROLE = "CreateApiGatewayLogsRole"
ACCESS_LOGS = "ApiAccessLogs"
# A year of who called the public endpoint and what it answered (PCI DSS keeps audit
# trails that long); a line is about 500 bytes, so a million deliveries keep 0.5 GB.
ACCESS_LOG_RETENTION_DAYS = 365
# One JSON line per request, with no header or body (nothing secret): who called, what it
# answered, how long it took, and the trace to follow it into the function.
ACCESS_LOG_FORMAT = json.dumps(
    {
        "requestId": "$context.requestId",
        "time": "$context.requestTime",
        "ip": "$context.identity.sourceIp",
        "userAgent": "$context.identity.userAgent",
        "caller": "$context.identity.userArn",
        "method": "$context.httpMethod",
        "path": "$context.resourcePath",
        "status": "$context.status",
        "responseLength": "$context.responseLength",
        "latencyMs": "$context.responseLatency",
        "integrationStatus": "$context.integration.status",
        "error": "$context.error.message",
        "xrayTraceId": "$context.xrayTraceId",
    },
    separators=(",", ":"),
)


def _api_parameters() -> dict[str, Any]:
    reserved = {
        concurrency.name: {
            "Type": "String",
            "Default": "",
            "AllowedPattern": "^[0-9]*$",
            "Description": concurrency.description,
        }
        for concurrency in (WEBHOOK_CONCURRENCY, EVENT_FUNCTION_CONCURRENCY)
    }
    return {
        THROTTLING_RATE: {
            "Type": "Number",
            "Default": DEFAULT_RATE_LIMIT,
            "MinValue": 1,
            "Description": "Requests a second the API's stage takes, steadily; past it API "
            "Gateway answers 429, and Stripe retries the delivery later.",
        },
        THROTTLING_BURST: {
            "Type": "Number",
            "Default": DEFAULT_BURST_LIMIT,
            "MinValue": 1,
            "Description": "Requests the API's stage takes at once, above the steady rate.",
        },
        **reserved,
        LOGS_ROLE_PARAMETER: {
            "Type": "String",
            "Default": "create",
            "AllowedValues": ["create", "existing"],
            "Description": "API Gateway writes access logs with one IAM role per account and "
            "region. create: the stack makes it and sets it (the role stays when the stack is "
            "deleted, for the account's other APIs). existing: the account already has one "
            "(set by your organisation or another stack); without one the stage fails.",
        },
    }


def _api_conditions() -> dict[str, Any]:
    reserved = {
        concurrency.condition: {
            "Fn::Not": [
                {
                    "Fn::Or": [
                        {"Fn::Equals": [{"Ref": concurrency.name}, ""]},
                        {"Fn::Equals": [{"Ref": concurrency.name}, "0"]},
                    ]
                }
            ]
        }
        for concurrency in (WEBHOOK_CONCURRENCY, EVENT_FUNCTION_CONCURRENCY)
    }
    create = {"Fn::Equals": [{"Ref": LOGS_ROLE_PARAMETER}, "create"]}
    return {**reserved, CREATE_LOGS_ROLE: create}


def _api_logging_resources() -> dict[str, Any]:
    """The access logs' group, and the account's logging role when the stack makes it."""
    return {
        ACCESS_LOGS: {
            "Type": "AWS::Logs::LogGroup",
            "Properties": {
                "LogGroupName": sub("/aws/apigateway/${AWS::StackName}/access"),
                "RetentionInDays": ACCESS_LOG_RETENTION_DAYS,
            },
        },
        "ApiGatewayLogsRole": {
            "Type": "AWS::IAM::Role",
            "Condition": CREATE_LOGS_ROLE,
            # The account setting keeps pointing at it after the stack is gone, and every
            # API of the region logs through it.
            "DeletionPolicy": "Retain",
            "UpdateReplacePolicy": "Retain",
            "Properties": {
                "AssumeRolePolicyDocument": {
                    "Version": "2012-10-17",
                    "Statement": [
                        {
                            "Effect": "Allow",
                            "Principal": {"Service": "apigateway.amazonaws.com"},
                            "Action": "sts:AssumeRole",
                        }
                    ],
                },
                # AmazonAPIGatewayPushToCloudWatchLogs' actions, on this region's log groups
                # only: the role serves every API of the region, so no one group can be named.
                "Policies": [
                    {
                        "PolicyName": "PushApiLogsToCloudWatch",
                        "PolicyDocument": {
                            "Version": "2012-10-17",
                            "Statement": [
                                _allow(
                                    "ApiGatewayLogs",
                                    API_GATEWAY_LOGS_ACTIONS,
                                    [_stack_arn("logs", "log-group:*")],
                                )
                            ],
                        },
                    }
                ],
            },
        },
        "ApiGatewayAccount": {
            "Type": "AWS::ApiGateway::Account",
            "Condition": CREATE_LOGS_ROLE,
            "Properties": {"CloudWatchRoleArn": {"Fn::GetAtt": ["ApiGatewayLogsRole", "Arn"]}},
        },
    }


API_GATEWAY_LOGS_ACTIONS = (
    "logs:CreateLogGroup",
    "logs:CreateLogStream",
    "logs:DescribeLogGroups",
    "logs:DescribeLogStreams",
    "logs:PutLogEvents",
    "logs:GetLogEvents",
    "logs:FilterLogEvents",
)


def _access_log_destination() -> Any:
    """The log group's ARN; when the stack sets the account's logging role, also a
    reference to that setting, so that the stage is made after it.

    DependsOn may not name a resource that a condition leaves out, and the stage is SAM's:
    so the reference sits in the value, where Fn::Select drops it.
    """
    arn = {"Fn::GetAtt": [ACCESS_LOGS, "Arn"]}
    after_account = {"Fn::Select": [0, [arn, {"Ref": "ApiGatewayAccount"}]]}
    return {"Fn::If": [CREATE_LOGS_ROLE, after_account, arn]}


def merge_template(functions: Mapping[str, Sequence[str]]) -> dict[str, Any]:
    """The template to merge into `chalice package`'s output, for these event functions
    (each with its handlers' names).

    Chalice merges it into its own template by key: a resource with the logical id of one
    of Chalice's (`Customers`, `CustomersRole`, `APIHandler`, `RestAPI`) extends it, any
    other is added; a list replaces Chalice's. Functions get the names `chalice deploy`
    would give them, exact policies, and an environment that points at the stack's own
    resources. The REST API is named after the stack, as API Gateway's metrics (and so
    the alarms) name it: Chalice would name every stage's API after the app.
    """
    names = STACK_PLACE.names
    environment = {
        "Variables": {
            "STRIPE_EVENTS_TABLE": {"Ref": "Table"},
            "STRIPE_EVENTS_BUCKET": {"Ref": "BodiesBucket"},
            "STRIPE_EVENTS_TOPIC_ARN": {"Ref": "NotificationsTopic"},
            "STRIPE_WEBHOOK_SECRET_PARAM": sub(names.webhook_secret_param),
            "STRIPE_API_KEY_PARAM": sub(names.api_key_param),
            **service_variable(),
        }
    }
    resources = _stage_resources(retain=True)
    resources.update(_function_resources(API_HANDLER, environment))
    resources.update(_api_logging_resources())
    # SAM makes the stage (RestAPIapiStage) from these: throttled, traced, access logged.
    resources["RestAPI"] = {
        "Properties": {
            # Both: API Gateway takes the name, and SAM would otherwise keep the OpenAPI title.
            "Name": sub(names.prefix),
            "DefinitionBody": {"info": {"title": sub(names.prefix)}},
            "TracingEnabled": True,
            "MethodSettings": [
                {
                    "ResourcePath": "/*",
                    "HttpMethod": "*",
                    "ThrottlingRateLimit": {"Ref": THROTTLING_RATE},
                    "ThrottlingBurstLimit": {"Ref": THROTTLING_BURST},
                }
            ],
            "AccessLogSetting": {
                "DestinationArn": _access_log_destination(),
                "Format": ACCESS_LOG_FORMAT,
            },
        }
    }
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
                    "RuleName": sub(rule_name),
                    "DeadLetterConfig": {"Arn": DLQ_ARN},
                    "RetryPolicy": RULE_RETRY,
                }
            }
        }
        resources[f"{logical}EventInvokeConfig"] = _invoke_config({"Ref": logical})
    partner_rule = {"Fn::If": [PARTNER_CONDITION, PARTNER_RULE_ARN, {"Ref": "AWS::NoValue"}]}
    resources["DeadLetterQueuePolicy"] = _dead_letter_policy([*rule_arns, partner_rule])
    resources.update(_monitoring(functions, names.prefix))
    return _template(resources, _api_parameters(), _api_conditions())


def stage_stack_template(deployed: Mapping[str, Sequence[str]], api_name: str) -> dict[str, Any]:
    """The stage's resources as a stack of their own, for `chalice deploy` (`infra up`).

    `deployed` are the event functions `chalice deploy` has made, with their handlers:
    each gets its on-failure destination and its alarms here. Their rules are Chalice's,
    without a dead-letter queue. `api_name` is the REST API's name, which `chalice
    deploy` takes from the app's name. This stack is for trying things out: `infra
    down` deletes it with its data, so the table and the bucket go with it.
    """
    names = STACK_PLACE.names
    resources = _stage_resources(retain=False)
    resources.update(_monitoring(deployed, api_name))
    for function in deployed:
        invoke_config = _invoke_config(sub(names.function(function)))
        resources[f"{cfn_name(function)}EventInvokeConfig"] = invoke_config
    # Only the partner bus's rule sends its undeliverable events to the queue here.
    resources["DeadLetterQueuePolicy"] = {
        **_dead_letter_policy([PARTNER_RULE_ARN]),
        "Condition": PARTNER_CONDITION,
    }
    return _template(resources)


def _monitoring(functions: Mapping[str, Sequence[str]], api_name: str) -> dict[str, Any]:
    names = STACK_PLACE.names
    watched = [
        Watched(function, cfn_name(function), names.function(function), function == API_HANDLER)
        for function in (API_HANDLER, *functions)
    ]
    handlers = [handler for function in functions for handler in functions[function]]
    return monitoring_resources(watched, handlers, api_name, names.queue)


DLQ_ARN = {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
PARTNER_CONDITION = "ForwardFromStripePartnerBus"
PARTNER_RULE_ARN = _stack_arn(
    "events", f"rule/${{StripePartnerEventSource}}/{STACK_PLACE.names.partner_forward_rule}"
)


def _stage_resources(*, retain: bool) -> dict[str, Any]:
    """The table, the bucket, the topic and the dead-letter queue of a stage."""
    names = STACK_PLACE.names
    # The ledger is the record of what ran, and CloudFormation cannot delete a bucket that
    # still holds bodies: in production both stay when the stack goes.
    keep = {"DeletionPolicy": "Retain", "UpdateReplacePolicy": "Retain"} if retain else {}
    return {
        "Table": {
            "Type": "AWS::DynamoDB::Table",
            **keep,
            "Properties": {
                "TableName": sub(names.table),
                **table_definition(),
                "TimeToLiveSpecification": {"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
                "PointInTimeRecoverySpecification": {"PointInTimeRecoveryEnabled": True},
            },
        },
        "BodiesBucket": {
            "Type": "AWS::S3::Bucket",
            **keep,
            "Properties": {
                "BucketName": sub(names.bucket),
                "BucketEncryption": {
                    "ServerSideEncryptionConfiguration": [
                        {"ServerSideEncryptionByDefault": {"SSEAlgorithm": "AES256"}}
                    ]
                },
                "PublicAccessBlockConfiguration": PUBLIC_ACCESS_BLOCK,
                "OwnershipControls": {"Rules": [{"ObjectOwnership": "BucketOwnerEnforced"}]},
                "VersioningConfiguration": {"Status": "Enabled"},
                "LifecycleConfiguration": {"Rules": LIFECYCLE_RULES},
            },
        },
        "NotificationsTopic": {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": sub(names.topic), "KmsMasterKeyId": NOTIFICATIONS_KEY},
        },
        "DeadLetterQueue": {
            "Type": "AWS::SQS::Queue",
            "Properties": {
                "QueueName": sub(names.queue),
                "MessageRetentionPeriod": DLQ_RETENTION_SECONDS,
                "SqsManagedSseEnabled": True,
            },
        },
    }


def _invoke_config(function: Any) -> dict[str, Any]:
    """Lambda's retries of an asynchronous event, then the dead-letter queue."""
    return {
        "Type": "AWS::Lambda::EventInvokeConfig",
        "Properties": {
            "FunctionName": function,
            "Qualifier": "$LATEST",
            **ASYNC_RETRY,
            "DestinationConfig": {"OnFailure": {"Destination": DLQ_ARN}},
        },
    }


def _dead_letter_policy(rule_arns: list[Any]) -> dict[str, Any]:
    """The queue takes what EventBridge could not deliver from these rules."""
    return {
        "Type": "AWS::SQS::QueuePolicy",
        "Properties": {
            "Queues": [{"Ref": "DeadLetterQueue"}],
            "PolicyDocument": {
                "Version": "2012-10-17",
                "Statement": [
                    {
                        "Sid": "RulesDeadLetters",
                        "Effect": "Allow",
                        "Principal": {"Service": "events.amazonaws.com"},
                        "Action": "sqs:SendMessage",
                        "Resource": DLQ_ARN,
                        "Condition": {"ArnEquals": {"aws:SourceArn": rule_arns}},
                    }
                ],
            },
        },
    }


def _template(
    resources: dict[str, Any],
    parameters: Mapping[str, Any] | None = None,
    conditions: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """A whole template: the partner bus's parameter, its forwarding, the outputs; and the
    parameters and conditions of its own resources."""
    resources.update(_partner_forwarding(STACK_PLACE.names))
    return {
        "Description": GENERATED,
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
            },
            **monitoring_parameters(),
            **(parameters or {}),
        },
        "Conditions": {
            PARTNER_CONDITION: {
                "Fn::Not": [{"Fn::Equals": [{"Ref": "StripePartnerEventSource"}, ""]}]
            },
            **monitoring_conditions(),
            **(conditions or {}),
        },
        "Resources": resources,
        "Outputs": {output: {"Value": {"Ref": logical}} for output, logical in OUTPUTS.items()},
    }


# The stack's outputs, and the resources they name: `infra up` reads them.
OUTPUTS = {
    "TableName": "Table",
    "BodiesBucketName": "BodiesBucket",
    "NotificationsTopicArn": "NotificationsTopic",
    "DeadLetterQueueUrl": "DeadLetterQueue",
}
GENERATED = (
    "stripe-events: a stage's resources. Generated by `stripe-events infra render` from "
    "ops/stripe_events_ops/template.py; edit that, not this."
)


def _partner_forwarding(names: Names) -> dict[str, Any]:
    """A rule on Stripe's partner event bus that forwards every event to the default bus.

    Chalice's rules only listen on the default bus (aws/chalice #1755).
    """
    condition = PARTNER_CONDITION
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
                "Name": sub(names.partner_forward_rule),
                "EventBusName": {"Ref": "StripePartnerEventBus"},
                "EventPattern": {"source": [{"prefix": PARTNER_SOURCE_PREFIX}]},
                "State": "ENABLED",
                "Targets": [
                    {
                        "Id": "DefaultBus",
                        "Arn": default_bus,
                        "RoleArn": {"Fn::GetAtt": ["StripePartnerForwardRole", "Arn"]},
                        "DeadLetterConfig": {"Arn": DLQ_ARN},
                        "RetryPolicy": RULE_RETRY,
                    }
                ],
            },
        },
    }
