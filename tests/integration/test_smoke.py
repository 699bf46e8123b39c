"""`make run` as a user runs it: start the server, send events with the CLI, read the ledger."""

from __future__ import annotations

import json
import os
import signal
import socket
import sqlite3
import subprocess
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stripe_events._settings import LOCAL_SECRET
from stripe_events_testing import samples
from tests.helpers import ROOT, signed_headers

BURST = 100
T0 = 1_767_225_600

BIN = ROOT / ".venv" / "bin"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_for_port(port: int, process: subprocess.Popen[bytes], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise AssertionError(f"make run exited with {process.returncode}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.2)
    raise AssertionError(f"nothing listened on port {port} within {seconds} s")


def cli(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(BIN / "stripe-events"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@contextmanager
def serving(command: list[str], cwd: Path, env: dict[str, str], port: int) -> Iterator[list[str]]:
    """The server, until the block ends; then what it printed, in the list it gave."""
    printed: list[str] = []
    process = subprocess.Popen(
        command,
        cwd=cwd,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # so that the whole group (make and the server) can be stopped
    )
    try:
        wait_for_port(port, process, seconds=60)
        yield printed
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        printed.append(output.decode())


@dataclass
class Server:
    port: int
    env: dict[str, str]
    state_dir: Path

    @property
    def webhook(self) -> str:
        return f"http://127.0.0.1:{self.port}/stripe/webhook"

    def post(self, event: dict[str, Any]) -> tuple[int, str]:
        body = samples.encode(event)
        headers = signed_headers(body, LOCAL_SECRET)
        request = urllib.request.Request(self.webhook, data=body, method="POST", headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            return error.code, error.read().decode()


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """`make run` as a user starts it, on a free port, with its own state directory."""
    port = free_port()
    state_dir = tmp_path_factory.mktemp("make-run")
    env = {**os.environ, "STRIPE_EVENTS_STATE_DIR": str(state_dir), "PORT": str(port)}
    with serving(["make", "run", f"PORT={port}"], ROOT, env, port) as printed:
        yield Server(port, env, state_dir)
    [output] = printed
    assert "Serving on" in output, output
    # The banner: what to paste where, and which function runs which handler.
    assert f"webhook    POST http://127.0.0.1:{port}/stripe/webhook" in output, output
    assert "customers        customers.save_customer" in output, output
    assert f"state      {state_dir}/" in output, output


def test_make_run_serves_the_webhook_and_runs_the_functions(server: Server) -> None:
    env = server.env
    thin = "v1.billing.meter.no_meter_found"
    for event_type in ("customer.created", "customer.updated", "account.updated", thin):
        sent = cli("send", event_type, "--url", server.webhook, env=env)
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert '200 {"received":true' in sent.stdout
    ledger = cli("ledger", "--json", "--limit", "4", env=env)
    assert ledger.returncode == 0, ledger.stderr
    rows = json.loads(ledger.stdout)
    # A thin notification runs its handler too; with no STRIPE_API_KEY it alerts without
    # fetching the event's errors.
    assert (rows[0]["type"], rows[0]["handlers"]) == (
        thin,
        {"billing_meters.alert_meter_errors": "ok"},
    )
    rows = rows[1:]
    assert [row["type"] for row in rows] == [
        "account.updated",
        "customer.updated",
        "customer.created",
    ]
    # Published and not received: no function subscribes to account.updated.
    assert (rows[0]["handlers"], rows[0]["received_at"]) == ({}, None)
    assert all(row["handlers"] == {"customers.save_customer": "ok"} for row in rows[1:])
    # The docs' curl: the customer that `send customer.created` made.
    state_url = f"http://127.0.0.1:{server.port}/billing/customers/cus_QXg1o8vcGmoR32"
    with urllib.request.urlopen(state_url, timeout=30) as response:
        assert json.loads(response.read())["customer"]["id"] == "cus_QXg1o8vcGmoR32"
    # The same state through the docs' `stripe-events state customer`, run as a user runs
    # it: in its own process, where only loading the app puts chalicelib/ on the path.
    state = cli("state", "customer", "cus_QXg1o8vcGmoR32", env=env)
    assert state.returncode == 0, state.stderr
    assert json.loads(state.stdout)["customer"]["id"] == "cus_QXg1o8vcGmoR32"


def at_once(server: Server, events: list[dict[str, Any]]) -> list[tuple[int, str]]:
    """POST every event at the same moment, each on its own connection."""
    start = threading.Barrier(len(events))

    def post(event: dict[str, Any]) -> tuple[int, str]:
        start.wait()
        return server.post(event)

    with ThreadPoolExecutor(max_workers=len(events)) as pool:
        return list(pool.map(post, events))


def test_a_burst_of_deliveries_is_taken_whole(server: Server) -> None:
    # Stripe, or the Stripe CLI forwarding, can deliver this many at once; `chalice local`
    # listened with a backlog of 5 and reset connections.
    events = [
        samples.sample_event("customer.created", changes={"id": f"cus_burst{n}"})
        for n in range(BURST)
    ]
    answers = at_once(server, events)
    assert [status for status, _ in answers] == [200] * BURST, answers
    for event in events:
        customer = event["data"]["object"]["id"]
        url = f"http://127.0.0.1:{server.port}/billing/customers/{customer}"
        with urllib.request.urlopen(url, timeout=30) as response:
            assert json.loads(response.read())["customer"]["id"] == customer


def test_one_objects_events_at_the_same_moment_end_as_in_order(server: Server) -> None:
    # As a Stripe emulator sends each API request's events: all at once, in any order.
    customer, session = "cus_emulated", "cs_emulated"
    paid = {"id": session, "customer": customer, "status": "complete", "payment_status": "paid"}
    events = [
        samples.sample_event("customer.created", created=T0, changes={"id": customer}),
        samples.sample_event("customer.updated", created=T0, changes={"id": customer}),
        samples.sample_event("customer.deleted", created=T0 + 1, changes={"id": customer}),
        samples.sample_event("checkout.session.completed", created=T0, changes=paid),
        samples.sample_event(
            "checkout.session.async_payment_succeeded", created=T0 + 1, changes=paid
        ),
    ]
    answers = at_once(server, events)
    assert [status for status, _ in answers] == [200] * len(events), answers
    url = f"http://127.0.0.1:{server.port}/billing/customers/{customer}"
    with urllib.request.urlopen(url, timeout=30) as response:
        assert json.loads(response.read())["deleted"] is True
    ledger = json.loads(cli("ledger", "--json", "--limit", "500", env=server.env).stdout)
    sent = {event["id"] for event in events}
    handlers = [row["handlers"] for row in ledger if row["id"] in sent]
    assert len(handlers) == len(events)
    # Both settling events ran the fulfilment handler: one fulfilled, the other found it done.
    assert [h["checkout.fulfil_when_paid"] for h in handlers if len(h) > 1] == ["ok", "ok"]
    orders = sqlite3.connect(server.state_dir / "stripe-events.sqlite3").execute(
        "SELECT body FROM items WHERE collection = 'fulfilments' AND key = ?", (session,)
    )
    [(record,)] = orders.fetchall()
    assert json.loads(record)["claim"] == "done"
