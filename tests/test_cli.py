"""The stripe-events command, through click's runner; `send` against a loopback receiver."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import pytest
import stripe
from click.testing import CliRunner

from chalicelib.stripe_events import samples
from chalicelib.stripe_events.cli import main, resource_routers
from chalicelib.stripe_events.store_sqlite import SqliteStore
from tests.helpers import local_dispatcher, local_stage_env


@pytest.fixture
def runner(tmp_path: Path) -> CliRunner:
    return CliRunner(env={"STRIPE_EVENTS_STATE_DIR": str(tmp_path)})


def test_catalog_marks_the_handled_types(runner: CliRunner) -> None:
    result = runner.invoke(main, ["catalog"])
    assert result.exit_code == 0, result.output
    assert "  * customer.created  -> customers\n" in result.output
    assert "    invoice.payment_failed\n" in result.output
    assert "customer.subscription\n" in result.output
    assert "3 of" in result.output


def test_catalog_subscribed_lists_only_handled_types(runner: CliRunner) -> None:
    result = runner.invoke(main, ["catalog", "--subscribed"])
    assert result.exit_code == 0
    lines = [line.split()[1] for line in result.output.splitlines() if line.startswith("  *")]
    assert lines == ["customer.created", "customer.deleted", "customer.updated"]
    assert "invoice" not in result.output


def test_enabled_events_is_the_expanded_list_from_the_routers(runner: CliRunner) -> None:
    result = runner.invoke(main, ["enabled-events"])
    assert result.exit_code == 0
    expected = sorted({t for r in resource_routers() for t in r.event_types()})
    assert result.output.splitlines() == expected
    assert "*" not in result.output


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
    server = HTTPServer(("127.0.0.1", 0), Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_port}/stripe/webhook"
    server.shutdown()


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


def test_send_explains_when_the_app_is_not_running(runner: CliRunner) -> None:
    result = runner.invoke(main, ["send", "customer.created", "--url", "http://127.0.0.1:9/x"])
    assert result.exit_code == 1
    assert "make run" in result.output
