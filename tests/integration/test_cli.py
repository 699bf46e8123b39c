"""The stripe-events command, through click's runner; `send` against a loopback receiver."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import ClassVar

import boto3
import pytest
import stripe
from click.testing import CliRunner

import stripe_events._catalog as catalog
from stripe_events._context import Context
from stripe_events._envelope import parse_event
from stripe_events._errors import HandlerFailed
from stripe_events._ledger import Outcome, utc_now
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_local.sqlite import SqliteStore
from stripe_events_ops.cli import main
from stripe_events_ops.project import stage_environment
from stripe_events_testing import local_dispatcher, samples
from tests.conftest import REGION
from tests.helpers import (
    ROOT,
    FakeStripe,
    create_table,
    local_stage_env,
    loopback_server,
    resource_routers,
    swap_handler,
)
from tests.sqs_poller import clients, create_route, delete_route, drain, unique


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"STRIPE_EVENTS_STATE_DIR": str(tmp_path)})


def test_catalog_marks_the_handled_types(runner: CliRunner) -> None:
    result = runner.invoke(main, ["catalog"])
    assert result.exit_code == 0, result.output
    handled = {t for r in resource_routers() for t in r.event_types()}
    thin = {t for t in handled if catalog.is_thin(t)}
    assert "  * customer.created  -> customers\n" in result.output
    assert "    account.updated\n" in result.output  # no module handles it
    assert "customer.subscription\n" in result.output
    assert "v1.billing.meter  (thin)\n" in result.output
    assert "  * v1.billing.meter.no_meter_found  -> billing_meters\n" in result.output
    assert (
        f"\n{len(handled - thin)} of {len(catalog.event_types())} snapshot types and "
        f"{len(thin)} of {len(catalog.thin_event_types())} thin types handled"
    ) in result.output


def test_catalog_subscribed_lists_only_handled_types(runner: CliRunner) -> None:
    result = runner.invoke(main, ["catalog", "--subscribed"])
    assert result.exit_code == 0
    lines = [line.split()[1] for line in result.output.splitlines() if line.startswith("  *")]
    assert sorted(lines) == sorted({t for r in resource_routers() for t in r.event_types()})
    assert "account.updated" not in result.output


def test_enabled_events_is_the_expanded_list_from_the_routers(runner: CliRunner) -> None:
    handled = {t for r in resource_routers() for t in r.event_types()}
    result = runner.invoke(main, ["enabled-events"])
    assert result.exit_code == 0
    assert result.stdout.splitlines() == sorted(t for t in handled if not catalog.is_thin(t))
    assert "*" not in result.stdout
    # Thin types are enabled elsewhere (an event destination): listed apart.
    assert result.stderr == "(and 2 thin type(s): `stripe-events enabled-events --thin`)\n"
    thin = runner.invoke(main, ["enabled-events", "--thin"])
    assert thin.stdout.splitlines() == sorted(t for t in handled if catalog.is_thin(t))
    assert thin.stdout.splitlines() == [
        "v1.billing.meter.error_report_triggered",
        "v1.billing.meter.no_meter_found",
    ]


def test_ledger_json_lists_events_with_handler_statuses(runner: CliRunner, tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "stripe-events.sqlite3")
    [router] = [r for r in resource_routers() if r.name == "customers"]
    events = [samples.sample_event("customer.created") for _ in range(3)]
    dispatcher = local_dispatcher(store, tmp_path)
    for event in events:
        dispatcher.dispatch(router, event)
    result = runner.invoke(main, ["ledger", "--json", "--limit", "2"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)
    assert [row["id"] for row in rows] == [events[2]["id"], events[1]["id"]]
    assert rows[0]["type"] == "customer.created"
    assert rows[0]["handlers"] == {"customers.save_customer": "ok"}
    assert rows[0]["received_at"]
    text = runner.invoke(main, ["ledger"])
    assert f"{events[0]['id']}  customer.created" in text.output
    assert "customers.save_customer: ok (attempts 1)" in text.output


def test_ledger_says_when_it_is_empty(runner: CliRunner) -> None:
    result = runner.invoke(main, ["ledger"])
    assert result.exit_code == 0
    assert "empty" in result.output


def test_send_refuses_an_unknown_type_with_suggestions(runner: CliRunner) -> None:
    result = runner.invoke(main, ["send", "customer.craeted"])
    assert result.exit_code == 2
    assert "customer.created" in result.output


class Receiver(BaseHTTPRequestHandler):
    received: ClassVar[list[tuple[str, bytes]]] = []

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        Receiver.received.append((self.headers["Stripe-Signature"], body))
        answer = b'{"received": true}'
        self.send_response(200)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


@pytest.fixture
def receiver() -> Iterator[str]:
    with loopback_server(Receiver) as url:
        yield f"{url}/stripe/webhook"


def test_send_posts_a_signed_realistic_event(runner: CliRunner, receiver: str) -> None:
    Receiver.received.clear()
    result = runner.invoke(main, ["send", "customer.subscription.updated", "--url", receiver])
    assert result.exit_code == 0, result.output
    assert "200" in result.output
    [(header, body)] = Receiver.received
    secret = local_stage_env()["STRIPE_WEBHOOK_SECRET"]
    assert stripe.WebhookSignature.verify_header(body.decode(), header, secret, 300)
    event = json.loads(body)
    assert event["type"] == "customer.subscription.updated"
    assert event["data"]["object"]["object"] == "subscription"


def test_send_sets_fields_and_takes_a_file(
    runner: CliRunner, receiver: str, tmp_path: Path
) -> None:
    Receiver.received.clear()
    changes = ["customer=cus_mine", "amount_due=5000", "metadata.plan=pro", "event.livemode=false"]
    options = [word for change in changes for word in ("--set", change)]
    sent = runner.invoke(main, ["send", "invoice.payment_failed", "--url", receiver, *options])
    assert sent.exit_code == 0, sent.output
    [(_, body)] = Receiver.received
    event = json.loads(body)
    invoice = event["data"]["object"]
    assert (invoice["customer"], invoice["amount_due"], invoice["metadata"]["plan"]) == (
        "cus_mine",
        5000,
        "pro",
    )
    assert event["livemode"] is False

    # A file with an object: the event is about it. A file with an event: sent as it is.
    obj = tmp_path / "invoice.json"
    obj.write_text(json.dumps({**invoice, "id": "in_from_file"}))
    whole = tmp_path / "event.json"
    whole.write_text(json.dumps({**event, "id": "evt_from_file"}))
    for path in (obj, whole):
        assert (
            runner.invoke(
                main, ["send", "invoice.payment_failed", "--url", receiver, "--data", str(path)]
            ).exit_code
            == 0
        )
    about, itself = (json.loads(body) for _, body in Receiver.received[1:])
    assert (
        about["data"]["object"]["id"] == "in_from_file"
        and about["type"] == "invoice.payment_failed"
    )
    assert itself["id"] == "evt_from_file"

    wrong = runner.invoke(
        main, ["send", "customer.created", "--url", receiver, "--data", str(whole)]
    )
    assert wrong.exit_code == 2 and "not 'customer.created'" in wrong.output
    bad = runner.invoke(main, ["send", "customer.created", "--url", receiver, "--set", "nothing"])
    assert bad.exit_code == 2 and "PATH=VALUE" in bad.output
    (tmp_path / "broken.json").write_text("{")
    broken = runner.invoke(
        main, ["send", "customer.created", "--data", str(tmp_path / "broken.json")]
    )
    assert broken.exit_code == 2 and "is not JSON" in broken.output


def test_send_explains_when_the_app_is_not_running(runner: CliRunner) -> None:
    result = runner.invoke(main, ["send", "customer.created", "--url", "http://127.0.0.1:9/x"])
    assert result.exit_code == 1
    assert "make run" in result.output


@pytest.fixture
def failing_customer_handler(monkeypatch: pytest.MonkeyPatch) -> Callable[[], None]:
    """Makes the customers handler of customer.updated fail until the returned fix is called."""
    [router] = [r for r in resource_routers() if r.name == "customers"]

    def broken(event: stripe.Event, ctx: Context) -> None:
        raise ConnectionError("the CRM is down")

    return swap_handler(monkeypatch, router, "customer.updated", broken)


def test_failures_then_replay_failed_after_the_fix(
    runner: CliRunner, tmp_path: Path, failing_customer_handler: Callable[[], None]
) -> None:
    [router] = [r for r in resource_routers() if r.name == "customers"]
    dispatcher = local_dispatcher(SqliteStore(tmp_path / "stripe-events.sqlite3"), tmp_path)
    event = samples.sample_event("customer.updated")
    with pytest.raises(HandlerFailed):
        dispatcher.dispatch(router, event)

    listed = runner.invoke(main, ["failures"])
    assert listed.exit_code == 1, listed.output  # something to replay: scripts can tell
    assert event["id"] in listed.output
    assert "ConnectionError: the CRM is down" in listed.output
    rows = json.loads(runner.invoke(main, ["failures", "--json"]).output)
    [(name, error)] = rows[0]["errors"].items()
    assert (error["type"], error["message"], error["attempts"]) == (
        "ConnectionError",
        "the CRM is down",
        1,
    )

    still_broken = runner.invoke(main, ["replay", "--failed", "--since", "1h"])
    assert "error" in still_broken.output
    assert (
        json.loads(runner.invoke(main, ["failures", "--json"]).output)[0]["errors"][name][
            "attempts"
        ]
        == 2
    )

    failing_customer_handler()  # the fix is deployed
    replayed = runner.invoke(main, ["replay", "--failed"])
    assert replayed.exit_code == 0, replayed.output
    assert f"{event['id']}  customer.updated: {name} ok" in replayed.output
    failures = runner.invoke(main, ["failures"]).output
    assert "No handler is failing, and no run has stalled." in failures
    again = runner.invoke(main, ["replay", event["id"]])
    assert again.exit_code == 0, again.output  # replaying a done event runs nothing twice


@pytest.mark.parametrize(
    ("event_type", "handler"),
    [
        ("customer.updated", "customers.save_customer"),
        ("v1.billing.meter.no_meter_found", "billing_meters.alert_meter_errors"),
    ],
)
def test_replay_fetches_a_body_the_ledger_lacks_from_stripe(
    tmp_path: Path, fake_stripe: FakeStripe, event_type: str, handler: str
) -> None:
    event = samples.sample_event(event_type)
    if catalog.is_thin(event_type):  # the v2 Events API, which has the event's data too
        fake_stripe.objects[f"/v2/core/events/{event['id']}"] = (200, samples.thin_event(event))
    else:
        fake_stripe.objects[f"/v1/events/{event['id']}"] = (200, event)
    store = SqliteStore(tmp_path / "stripe-events.sqlite3")
    header = parse_event(json.dumps(event), None)
    store.record_published(header.id, header.type, header.created, utc_now())  # no body
    runner = CliRunner(
        env={
            "STRIPE_EVENTS_STATE_DIR": str(tmp_path),
            "STRIPE_API_KEY": "sk_test_replay",
            "STRIPE_API_BASE": fake_stripe.url,
        }
    )
    result = runner.invoke(main, ["replay", event["id"]])
    assert result.exit_code == 0, result.output
    assert f"{event['id']}  {event_type}: {handler} ok" in result.output
    entry = store.event(event["id"])
    assert entry is not None
    assert json.loads(entry.body or "") == event  # a thin event published as its notification


def test_replay_explains_what_it_needs(runner: CliRunner) -> None:
    assert runner.invoke(main, ["replay"]).exit_code == 2
    assert runner.invoke(main, ["replay", "evt_1", "--failed"]).exit_code == 2
    assert "No handler is failing" in runner.invoke(main, ["replay", "--failed"]).output
    unknown = runner.invoke(main, ["replay", "evt_unknown"])
    assert unknown.exit_code == 1
    assert "backfill" in unknown.output
    bad_since = runner.invoke(main, ["failures", "--since", "yesterday"])
    assert bad_since.exit_code == 2
    assert "duration" in bad_since.output


def test_failures_and_replay_against_a_stages_table_and_bus(moto_url: str) -> None:
    """--stage dev: the stage's DynamoDB table and EventBridge bus (here on moto)."""
    table = stage_environment("dev", ROOT)["STRIPE_EVENTS_TABLE"]
    create_table(table, REGION)
    events_client, sqs = clients()
    route = create_route(events_client, sqs, unique("replay"), {"source": ["stripe.webhook"]})
    try:
        event = samples.sample_event("customer.updated")
        store = DynamoStore(table, REGION)
        store.record_received(event["id"], event["type"], event["created"], "t", json.dumps(event))
        failed = Outcome("error", 3, "t", "ConnectionError", "the CRM is down")
        store.record_outcome(event["id"], "customers.save_customer", failed)
        runner = CliRunner()

        listed = runner.invoke(main, ["failures", "--stage", "dev"])
        assert "ConnectionError: the CRM is down" in listed.output, listed.output
        replayed = runner.invoke(main, ["replay", "--failed", "--stage", "dev"])
        assert replayed.exit_code == 0, replayed.output

        [message] = drain(sqs, route.queue_url, expect=1)
        assert (message["detail-type"], message["detail"]) == ("customer.updated", event)
    finally:
        delete_route(events_client, sqs, route)
        boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)


