"""Structured JSON logs and EMF metrics in a deployed stage; plain logs locally."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from chalice.test import Client

import stripe_events._observability as observability
from stripe_events._router import Router
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import local_dispatcher, samples
from tests.helpers import (
    ROOT,
    RecordingPublisher,
    deployed_stage_env,
    load_app,
    local_stage_env,
    signed_headers,
)


def lines(text: str) -> list[dict[str, Any]]:
    parsed = []
    for line in text.splitlines():
        if line.startswith("{"):
            parsed.append(json.loads(line))
    return parsed


def metric_lines(text: str, name: str) -> list[dict[str, Any]]:
    return [line for line in lines(text) if "_aws" in line and name in line]


def deployed_webhook(tmp_path: Path) -> Client:
    """A deployed stage's webhook (its secret in SSM on the moto server), recording what
    it publishes."""
    module = load_app(deployed_stage_env(STRIPE_EVENTS_TABLE="unused"))
    module.events.publisher = RecordingPublisher()
    module.events.store = SqliteStore(tmp_path / "ledger.sqlite3")
    return Client(module.app, stage_name="local", project_dir=str(ROOT))


@pytest.mark.usefixtures("moto_url")
def test_the_webhook_logs_json_and_counts_events(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    client = deployed_webhook(tmp_path)
    event = samples.sample_event("customer.created")
    body = samples.encode(event)
    assert (
        client.http.post("/stripe/webhook", headers=signed_headers(body), body=body).status_code
        == 200
    )
    stale = signed_headers(body, timestamp=1)
    assert client.http.post("/stripe/webhook", headers=stale, body=body).status_code == 400

    out = capsys.readouterr().out
    [published] = [line for line in lines(out) if line.get("outcome") == "published"]
    assert (published["event_id"], published["event_type"]) == (event["id"], "customer.created")
    assert published["service"] == "stripe-events" and published["level"] == "INFO"
    [rejected] = metric_lines(out, "EventsRejected")
    assert rejected["reason"] == "stale_timestamp"
    assert rejected["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "StripeEvents"
    received = [line["EventsReceived"] for line in metric_lines(out, "EventsReceived")]
    assert received == [[1.0], [1.0]]  # one flush per request
    assert len(metric_lines(out, "EventsPublished")) == 1
    assert "whsec_test_secret_one" not in out


@pytest.mark.usefixtures("moto_url")
def test_handlers_report_outcome_and_duration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deployed_webhook(tmp_path)  # a deployed stage's app: JSON logs, metrics on
    router = Router("billing")

    def charge(event: object, ctx: object) -> None:
        """Succeeds."""

    router.on("invoice.paid")(charge)
    local_dispatcher(SqliteStore(tmp_path / "s.sqlite3"), tmp_path).dispatch(
        router, samples.sample_event("invoice.paid")
    )
    observability.flush()
    out = capsys.readouterr().out
    [ok] = [line for line in lines(out) if line.get("outcome") == "ok"]
    assert ok["handler"] == "billing.charge" and ok["duration_ms"] >= 0
    [duration] = metric_lines(out, "HandlerDuration")
    assert duration["handler"] == "billing.charge"
    assert duration["_aws"]["CloudWatchMetrics"][0]["Metrics"][0]["Unit"] == "Milliseconds"
    [handled] = metric_lines(out, "HandlerOk")
    assert handled["handler"] == "billing.charge"


def test_stage_local_prints_neither_json_nor_metrics(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    module = load_app({**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(tmp_path)})
    client = Client(module.app, stage_name="local", project_dir=str(ROOT))
    body = samples.encode(samples.sample_event("customer.created"))
    secret = module.events.settings.webhook_secrets[0]
    client.http.post("/stripe/webhook", headers=signed_headers(body, secret), body=body)
    assert lines(capsys.readouterr().out) == []
