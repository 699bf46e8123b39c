"""A stage's alarms and dashboard, in the same templates as its resources (template.py).

Every alarm sends to the stage's alarm topic, `<stack>-alarms`, when it fires and when it
clears; the template's parameter AlarmEmail subscribes an address to it (AWS asks the
address to confirm first). Our own metrics are found by their `service` dimension, the
stack's name, which the functions get in POWERTOOLS_SERVICE_NAME (observability.py).

Each threshold and period is chosen for what the alarm means, said beside it: an alarm
that fires on what retries absorb by design is soon ignored, and one that waits too long
lets an event sit in the dead-letter queue until it expires.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from stripe_events._observability import NAMESPACE, SERVICE_VARIABLE

ALARM_TOPIC = "AlarmTopic"
ALARM_EMAIL = "AlarmEmail"
ALARM_EMAIL_GIVEN = "AlarmEmailGiven"
# API Gateway's stage in the URL (`api_gateway_stage` in .chalice/config.json).
API_STAGE = "api"
STACK_NAME = "${AWS::StackName}"
SIGNATURE_MISMATCH = "signature_mismatch"

# CloudWatch's standard resolution for Lambda, API Gateway and our metrics is a minute;
# SQS publishes its queue metrics every 5 minutes.
MINUTE = 60
FIVE_MINUTES = 300

# Any message in the dead-letter queue is an event that every retry failed on: it is
# kept 14 days, then lost. The queue's metrics come every 5 minutes; one datapoint fires.
DLQ_THRESHOLD = 0
# The webhook never raises by design (Chalice answers 500 for an exception of ours, which
# the 5xx alarm sees), so any error of its function is a crash or a timeout.
WEBHOOK_ERRORS_THRESHOLD = 0
# An event function raises on purpose to be retried: a handler failed, or another run has
# the event (busy). One event that fails all three attempts (2 Lambda retries, a minute
# then two apart) makes 3 errors within 5 minutes; fewer are retries doing their job.
EVENT_FUNCTION_ERRORS_THRESHOLD = 3
# A throttle means the function hit its concurrency limit: the webhook then answers Stripe
# 429 or 5xx, and asynchronous events wait. Any throttle is worth knowing of.
THROTTLES_THRESHOLD = 0
# Stripe retries a 5xx for three days, so a lone one loses nothing; 5xx answers in 2 of 3
# successive 5-minute periods mean the webhook is failing, and Stripe disables an
# endpoint that keeps failing.
WEBHOOK_5XX_PERIODS = 3
WEBHOOK_5XX_DATAPOINTS = 2
# Stripe signs every delivery correctly, so a mismatch is a forger, a scanner, or a secret
# rolled badly (then every delivery fails). 5 in 5 minutes lets a stray probe pass.
SIGNATURE_MISMATCH_THRESHOLD = 5
# A handler's error means its business did not happen for an event; Lambda retries it,
# but someone should look. The alarm clears once the errors stop.
HANDLER_ERRORS_THRESHOLD = 0


@dataclass(frozen=True)
class Watched:
    """A function to watch: Chalice's name for it, its logical id in the template, its
    Lambda name, and whether it is the webhook's."""

    label: str
    logical_id: str
    name: str  # may hold ${AWS::StackName}
    webhook: bool = False


def sub(text: str) -> Any:
    """`text` with CloudFormation's variables filled in; as it is when it has none."""
    return {"Fn::Sub": text} if "${" in text else text


def monitoring_parameters() -> dict[str, Any]:
    return {
        ALARM_EMAIL: {
            "Type": "String",
            "Default": "",
            "AllowedPattern": r"^$|^[^@\s]+@[^@\s]+$",
            "Description": (
                "An e-mail address to send the stage's alarms to (AWS asks it to confirm). "
                "Leave empty to subscribe something else to the alarm topic."
            ),
        }
    }


def monitoring_conditions() -> dict[str, Any]:
    return {ALARM_EMAIL_GIVEN: {"Fn::Not": [{"Fn::Equals": [{"Ref": ALARM_EMAIL}, ""]}]}}