def test_the_ledger_says_what_each_event_is_about_and_all_it_has_of_one(
    runner: CliRunner, tmp_path: Path
) -> None:
    [subscriptions] = [r for r in resource_routers() if r.name == "subscriptions"]
    event = samples.sample_event("customer.subscription.updated")
    sub = event["data"]["object"]
    local_dispatcher(SqliteStore(tmp_path / "stripe-events.sqlite3"), tmp_path).dispatch(
        subscriptions, event
    )

    listed = runner.invoke(main, ["ledger"])
    assert listed.exit_code == 0, listed.output
    first = listed.output.splitlines()[0]
    assert f"{event['id']}  customer.subscription.updated  {sub['id']}" in first
    assert f"customer {sub['customer']}" in first
    [row] = json.loads(runner.invoke(main, ["ledger", "--json"]).output)
    assert (row["object"], row["customer"]) == (sub["id"], sub["customer"])

    one = runner.invoke(main, ["ledger", event["id"]])
    assert one.exit_code == 0, one.output
    assert f"object     {sub['id']}  customer {sub['customer']}" in one.output
    assert "subscriptions.save_subscription: ok (attempts 1)" in one.output
    assert '"object": "subscription"' in one.output  # the body, as received
    detail = json.loads(runner.invoke(main, ["ledger", event["id"], "--json"]).output)
    assert detail["body"] == event
    assert detail["outcomes"]["subscriptions.save_subscription"]["attempts"] == 1

    missing = runner.invoke(main, ["ledger", "evt_never"])
    assert missing.exit_code == 1 and "backfill" in missing.output


def test_replay_says_which_handlers_it_skipped(runner: CliRunner, tmp_path: Path) -> None:
    [customers] = [r for r in resource_routers() if r.name == "customers"]
    event = samples.sample_event("customer.updated")
    local_dispatcher(SqliteStore(tmp_path / "stripe-events.sqlite3"), tmp_path).dispatch(
        customers, event
    )
    replayed = runner.invoke(main, ["replay", event["id"]])
    assert replayed.exit_code == 0, replayed.output
    assert f"{event['id']}  customer.updated: customers.save_customer skipped (done before)" in (
        replayed.output
    )
