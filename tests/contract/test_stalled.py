"""A run that died never turns into a 2xx with nothing run, nor into silence.

A function's run claims the event; a run that is killed (kill -9, a Lambda timeout, out
of memory) keeps its claim until the lease ends. Then `failures` lists the event as
stalled, with the handlers that did not succeed, and `replay --failed` runs them. In
stage `local`, a delivery that finds the event still claimed waits a little, then gets
a 503 and is not marked published, so that Stripe delivers it again.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import stripe
from chalice.test import Client
from click.testing import CliRunner

from stripe_events._context import Context
from stripe_events._dispatch import CLOCK_SKEW_SECONDS, Dispatcher, LocalLambdaContext
from stripe_events._ledger import Outcome, utc_now
from stripe_events._router import Router
from stripe_events._stores import Store
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_local.bus import LocalBus
from stripe_events_local.payloads import LocalPayloadStore
from stripe_events_local.sqlite import SqliteStore
from stripe_events_ops.cli import main
from stripe_events_ops.ledger_view import as_json
from stripe_events_testing import samples
from tests.conftest import REGION
from tests.helpers import ROOT, create_table, load_app, local_stage_env, signed_headers
from tests.sqs_poller import unique

KILLED: list[str] = []  # the handlers that kill their run, by name


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Store:
    if request.param == "sqlite":
        return SqliteStore(tmp_path / "ledger.sqlite3")
    request.getfixturevalue("moto_url")
    table = unique("stalled")
    create_table(table, REGION)
    return DynamoStore(table, REGION)


def shop() -> Router:
    router = Router("shop")

    @router.on("checkout.session.completed")
    def reserve(event: stripe.Event, ctx: Context) -> None:
        ctx.store.put("reserved", event.data.object.id, {"by": event.id})

    @router.on("checkout.session.completed")
    def ship(event: stripe.Event, ctx: Context) -> None:
        if "shop.ship" in KILLED:
            # What kill -9 or a Lambda timeout does: nothing after this line, no cleanup.
            raise SystemExit("killed")
        ctx.store.put("shipped", event.data.object.id, {"by": event.id})

    return router


@pytest.fixture
def killed() -> Iterator[list[str]]:
    KILLED[:] = ["shop.ship"]
    yield KILLED
    KILLED.clear()


def dispatcher(store: Store, tmp_path: Path) -> Dispatcher:
    return Dispatcher(store, lambda: LocalPayloadStore(tmp_path / "payloads"))


def test_a_run_that_died_is_listed_as_stalled_once_its_lease_ends(
    store: Store, tmp_path: Path, killed: list[str]
) -> None:
    router = shop()
    event = samples.sample_event("checkout.session.completed")
    # A short Lambda timeout: its lease ends a second (CLOCK_SKEW_SECONDS) after it.
    with pytest.raises(SystemExit):
        dispatcher(store, tmp_path).dispatch(router, event, LocalLambdaContext(timeout_seconds=0))
    died_at = time.time()

    # While the lease runs, the run may still be alive somewhere: not listed.
    assert store.failures(now=died_at) == []
    [entry] = store.failures(now=died_at + CLOCK_SKEW_SECONDS + 0.1)
    assert entry.id == event["id"]
    assert entry.handlers["shop.reserve"].status == "ok"
    assert entry.waiting == ["shop.ship"]
    [run] = entry.stalled
    assert (run.router, run.handlers) == ("shop", ("shop.reserve", "shop.ship"))
    assert as_json(entry)["stalled"] == ["shop.ship"]
    assert store.failures(since="9999", now=died_at + 5) == []  # `since` applies

    # The next delivery, once the lease has ended, takes the claim and runs what is left.
    killed.clear()
    time.sleep(max(0.0, died_at + CLOCK_SKEW_SECONDS + 0.05 - time.time()))
    outcomes = dispatcher(store, tmp_path).dispatch(router, event)
    assert outcomes["shop.ship"].status == "ok"
    assert outcomes["shop.reserve"].attempts == 1  # not run again
    assert store.failures(now=time.time() + 3600) == []


def test_a_run_that_died_after_its_last_handler_is_not_listed(store: Store, tmp_path: Path) -> None:
    """Nothing is left to do, even though its claim outlives it."""
    event = samples.sample_event("checkout.session.completed")
    store.record_received(event["id"], event["type"], event["created"], "2026-01-01T00:00:00", "{}")
    for name in ("shop.reserve", "shop.ship"):
        store.record_outcome(event["id"], name, Outcome("ok", 1, utc_now()))
    store.claim_run(event["id"], "shop", "dead", 1, ["shop.reserve", "shop.ship"], now=0)
    assert store.failures() == []


def local_app(tmp_path: Path) -> Any:
    module = load_app({**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(tmp_path)})
    # Waits of a few milliseconds instead of seconds: the same answers, sooner.
    module.events.publisher = LocalBus(lambda: module.app, REGION, busy_waits=(0.01, 0.01))
    return module


def test_stage_local_answers_503_while_a_killed_server_holds_the_run(tmp_path: Path) -> None:
    module = local_app(tmp_path)
    store = module.events.store
    event = samples.sample_event("customer.updated")
    body = samples.encode(event)
    # What a server killed mid-run leaves: the event received, the run claimed for 61 s.
    store.record_received(event["id"], event["type"], event["created"], "t", body.decode())
    store.claim_run(event["id"], "customers", "killed-server", 61, ["customers.save_customer"])
    client = Client(module.app, stage_name="local", project_dir=str(ROOT))
    secret = module.events.settings.webhook_secrets[0]

    response = client.http.post("/stripe/webhook", headers=signed_headers(body, secret), body=body)
    assert response.status_code == 503, response.body
    assert json.loads(response.body)["error"] == "publish_failed"
    entry = store.event(event["id"])
    assert entry is not None and entry.published_at is None  # so Stripe's retry publishes
    assert entry.handlers == {}
    # Not a duplicate on the next delivery either: it is tried again, and answered 503.
    again = client.http.post("/stripe/webhook", headers=signed_headers(body, secret), body=body)
    assert again.status_code == 503


def test_failures_lists_a_stalled_event_and_replay_failed_runs_it(tmp_path: Path) -> None:
    module = local_app(tmp_path)
    store = module.events.store
    event = samples.sample_event("customer.updated")
    body = samples.encode(event).decode()
    store.record_received(event["id"], event["type"], event["created"], "t", body)
    # A run killed two minutes ago: its lease (61 s) is over.
    store.claim_run(
        event["id"], "customers", "killed", 61, ["customers.save_customer"], now=time.time() - 120
    )
    runner = CliRunner(env={"STRIPE_EVENTS_STATE_DIR": str(tmp_path)})

    listed = runner.invoke(main, ["failures"])
    assert listed.exit_code == 1, listed.output
    assert event["id"] in listed.output
    assert "customers.save_customer: stalled" in listed.output
    assert "1 event(s) failing or stalled" in listed.output
    [row] = json.loads(runner.invoke(main, ["failures", "--json"]).output)
    assert row["stalled"] == ["customers.save_customer"]

    replayed = runner.invoke(main, ["replay", "--failed"])
    assert replayed.exit_code == 0, replayed.output
    assert f"{event['id']}  customer.updated: customers.save_customer ok" in replayed.output
    assert "no run has stalled" in runner.invoke(main, ["failures"]).output
    assert store.get("customers", event["data"]["object"]["id"]) is not None