def monitoring_resources(
    functions: Sequence[Watched], handlers: Sequence[str], api_name: str, queue: str
) -> dict[str, Any]:
    """The alarm topic, its e-mail subscription, the alarms and the dashboard.

    `functions`: every function, the webhook's included; `handlers`: the event functions'
    handlers (`<router>.<function>`); `api_name`: the REST API's name, as API Gateway's
    metrics name it; `queue`: the dead-letter queue's name. Names may hold
    ${AWS::StackName}.
    """
    service = sub(STACK_NAME)
    resources: dict[str, Any] = {
        ALARM_TOPIC: {
            "Type": "AWS::SNS::Topic",
            "Properties": {"TopicName": sub("${AWS::StackName}-alarms")},
        },
        "AlarmEmailSubscription": {
            "Type": "AWS::SNS::Subscription",
            "Condition": ALARM_EMAIL_GIVEN,
            "Properties": {
                "Protocol": "email",
                "Endpoint": {"Ref": ALARM_EMAIL},
                "TopicArn": {"Ref": ALARM_TOPIC},
            },
        },
        "DeadLetterQueueAlarm": alarm(
            "dead-letter-queue",
            "Events that failed every retry are in the dead-letter queue; they are lost after "
            "14 days. See docs/exactly-once.md, When a handler fails.",
            metric(
                "AWS/SQS",
                "ApproximateNumberOfMessagesVisible",
                QueueName=sub(queue),
            ),
            statistic="Maximum",
            period=FIVE_MINUTES,
            threshold=DLQ_THRESHOLD,
        ),
        "WebhookServerErrorsAlarm": alarm(
            "webhook-5xx",
            "The webhook keeps answering Stripe 5xx: events wait in Stripe's retries.",
            metric("AWS/ApiGateway", "5XXError", ApiName=sub(api_name), Stage=API_STAGE),
            period=FIVE_MINUTES,
            threshold=0,
            evaluation_periods=WEBHOOK_5XX_PERIODS,
            datapoints=WEBHOOK_5XX_DATAPOINTS,
        ),
        "SignatureMismatchAlarm": alarm(
            "signature-mismatch",
            "Deliveries with a signature that matches no signing secret: a forger, or a secret "
            "rolled badly (then every Stripe delivery fails).",
            metric(NAMESPACE, "EventsRejected", service=service, reason=SIGNATURE_MISMATCH),
            period=FIVE_MINUTES,
            threshold=SIGNATURE_MISMATCH_THRESHOLD,
            comparison="GreaterThanOrEqualToThreshold",
        ),
    }
    for function in functions:
        errors = WEBHOOK_ERRORS_THRESHOLD if function.webhook else EVENT_FUNCTION_ERRORS_THRESHOLD
        watched = {
            "Errors": ("fails (its logs say why)", errors),
            "Throttles": ("is throttled: it reached its concurrency limit", THROTTLES_THRESHOLD),
        }
        for metric_name, (what, threshold) in watched.items():
            resources[f"{function.logical_id}{metric_name}Alarm"] = alarm(
                f"{function.label}-{metric_name.lower()}",
                f"Function {function.label} {what}.",
                metric("AWS/Lambda", metric_name, FunctionName=sub(function.name)),
                period=FIVE_MINUTES,
                threshold=threshold,
                # "Any" is more than 0; a count is at least that many.
                comparison="GreaterThanOrEqualToThreshold" if threshold else "GreaterThanThreshold",
            )
    for handler in handlers:
        logical_id = handler_alarm_id(handler)
        if logical_id in resources:
            raise ValueError(f"two handlers' alarms would be {logical_id}; rename {handler}")
        resources[logical_id] = alarm(
            f"handler-{handler}",
            f"Handler {handler} fails: `stripe-events failures` lists its events.",
            metric(NAMESPACE, "HandlerError", service=service, handler=handler),
            period=MINUTE,
            threshold=HANDLER_ERRORS_THRESHOLD,
        )
    resources["Dashboard"] = {
        "Type": "AWS::CloudWatch::Dashboard",
        "Properties": {
            "DashboardName": sub(STACK_NAME),
            "DashboardBody": sub(json.dumps(dashboard_body(api_name, queue))),
        },
    }
    return resources


def handler_alarm_id(handler: str) -> str:
    """A logical id for a handler's alarm: CloudFormation allows letters and digits only."""
    words = re.split(r"[^A-Za-z0-9]+", handler)
    return "HandlerError" + "".join(w[:1].upper() + w[1:] for w in words) + "Alarm"


def metric(namespace: str, name: str, **dimensions: Any) -> dict[str, Any]:
    return {
        "Namespace": namespace,
        "MetricName": name,
        "Dimensions": [{"Name": key, "Value": value} for key, value in dimensions.items()],
    }


