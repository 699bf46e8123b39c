"""Fault injection on emulated AWS: EventBridge or the store fails, nothing is lost or done twice.

The webhook runs with STRIPE_EVENTS_BUS=default against the moto server, with the ledger
in a DynamoDB table. What reaches the bus is counted on an SQS-targeted rule built from
the customers router's own pattern; what a handler does is counted by a handler swapped
in for customers.save_customer. Every fault is injected at the AWS client (a closed
port, a silent port, botocore's Stubber) or behind the Store interface, so the core runs
unchanged.

Each module run writes one line of figures (faults, events, duplicates, losses) for the
reliability section of the docs (docs/exactly-once.md).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
import stripe
from botocore.config import Config
from botocore.exceptions import EndpointConnectionError, ReadTimeoutError
from botocore.stub import Stubber
from chalice.test import Client

from chalicelib.resources import customers
from stripe_events._bus import EventBridgePublisher
from stripe_events._context import Context
from stripe_events._errors import HandlerBusy
from stripe_events._ledger import LedgerEntry, Outcome
from stripe_events._settings import Settings
from stripe_events._stores import Claim, Store
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_testing import samples
from tests.conftest import REGION
from tests.containers import FakeLambdaContext
from tests.helpers import (
    ROOT,
    create_table,
    deployed_stage_env,
    figures_after,
    load_app,
    signed_headers,
    swap_handler,
)
from tests.sqs_poller import (
    Route,
    clients,
    create_route,
    delete_route,
    drain,
    lambda_payload,
    unique,
)

HANDLER = "customers.save_customer"
FUNCTION = "customers"
# Smaller than the default, the retry logic being the same. The waits are recorded, not
# slept, so the budget costs no time; it must still leave a first refused call room to be
# retried on a busy machine (0.3 s did not, once, under mutmut).
BUDGET_SECONDS = 1.0
PUBLISH_FAILED = {
    "error": "publish_failed",
    "message": "The event could not be published now; Stripe will retry.",
}
# For clients pointed at a dead endpoint: one attempt, no botocore backoff to wait out.
FAIL_FAST = Config(retries={"total_max_attempts": 1}, connect_timeout=0.2, read_timeout=0.5)
NOWHERE = "http://127.0.0.1:9/"  # only named in the errors the fakes raise


@dataclass
class Tally:
    """What the faults did, summed over the module, for the docs' figures."""

    scenarios: int = 0
    failed_calls: int = 0  # AWS calls (PutEvents, DynamoDB) that an injected fault made fail
    answers_503: int = 0
    events: int = 0
    bus_messages: int = 0
    handler_runs: int = 0
    bus_duplicates: int = 0  # extra copies on the bus: absorbed by the handlers' idempotency
    duplicate_side_effects: int = 0
    lost: int = 0

    def settle(self, messages: int, runs: int) -> None:
        self.events += 1
        self.bus_messages += messages
        self.handler_runs += runs
        self.bus_duplicates += max(0, messages - 1)
        self.duplicate_side_effects += max(0, runs - 1)
        self.lost += runs == 0

    def summary(self) -> str:
        return (
            f"test_faults: {self.scenarios} fault scenarios, {self.failed_calls} failed AWS "
            f"calls, {self.answers_503} answers 503, {self.events} events, "
            f"{self.bus_messages} bus messages ({self.bus_duplicates} duplicates on the bus), "
            f"{self.handler_runs} handler runs ({self.duplicate_side_effects} duplicate side "
            f"effects), {self.lost} lost"
        )


TALLY = Tally()


figures = figures_after(TALLY.summary)


@dataclass(frozen=True)
class Stack:
    table: str
    sqs: Any
    route: Route


@pytest.fixture(scope="module")
def stack(moto_url: str) -> Iterator[Stack]:
    table = unique("faults")
    create_table(table, REGION)
    events, sqs = clients()
    pattern = customers.router.pattern(Settings(stage="dev"))
    route = create_route(events, sqs, unique("faults"), pattern)
    yield Stack(table, sqs, route)
    delete_route(events, sqs, route)
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)


