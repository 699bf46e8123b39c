"""The stage's alarms and dashboard: each alarm watches what the code really emits, with the
dimensions it emits them with, and sends to the alarm topic."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import pytest

from stripe_events._errors import Rejected
from stripe_events._router import Router
from stripe_events._signature import verify
from stripe_events_local.sqlite import SqliteStore
from stripe_events_ops.monitoring import (
    ALARM_EMAIL,
    ALARM_TOPIC,
    EVENT_FUNCTION_ERRORS_THRESHOLD,
    handler_alarm_id,
    monitoring_resources,
)
from stripe_events_ops.project import function_handlers, read_config
from stripe_events_ops.template import (
    API_HANDLER,
    ASYNC_RETRY,
    cfn_name,
    merge_template,
    stage_stack_template,
)
from stripe_events_testing import local_dispatcher, samples
from tests.helpers import ROOT, signed_headers
from tests.integration.test_observability import deployed_webhook, metric_lines

FUNCTIONS = function_handlers(ROOT)
TEMPLATE = merge_template(FUNCTIONS)
RESOURCES = TEMPLATE["Resources"]
STACK = {"Fn::Sub": "${AWS::StackName}"}
OUR_METRICS = {
    "EventsReceived",
    "EventsPublished",
    "EventsDuplicate",
    "EventsRejected",
    "HandlerOk",
    "HandlerError",
    "HandlerDuration",
}


def alarms(resources: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {
        logical: resource["Properties"]
        for logical, resource in resources.items()
        if resource.get("Type") == "AWS::CloudWatch::Alarm"
    }


def dimensions(alarm: dict[str, Any]) -> dict[str, Any]:
    return {d["Name"]: d["Value"] for d in alarm["Dimensions"]}


def test_every_alarm_goes_to_the_alarm_topic_when_it_fires_and_when_it_clears() -> None:
    assert RESOURCES[ALARM_TOPIC]["Properties"]["TopicName"] == {
        "Fn::Sub": "${AWS::StackName}-alarms"
    }
    for logical, alarm in alarms(RESOURCES).items():
        assert alarm["AlarmActions"] == alarm["OKActions"] == [{"Ref": ALARM_TOPIC}], logical
        assert alarm["TreatMissingData"] == "notBreaching", logical
        assert alarm["AlarmName"]["Fn::Sub"].startswith("${AWS::StackName}-"), logical
    names = [a["AlarmName"]["Fn::Sub"] for a in alarms(RESOURCES).values()]
    assert len(names) == len(set(names))


def test_the_email_parameter_subscribes_the_address_only_when_given() -> None:
    assert TEMPLATE["Parameters"][ALARM_EMAIL]["Default"] == ""
    subscription = RESOURCES["AlarmEmailSubscription"]
    assert subscription["Type"] == "AWS::SNS::Subscription"
    condition = TEMPLATE["Conditions"][subscription["Condition"]]
    assert condition == {"Fn::Not": [{"Fn::Equals": [{"Ref": ALARM_EMAIL}, ""]}]}
    assert subscription["Properties"] == {
        "Protocol": "email",
        "Endpoint": {"Ref": ALARM_EMAIL},
        "TopicArn": {"Ref": ALARM_TOPIC},
    }


def test_each_function_has_an_errors_and_a_throttles_alarm_on_its_own_name() -> None:
    for function in (API_HANDLER, *FUNCTIONS):
        name = RESOURCES[cfn_name(function)]["Properties"]["FunctionName"]
        for metric in ("Errors", "Throttles"):
            alarm = alarms(RESOURCES)[f"{cfn_name(function)}{metric}Alarm"]
            assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/Lambda", metric)
            assert dimensions(alarm) == {"FunctionName": name}


def test_one_event_that_fails_every_attempt_fires_its_functions_errors_alarm() -> None:
    # Lambda's first attempt and its retries fall within one 5-minute period.
    attempts = 1 + ASYNC_RETRY["MaximumRetryAttempts"]
    assert attempts >= EVENT_FUNCTION_ERRORS_THRESHOLD
    alarm = alarms(RESOURCES)["CustomersErrorsAlarm"]
    assert alarm["ComparisonOperator"] == "GreaterThanOrEqualToThreshold"
    assert alarm["Threshold"] == EVENT_FUNCTION_ERRORS_THRESHOLD and alarm["Period"] == 300


def test_any_message_in_the_dead_letter_queue_fires_its_alarm() -> None:
    alarm = alarms(RESOURCES)["DeadLetterQueueAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == (
        "AWS/SQS",
        "ApproximateNumberOfMessagesVisible",
    )
    queue = RESOURCES["DeadLetterQueue"]["Properties"]["QueueName"]
    assert dimensions(alarm) == {"QueueName": queue}
    assert (alarm["Statistic"], alarm["ComparisonOperator"], alarm["Threshold"]) == (
        "Maximum",
        "GreaterThanThreshold",
        0,
    )


def test_the_webhooks_5xx_alarm_names_the_api_as_the_template_names_it() -> None:
    alarm = alarms(RESOURCES)["WebhookServerErrorsAlarm"]
    assert (alarm["Namespace"], alarm["MetricName"]) == ("AWS/ApiGateway", "5XXError")
    api = RESOURCES["RestAPI"]["Properties"]
    assert api["Name"] == api["DefinitionBody"]["info"]["title"] == STACK
    stage = read_config(ROOT)["stages"]["prod"]["api_gateway_stage"]
    assert dimensions(alarm) == {"ApiName": STACK, "Stage": stage}
    # `chalice deploy` names the API after the app: the quick path's stack says so.
    quick = alarms(stage_stack_template({}, "stripe-events")["Resources"])
    assert dimensions(quick["WebhookServerErrorsAlarm"])["ApiName"] == "stripe-events"


def test_every_handler_has_an_alarm_on_its_errors() -> None:
    handlers = [h for function in FUNCTIONS.values() for h in function]
    assert "invoices.send_dunning_notice" in handlers
    for handler in handlers:
        alarm = alarms(RESOURCES)[handler_alarm_id(handler)]
        assert (alarm["Namespace"], alarm["MetricName"]) == ("StripeEvents", "HandlerError")
        assert dimensions(alarm) == {"service": STACK, "handler": handler}


def test_the_quick_paths_stack_watches_the_deployed_functions_only() -> None:
    deployed = {"customers": FUNCTIONS["customers"]}
    watched = alarms(stage_stack_template(deployed, "stripe-events")["Resources"])
    functions = {
        d["FunctionName"]["Fn::Sub"]
        for d in map(dimensions, watched.values())
        if "FunctionName" in d
    }
    assert functions == {"${AWS::StackName}", "${AWS::StackName}-customers"}
    handlers = {
        dimensions(a)["handler"] for a in watched.values() if a["MetricName"] == "HandlerError"
    }
    assert handlers == set(FUNCTIONS["customers"])


def test_every_function_counts_its_metrics_under_the_stacks_name() -> None:
    for function in (API_HANDLER, *FUNCTIONS):
        variables = RESOURCES[cfn_name(function)]["Properties"]["Environment"]["Variables"]
        assert variables["POWERTOOLS_SERVICE_NAME"] == STACK
    for stage in ("dev", "prod"):  # for `chalice deploy`, whose stack is named the same
        env = read_config(ROOT)["stages"][stage]["environment_variables"]
        assert env["POWERTOOLS_SERVICE_NAME"] == f"stripe-events-{stage}"


def test_two_handlers_whose_alarms_would_collide_are_refused() -> None:
    with pytest.raises(ValueError, match="rename"):
        monitoring_resources([], ["a.b_c", "a_b.c"], "api", "queue")


# What the code emits: the alarms' metrics, with exactly their dimensions ----------------


def emitted_dimensions(out: str, name: str) -> list[set[str]]:
    return [
        set(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0])
        for line in metric_lines(out, name)
    ]


@pytest.mark.usefixtures("moto_url")
def test_a_forged_delivery_emits_the_metric_the_signature_alarm_watches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stripe-events-test")
    client = deployed_webhook(tmp_path)
    body = samples.encode(samples.sample_event("customer.created"))
    forged = signed_headers(body, "whsec_someone_else")
    assert client.http.post("/stripe/webhook", headers=forged, body=body).status_code == 400

    out = capsys.readouterr().out
    alarm = alarms(RESOURCES)["SignatureMismatchAlarm"]
    [line] = metric_lines(out, alarm["MetricName"])
    assert line["_aws"]["CloudWatchMetrics"][0]["Namespace"] == alarm["Namespace"]
    assert set(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == set(dimensions(alarm))
    assert (line["service"], line["reason"]) == (
        "stripe-events-test",
        dimensions(alarm)["reason"],
    )
    with pytest.raises(Rejected) as rejected:
        verify(body, forged["Stripe-Signature"], ["whsec_test_secret_one"], 300, time.time())
    assert rejected.value.code == dimensions(alarm)["reason"]


@pytest.mark.usefixtures("moto_url")
def test_a_failing_handler_emits_the_metric_its_alarm_watches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "stripe-events-test")
    deployed_webhook(tmp_path)  # a deployed stage's app: metrics on
    router = Router("invoices")

    @router.on("invoice.paid")
    def send_dunning_notice(event: object, ctx: object) -> None:
        raise RuntimeError("mail server down")

    dispatcher = local_dispatcher(SqliteStore(tmp_path / "s.sqlite3"), tmp_path)
    with pytest.raises(Exception, match="mail server down"):
        dispatcher.dispatch(router, samples.sample_event("invoice.paid"))
    out = capsys.readouterr().out
    alarm = alarms(RESOURCES)[handler_alarm_id("invoices.send_dunning_notice")]
    [line] = metric_lines(out, "HandlerError")
    assert set(line["_aws"]["CloudWatchMetrics"][0]["Dimensions"][0]) == set(dimensions(alarm))
    assert line["handler"] == dimensions(alarm)["handler"]
    assert line["service"] == "stripe-events-test"


# The dashboard ------------------------------------------------------------------------


def dashboard(resources: dict[str, Any]) -> dict[str, Any]:
    body = resources["Dashboard"]["Properties"]["DashboardBody"]["Fn::Sub"]
    filled = body.replace("${AWS::StackName}", "stripe-events-prod")
    filled = filled.replace("${AWS::Region}", "eu-west-1")
    assert "${" not in filled  # Fn::Sub fills in every variable it holds
    parsed: dict[str, Any] = json.loads(filled)
    return parsed


def test_the_dashboard_answers_what_the_readme_says_it_does() -> None:
    widgets = dashboard(RESOURCES)["widgets"]
    shown = json.dumps(widgets)
    for metric in OUR_METRICS:
        assert f'"{metric}"' in shown or f'\\"{metric}\\"' in shown, metric
    for searched in ("reason,service", "handler,service"):
        assert f"{{StripeEvents,{searched}}}" in shown
    assert 'service=\\"stripe-events-prod\\"' in shown  # this stage's metrics only
    assert "'p50'" in shown and "'p99'" in shown  # handler duration percentiles
    assert '"ApproximateNumberOfMessagesVisible", "QueueName", "stripe-events-prod-dlq"' in shown
    assert '"Latency", "ApiName", "stripe-events-prod"' in shown
    for widget in widgets:
        assert widget["properties"]["title"] and widget["properties"]["region"] == "eu-west-1"


def test_the_dashboard_reads_only_metrics_the_code_writes() -> None:
    ours = [
        metric
        for widget in dashboard(RESOURCES)["widgets"]
        for row in widget["properties"]["metrics"]
        for metric in ([row[1]] if row[0] == "StripeEvents" else [])
    ]
    searched = [
        name
        for widget in dashboard(RESOURCES)["widgets"]
        for row in widget["properties"]["metrics"]
        for part in row
        if isinstance(part, dict) and "expression" in part
        for name in [part["expression"].split('MetricName="')[1].split('"')[0]]
    ]
    assert set(ours) | set(searched) <= OUR_METRICS
    assert set(ours) | set(searched) == OUR_METRICS