def alarm(
    name: str,
    description: str,
    measured: dict[str, Any],
    *,
    period: int,
    threshold: float,
    statistic: str = "Sum",
    comparison: str = "GreaterThanThreshold",
    evaluation_periods: int = 1,
    datapoints: int = 1,
) -> dict[str, Any]:
    """An alarm on one metric, to the alarm topic when it fires and when it clears.

    No data is no trouble: these metrics only exist while something happens.
    """
    return {
        "Type": "AWS::CloudWatch::Alarm",
        "Properties": {
            "AlarmName": sub(f"${{AWS::StackName}}-{name}"),
            "AlarmDescription": description,
            **measured,
            "Statistic": statistic,
            "Period": period,
            "EvaluationPeriods": evaluation_periods,
            "DatapointsToAlarm": datapoints,
            "Threshold": threshold,
            "ComparisonOperator": comparison,
            "TreatMissingData": "notBreaching",
            "AlarmActions": [{"Ref": ALARM_TOPIC}],
            "OKActions": [{"Ref": ALARM_TOPIC}],
        },
    }


def dashboard_body(api_name: str, queue: str) -> dict[str, Any]:
    """The dashboard, as CloudWatch's DashboardBody; `${...}` are filled in by Fn::Sub.

    Graphs of our metrics per reason or per handler use SEARCH, so that a handler added
    later appears without a new template.
    """

    def search(dimensions: str, metric_name: str, stat: str, label: str) -> dict[str, Any]:
        expression = (
            f'SEARCH(\'{{{NAMESPACE},{dimensions}}} MetricName="{metric_name}" '
            f"service=\"${{AWS::StackName}}\"', '{stat}', {MINUTE})"
        )
        return {"expression": expression, "label": label, "id": _id(label)}

    widgets = [
        _widget(
            "Deliveries per minute: did Stripe's events arrive, and were they published?",
            [
                [NAMESPACE, name, "service", STACK_NAME, {"label": label}]
                for name, label in (
                    ("EventsReceived", "received"),
                    ("EventsPublished", "published"),
                    ("EventsDuplicate", "duplicates"),
                )
            ],
            "Sum",
        ),
        _widget(
            "Rejected deliveries per minute, by reason: a forger, a bad secret, a wrong mode?",
            [[search("reason,service", "EventsRejected", "Sum", "rejected")]],
            "Sum",
        ),
        _widget(
            "Handlers that succeeded per minute",
            [[search("handler,service", "HandlerOk", "Sum", "ok")]],
            "Sum",
        ),
        _widget(
            "Handler errors per minute: which handler is failing?",
            [[search("handler,service", "HandlerError", "Sum", "errors")]],
            "Sum",
        ),
        _widget(
            "Handler duration, p50 and p99 (ms): which handler is slow?",
            [
                [search("handler,service", "HandlerDuration", "p50", "p50")],
                [search("handler,service", "HandlerDuration", "p99", "p99")],
            ],
            "p99",
        ),
        _widget(
            "Dead-letter queue: events every retry failed on (replay them)",
            [
                [
                    "AWS/SQS",
                    "ApproximateNumberOfMessagesVisible",
                    "QueueName",
                    queue,
                    {"label": "messages"},
                ]
            ],
            "Maximum",
            period=FIVE_MINUTES,
        ),
        _widget(
            "Webhook latency (ms): how long Stripe waits for the answer",
            [
                ["AWS/ApiGateway", "Latency", "ApiName", api_name, "Stage", API_STAGE, {"stat": s}]
                for s in ("p50", "p99")
            ],
            "p99",
        ),
    ]
    return {"widgets": widgets}


def _id(label: str) -> str:
    return "m" + re.sub(r"[^a-z0-9]", "", label.lower())


def _widget(
    title: str, metrics: list[list[Any]], stat: str, period: int = MINUTE
) -> dict[str, Any]:
    return {
        "type": "metric",
        "width": 12,
        "height": 6,
        "properties": {
            "title": title,
            "metrics": metrics,
            "view": "timeSeries",
            "stat": stat,
            "period": period,
            "region": "${AWS::Region}",
        },
    }


def service_variable() -> dict[str, Any]:
    """The functions' environment variable that names their `service`: the stack's name."""
    return {SERVICE_VARIABLE: sub(STACK_NAME)}