@dataclass
class App:
    """A fresh app.py on stage dev against moto, with a fast publisher and a counting handler."""

    module: ModuleType
    stack: Stack
    client: Client
    publisher: EventBridgePublisher
    sleeps: list[float]
    runs: list[str]  # the event ids the swapped-in handler ran for, in order

    @property
    def store(self) -> DynamoStore:
        store = self.module.events.store
        assert isinstance(store, DynamoStore)
        return store

    def post(self, body: bytes) -> Any:
        # Stripe signs every delivery anew: a retry has a fresh timestamp, the same body.
        return self.client.http.post("/stripe/webhook", headers=signed_headers(body), body=body)

    def published_at(self, event_id: str) -> str | None:
        entry = self.store.event(event_id)
        return None if entry is None else entry.published_at

    def messages(self, event_id: str, expect: int = 0) -> list[dict[str, Any]]:
        received = drain(self.stack.sqs, self.stack.route.queue_url, expect=expect)
        return [m for m in received if m["detail"]["id"] == event_id]

    def invoke(self, message: dict[str, Any]) -> Any:
        """The customers function, as EventBridge invokes it with this message."""
        return self.client.lambda_.invoke(FUNCTION, lambda_payload(message)).payload

    def deliver(self, event: dict[str, Any]) -> dict[str, Any]:
        """Publish through the healthy webhook; the message the function will be invoked with."""
        response = self.post(samples.encode(event))
        assert response.status_code == 200, response.body
        [message] = self.messages(event["id"], expect=1)
        return message

    def outcome(self, event_id: str) -> Outcome | None:
        return self.store.outcomes(event_id).get(HANDLER)


@pytest.fixture
def app(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> App:
    module = load_app(deployed_stage_env(STRIPE_EVENTS_TABLE=stack.table))
    sleeps: list[float] = []
    publisher = EventBridgePublisher(REGION, budget_seconds=BUDGET_SECONDS, sleep=sleeps.append)
    module.events.publisher = publisher
    runs: list[str] = []

    def record(event: stripe.Event, ctx: Context) -> None:
        runs.append(event.id)

    for event_type in ("customer.created", "customer.updated", "customer.deleted"):
        swap_handler(monkeypatch, customers.router, event_type, record)
    drain(stack.sqs, stack.route.queue_url)  # what an earlier, failed test may have left
    client = Client(module.app, stage_name="dev", project_dir=str(ROOT))
    return App(module, stack, client, publisher, sleeps, runs)


def new_event() -> dict[str, Any]:
    customer = "cus_" + unique("faults").replace("-", "")
    return samples.sample_event("customer.created", changes={"id": customer})


@pytest.fixture
def refused_port() -> Iterator[int]:
    # Bound but not listening: a connection is refused at once, and nothing else can take
    # the port while the test runs.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield sock.getsockname()[1]


@pytest.fixture
def silent_port() -> Iterator[int]:
    # Listening but never accepting: the kernel completes the handshake, no answer ever comes.
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield sock.getsockname()[1]


def client_at(service: str, port: int, config: Any = FAIL_FAST) -> Any:
    return boto3.client(
        service, region_name=REGION, endpoint_url=f"http://127.0.0.1:{port}", config=config
    )


def count_calls(client: Any) -> list[str]:
    """The API calls made with `client`, as botocore sees them."""
    calls: list[str] = []
    client.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    return calls


# --- EventBridge faults at the webhook -------------------------------------------------

# Each installs a fault on the publisher's client and returns the function that removes it.
Fault = Callable[[EventBridgePublisher, int, int], Callable[[], None]]


def _swap_client(publisher: EventBridgePublisher, client: Any) -> Callable[[], None]:
    live = publisher.client
    publisher.client = client

    def restore() -> None:
        publisher.client = live

    return restore


def eventbridge_down(
    publisher: EventBridgePublisher, refused: int, silent: int
) -> Callable[[], None]:
    # The publisher's own config: its timeouts and retry settings are what is under test.
    return _swap_client(publisher, client_at("events", refused, publisher.client.meta.config))


def eventbridge_silent(
    publisher: EventBridgePublisher, refused: int, silent: int
) -> Callable[[], None]:
    return _swap_client(publisher, client_at("events", silent, publisher.client.meta.config))


# More than the budget allows for: the Stubber must never run dry while the fault lasts.
STUBBED = 10


def _stubbed(publisher: EventBridgePublisher, add: Callable[[Any], None]) -> Callable[[], None]:
    stubber = Stubber(publisher.client)
    for _ in range(STUBBED):
        add(stubber)
    stubber.activate()

    def remove() -> None:
        stubber.deactivate()

    return remove


def eventbridge_throttles(
    publisher: EventBridgePublisher, refused: int, silent: int
) -> Callable[[], None]:
    return _stubbed(
        publisher,
        lambda stubber: stubber.add_client_error(
            "put_events", "ThrottlingException", "Rate exceeded", 400
        ),
    )


def eventbridge_fails_the_entry(
    publisher: EventBridgePublisher, refused: int, silent: int
) -> Callable[[], None]:
    # HTTP 200, but the one entry was not accepted: only FailedEntryCount says so.
    partial = {
        "FailedEntryCount": 1,
        "Entries": [{"ErrorCode": "InternalFailure", "ErrorMessage": "Internal service error"}],
    }
    return _stubbed(publisher, lambda stubber: stubber.add_response("put_events", partial))


FAULTS: dict[str, Fault] = {
    "down": eventbridge_down,
    "throttled": eventbridge_throttles,
    "entry failed": eventbridge_fails_the_entry,
    "no answer": eventbridge_silent,
}


@pytest.mark.parametrize("kind", FAULTS)
def test_eventbridge_fault_answers_503_and_the_retry_publishes_once(
    app: App, kind: str, refused_port: int, silent_port: int
) -> None:
    event = new_event()
    body = samples.encode(event)
    config = app.publisher.client.meta.config
    remove = FAULTS[kind](app.publisher, refused_port, silent_port)
    TALLY.scenarios += 1
    try:
        started = time.monotonic()
        failed = app.post(body)
        elapsed = time.monotonic() - started
    finally:
        remove()
    TALLY.failed_calls += len(app.sleeps) + 1
    TALLY.answers_503 += failed.status_code == 503

    assert (failed.status_code, failed.json_body) == (503, PUBLISH_FAILED)
    assert app.published_at(event["id"]) is None
    assert app.messages(event["id"]) == []
    # Within Stripe's ~10 s wait: the budget, plus at most one call's own timeouts.
    assert elapsed < BUDGET_SECONDS + config.connect_timeout + config.read_timeout + 0.5
    assert sum(app.sleeps) <= BUDGET_SECONDS
    if kind != "no answer":  # one silent call alone spends the budget
        assert app.sleeps, "a fast failure is retried within the budget"

    retried = app.post(body)  # Stripe's next delivery, once EventBridge is back
    assert (retried.status_code, retried.json_body) == (200, {"received": True, "id": event["id"]})
    assert app.published_at(event["id"]) is not None
    again = app.post(body)  # and one more, as at-least-once delivery allows
    assert (again.status_code, again.json_body) == (
        200,
        {"received": True, "id": event["id"], "duplicate": True},
    )

    messages = app.messages(event["id"], expect=1)
    for message in messages:
        assert app.invoke(message) == {HANDLER: "ok"}
    TALLY.settle(len(messages), len(app.runs))
    assert len(messages) == 1
    assert app.runs == [event["id"]]
    app.invoke(messages[0])  # a Lambda retry of the same invocation
    assert app.runs == [event["id"]]


class AnswerLost:
    """EventBridge takes the entry, then its answer is lost on the way back."""

    def __init__(self, live: Any) -> None:
        self.live = live
        self.calls = 0

    def put_events(self, **kwargs: Any) -> dict[str, Any]:
        self.calls += 1
        self.live.put_events(**kwargs)
        raise ReadTimeoutError(endpoint_url=NOWHERE)


def test_an_entry_accepted_but_unanswered_is_on_the_bus_twice_and_handled_once(app: App) -> None:
    event = new_event()
    body = samples.encode(event)
    lost = AnswerLost(app.publisher.client)
    remove = _swap_client(app.publisher, lost)
    TALLY.scenarios += 1
    try:
        failed = app.post(body)
    finally:
        remove()
    TALLY.failed_calls += lost.calls
    TALLY.answers_503 += failed.status_code == 503

    # The webhook cannot know the entry went through: 503, and Stripe sends it again.
    assert failed.status_code == 503
    assert app.published_at(event["id"]) is None
    assert app.post(body).status_code == 200
    assert app.post(body).json_body["duplicate"] is True

    messages = app.messages(event["id"], expect=lost.calls + 1)
    for message in messages:
        assert app.invoke(message) == {HANDLER: "ok"}
    TALLY.settle(len(messages), len(app.runs))
    assert len(messages) == lost.calls + 1  # every attempt, and the retry, reached the bus
    assert app.runs == [event["id"]]


def test_the_ledger_down_at_the_webhook_still_publishes_and_a_redelivery_runs_nothing_twice(
    app: App, refused_port: int
) -> None:
    event = new_event()
    body = samples.encode(event)
    dead = client_at("dynamodb", refused_port)
    refused = count_calls(dead)
    live = app.store.client
    app.store.client = dead
    TALLY.scenarios += 1
    try:
        # The ledger is a shortcut at the webhook, not a gate: publishing goes on.
        first = app.post(body)
    finally:
        app.store.client = live
    TALLY.failed_calls += len(refused)

    assert (first.status_code, first.json_body) == (200, {"received": True, "id": event["id"]})
    assert len(refused) >= 2  # the duplicate check, then the record
    assert app.published_at(event["id"]) is None
    # Stripe delivers again (its copy of our 200 was lost, say): nothing says it is a duplicate.
    assert app.post(body).json_body == {"received": True, "id": event["id"]}
    assert app.post(body).json_body["duplicate"] is True

    messages = app.messages(event["id"], expect=2)
    for message in messages:
        assert app.invoke(message) == {HANDLER: "ok"}
    TALLY.settle(len(messages), len(app.runs))
    assert len(messages) == 2
    assert app.runs == [event["id"]]


# --- Store faults inside the function ----------------------------------------------------


def test_dynamodb_unreachable_when_the_function_starts(app: App, refused_port: int) -> None:
    event = new_event()
    message = app.deliver(event)
    store = app.store
    dead = client_at("dynamodb", refused_port)
    refused = count_calls(dead)
    live = store.client
    store.client = dead
    TALLY.scenarios += 1
    try:
        with pytest.raises(EndpointConnectionError):
            app.invoke(message)
    finally:
        store.client = live
    TALLY.failed_calls += len(refused)

    assert app.runs == []
    assert app.outcome(event["id"]) is None
    assert app.invoke(message) == {HANDLER: "ok"}  # Lambda's retry, DynamoDB back
    assert app.invoke(message) == {HANDLER: "ok"}  # and one more
    TALLY.settle(1, len(app.runs))
    assert app.runs == [event["id"]]
    outcome = app.outcome(event["id"])
    assert outcome is not None and (outcome.status, outcome.attempts) == ("ok", 1)


class FlakyStore(Store):
    """The app's store, with chosen methods failing as if DynamoDB were unreachable."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.down: set[str] = set()
        self.refused = 0

    def _check(self, method: str) -> None:
        if method in self.down:
            self.refused += 1
            raise EndpointConnectionError(endpoint_url=NOWHERE)

    # The primitives are the inner store's: each public method below fails as asked.
    def _write(self, *args: Any, **kwargs: Any) -> bool:
        return self.inner._write(*args, **kwargs)

    def _delete(self, *args: Any, **kwargs: Any) -> bool:
        return self.inner._delete(*args, **kwargs)

    def _failing_ids(self, since: str) -> set[str]:
        return self.inner._failing_ids(since)

    def _expired_runs(self, now: float) -> list[tuple[str, dict[str, Any]]]:
        return self.inner._expired_runs(now)

    def record_published(self, event_id: str, event_type: str, created: int, at: str) -> None:
        self._check("record_published")
        self.inner.record_published(event_id, event_type, created, at)

    def record_received(
        self, event_id: str, event_type: str, created: int, at: str, body: str
    ) -> None:
        self._check("record_received")
        self.inner.record_received(event_id, event_type, created, at, body)

    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        self._check("record_outcome")
        self.inner.record_outcome(event_id, handler, outcome)

    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        self._check("outcomes")
        return self.inner.outcomes(event_id)

    def event(self, event_id: str) -> LedgerEntry | None:
        self._check("event")
        return self.inner.event(event_id)

    def recent(self, limit: int, since: str = "") -> list[LedgerEntry]:
        self._check("recent")
        return self.inner.recent(limit, since)

    def failures(self, since: str = "", now: float | None = None) -> list[LedgerEntry]:
        self._check("failures")
        return self.inner.failures(since, now)

    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        self._check("get")
        return self.inner.get(collection, key)

    def put_if_newer(self, collection: str, key: str, item: dict[str, Any], order: str) -> bool:
        self._check("put_if_newer")
        return self.inner.put_if_newer(collection, key, item, order)

    def put_child_if_newer(
        self, collection: str, parent: str, key: str, item: dict[str, Any], order: str
    ) -> bool:
        self._check("put_child_if_newer")
        return self.inner.put_child_if_newer(collection, parent, key, item, order)

    def claim(
        self,
        collection: str,
        key: str,
        owner: str,
        lease_seconds: float,
        now: float | None = None,
        about: dict[str, Any] | None = None,
    ) -> Claim:
        self._check("claim")
        return self.inner.claim(collection, key, owner, lease_seconds, now, about)

    def finish_claim(self, collection: str, key: str, owner: str, result: dict[str, Any]) -> None:
        self._check("finish_claim")
        self.inner.finish_claim(collection, key, owner, result)

    def release_claim(self, collection: str, key: str, owner: str) -> None:
        self._check("release_claim")
        self.inner.release_claim(collection, key, owner)

    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        self._check("children")
        return self.inner.children(collection, parent)

    def put(self, collection: str, key: str, item: dict[str, Any]) -> None:
        self._check("put")
        self.inner.put(collection, key, item)


@pytest.fixture
def flaky(app: App) -> FlakyStore:
    store = FlakyStore(app.store)
    app.module.events.dispatcher.store = store
    return store


@pytest.mark.parametrize("method", ["record_received", "claim", "outcomes"])
def test_the_ledger_failing_before_the_handler_runs_nothing_until_the_retry(
    app: App, flaky: FlakyStore, method: str
) -> None:
    event = new_event()
    message = app.deliver(event)
    flaky.down = {method}
    TALLY.scenarios += 1
    with pytest.raises(EndpointConnectionError):
        app.invoke(message)
    flaky.down = set()
    TALLY.failed_calls += flaky.refused

    assert app.runs == []
    assert app.invoke(message) == {HANDLER: "ok"}
    assert app.invoke(message) == {HANDLER: "ok"}
    TALLY.settle(1, len(app.runs))
    assert app.runs == [event["id"]]
    outcome = app.outcome(event["id"])
    assert outcome is not None and (outcome.status, outcome.attempts) == ("ok", 1)


def test_the_claims_release_failing_after_the_run_runs_nothing_twice(
    app: App, flaky: FlakyStore
) -> None:
    event = new_event()
    message = app.deliver(event)
    function = app.module.app.handler_map[FUNCTION]
    payload = lambda_payload(message)
    invocation = FakeLambdaContext(deadline=time.time() + 60)
    flaky.down = {"release_claim"}
    TALLY.scenarios += 1
    with pytest.raises(EndpointConnectionError):
        function(payload, invocation)  # the handler ran, its outcome is recorded; it fails
    flaky.down = set()
    TALLY.failed_calls += flaky.refused

    # Another delivery meanwhile waits for the run's lease; Lambda's retry of the same
    # invocation (its request id) takes the claim back and finds the outcome.
    with pytest.raises(HandlerBusy):
        app.invoke(message)
    assert function(payload, invocation) == {HANDLER: "ok"}
    TALLY.settle(1, len(app.runs))
    assert app.runs == [event["id"]]
    outcome = app.outcome(event["id"])
    assert outcome is not None and (outcome.status, outcome.attempts) == ("ok", 1)


# --- What the design does not cover --------------------------------------------------------


def test_limit_the_outcome_write_failing_after_the_side_effect_runs_it_again(
    app: App, flaky: FlakyStore
) -> None:
    """Pins a limit of the design, not a wish: see the docs' reliability figures.

    The handler's outcome is what says it is done. If that write fails after the handler
    ran, the run fails and releases its claim; Lambda's retry runs the handler again.
    (With Powertools' idempotency the same held for its completion record's write.)
    """
    event = new_event()
    message = app.deliver(event)
    flaky.down = {"record_outcome"}
    with pytest.raises(EndpointConnectionError):
        app.invoke(message)
    flaky.down = set()
    assert app.runs == [event["id"]]  # the side effect happened
    assert app.outcome(event["id"]) is None  # but the ledger does not know it

    assert app.invoke(message) == {HANDLER: "ok"}
    assert app.runs == [event["id"], event["id"]]  # the side effect, twice
    outcome = app.outcome(event["id"])
    assert outcome is not None and (outcome.status, outcome.attempts) == ("ok", 1)
