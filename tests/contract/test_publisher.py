"""Publishing: EventBridgePublisher's retries within its budget, the webhook's 503, LocalBus."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from types import ModuleType, SimpleNamespace
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError
from botocore.stub import Stubber
from chalice.app import Chalice, CloudWatchEvent
from chalice.test import Client

import stripe_events._bus as bus
from stripe_events._bus import EventBridgePublisher
from stripe_events._envelope import Entry, parse_event, to_entry
from stripe_events._errors import PublishFailed
from stripe_events._settings import DEFAULT_SOURCE, Settings
from stripe_events_local.bus import LocalBus
from stripe_events_testing import samples
from tests.conftest import REGION
from tests.helpers import ROOT, SECRET, deployed_stage_env, load_app, signed_headers
from tests.sqs_poller import Route, clients, create_route, delete_route, drain, unique

THROTTLED = {
    "FailedEntryCount": 1,
    "Entries": [{"ErrorCode": "ThrottlingException", "ErrorMessage": "Rate exceeded"}],
}
ACCEPTED = {"FailedEntryCount": 0, "Entries": [{"EventId": "11111111-2222-3333-4444-555555555555"}]}
# With the jitter fixed at 0.5 every delay is 1.5 x the backoff: 0.075, 0.15, 0.3, 0.6;
# the next (1.2) would end past the 2 s budget, so the fifth failure is the last.
PLANNED_SLEEPS = [0.075, 0.15, 0.3, 0.6]
ATTEMPTS = len(PLANNED_SLEEPS) + 1


@dataclass
class FakeClock:
    """An injected sleep: records the waits instead of waiting; they count against the budget."""

    sleeps: list[float] = field(default_factory=list)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def fixed_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(bus, "random", SimpleNamespace(random=lambda: 0.5))


@pytest.fixture
def publisher(moto_url: str, clock: FakeClock) -> EventBridgePublisher:
    # moto_url: should a stub ever fall through, the request goes to moto, not to AWS.
    return EventBridgePublisher(REGION, sleep=clock.sleep)


def _settings(**changes: Any) -> Settings:
    return Settings(stage="dev", webhook_secrets=(SECRET,), **changes)


def _entry(event: dict[str, Any], settings: Settings) -> Entry:
    text = samples.encode(event).decode()
    return to_entry(text, parse_event(text, None), settings)


def _stubbed(publisher: EventBridgePublisher, entry: Entry, *responses: dict[str, Any]) -> Stubber:
    stubber = Stubber(publisher.client)
    for response in responses:
        stubber.add_response("put_events", response, {"Entries": [entry]})
    stubber.activate()
    return stubber


@pytest.fixture
def catcher(moto_url: str) -> Iterator[tuple[Any, Route]]:
    """A route that catches what the tests here publish on the default bus, and nothing else."""
    events, sqs = clients()
    source = unique("test.publisher")
    route = create_route(events, sqs, unique("publisher"), {"source": [source, DEFAULT_SOURCE]})
    yield sqs, route
    delete_route(events, sqs, route)


def test_publishes_to_eventbridge(
    moto_url: str, catcher: tuple[Any, Route], clock: FakeClock
) -> None:
    sqs, route = catcher
    settings = _settings(source=route.pattern["source"][0])
    event = samples.sample_event("invoice.paid", created=1_750_000_000)
    entry = _entry(event, settings)

    EventBridgePublisher(REGION, sleep=clock.sleep).publish(entry)

    [message] = drain(sqs, route.queue_url, expect=1)
    assert (message["source"], message["detail-type"]) == (settings.source, "invoice.paid")
    assert message["detail"] == event
    assert message["time"] == "2025-06-15T15:06:40Z"
    assert clock.sleeps == []


@pytest.mark.usefixtures("fixed_jitter")
def test_failed_entries_are_retried_then_publish_fails(
    publisher: EventBridgePublisher, clock: FakeClock
) -> None:
    entry = _entry(samples.sample_event("customer.created"), _settings())
    stubber = _stubbed(publisher, entry, *[THROTTLED] * ATTEMPTS)

    with pytest.raises(PublishFailed, match="ThrottlingException: Rate exceeded"):
        publisher.publish(entry)

    stubber.assert_no_pending_responses()
    assert clock.sleeps == pytest.approx(PLANNED_SLEEPS)
    assert sum(clock.sleeps) <= publisher.budget_seconds


def test_backoff_grows_with_jitter_and_stays_within_the_budget(
    publisher: EventBridgePublisher, clock: FakeClock
) -> None:
    entry = _entry(samples.sample_event("customer.created"), _settings())
    _stubbed(publisher, entry, *[THROTTLED] * 20)

    with pytest.raises(PublishFailed):
        publisher.publish(entry)

    assert len(clock.sleeps) >= 3
    for attempt, delay in enumerate(clock.sleeps):
        backoff = bus.FIRST_BACKOFF_SECONDS * 2**attempt
        assert backoff <= delay < 2 * backoff
    assert clock.sleeps == sorted(clock.sleeps)
    assert sum(clock.sleeps) <= publisher.budget_seconds


class _Unreachable:
    def put_events(self, **kwargs: Any) -> dict[str, Any]:
        raise EndpointConnectionError(endpoint_url="https://events.us-east-1.amazonaws.com/")


@pytest.mark.usefixtures("fixed_jitter")
@pytest.mark.parametrize(
    ("failure", "detail"),
    [
        # botocore raises a ClientError subclass named after the error code.
        ("ClientError", "ThrottlingException: .* Rate exceeded"),
        ("EndpointConnectionError", "EndpointConnectionError: Could not connect"),
    ],
)
def test_client_errors_are_retried_then_publish_fails(
    publisher: EventBridgePublisher, clock: FakeClock, failure: str, detail: str
) -> None:
    entry = _entry(samples.sample_event("customer.created"), _settings())
    if failure == "ClientError":
        stubber = Stubber(publisher.client)
        for _ in range(ATTEMPTS):
            stubber.add_client_error("put_events", "ThrottlingException", "Rate exceeded", 400)
        stubber.activate()
    else:
        publisher.client = _Unreachable()

    # Stripe gets no detail in the answer, but the log and the exception say what happened.
    with pytest.raises(PublishFailed, match=detail):
        publisher.publish(entry)

    assert clock.sleeps == pytest.approx(PLANNED_SLEEPS)


@pytest.mark.usefixtures("fixed_jitter")
def test_success_on_a_retry_returns(publisher: EventBridgePublisher, clock: FakeClock) -> None:
    entry = _entry(samples.sample_event("customer.created"), _settings())
    stubber = _stubbed(publisher, entry, THROTTLED, ACCEPTED)

    publisher.publish(entry)

    stubber.assert_no_pending_responses()
    assert clock.sleeps == pytest.approx(PLANNED_SLEEPS[:1])


def test_real_sleeps_end_within_the_budget(moto_url: str) -> None:
    publisher = EventBridgePublisher(REGION, budget_seconds=0.3)
    publisher.client = _Unreachable()
    entry = _entry(samples.sample_event("customer.created"), _settings())
    started = time.monotonic()

    with pytest.raises(PublishFailed):
        publisher.publish(entry)

    # The budget covers the sleeps; the failing calls themselves take next to no time here.
    assert time.monotonic() - started < 0.3 + 0.1


@pytest.mark.usefixtures("fixed_jitter")
def test_injected_sleep_alone_respects_the_budget(moto_url: str) -> None:
    sleeps: list[float] = []
    publisher = EventBridgePublisher(REGION, sleep=sleeps.append)
    publisher.client = _Unreachable()

    with pytest.raises(PublishFailed):
        publisher.publish(_entry(samples.sample_event("customer.created"), _settings()))

    assert sum(sleeps) <= publisher.budget_seconds


def _aws_app(bus_name: str) -> ModuleType:
    return load_app(
        deployed_stage_env(STRIPE_EVENTS_BUS=bus_name, STRIPE_EVENTS_TABLE=unique("unused"))
    )


def _post(module: ModuleType, body: bytes) -> Any:
    client = Client(module.app, stage_name="dev", project_dir=str(ROOT))
    return client.http.post("/stripe/webhook", headers=signed_headers(body), body=body)


PUBLISH_FAILED = {
    "error": "publish_failed",
    "message": "The event could not be published now; Stripe will retry.",
}


@pytest.mark.usefixtures("fixed_jitter")
def test_webhook_answers_503_when_the_bus_does_not_exist(
    catcher: tuple[Any, Route], clock: FakeClock
) -> None:
    sqs, route = catcher
    event = samples.sample_event("customer.created")
    body = samples.encode(event)
    missing = _aws_app(unique("no-such-bus"))
    missing.events.publisher.sleep = clock.sleep

    response = _post(missing, body)

    assert response.status_code == 503
    assert response.json_body == PUBLISH_FAILED
    assert clock.sleeps == pytest.approx(PLANNED_SLEEPS)
    assert drain(sqs, route.queue_url) == []

    # The same request, once the bus is there, is caught: the empty queue above meant something.
    response = _post(_aws_app("default"), body)

    assert response.status_code == 200
    assert [m["detail"]["id"] for m in drain(sqs, route.queue_url, expect=1)] == [event["id"]]


@pytest.mark.usefixtures("fixed_jitter")
def test_webhook_answers_503_when_eventbridge_refuses_the_entry(
    catcher: tuple[Any, Route], clock: FakeClock
) -> None:
    sqs, route = catcher
    module = _aws_app("default")
    publisher = module.events.publisher
    publisher.sleep = clock.sleep
    body = samples.encode(samples.sample_event("customer.created"))
    with Stubber(publisher.client) as stubber:
        for _ in range(ATTEMPTS):
            stubber.add_response("put_events", THROTTLED)

        response = _post(module, body)

        stubber.assert_no_pending_responses()
    assert response.status_code == 503
    assert response.json_body == PUBLISH_FAILED
    assert drain(sqs, route.queue_url) == []


def test_local_bus_survives_a_failing_function(caplog: pytest.LogCaptureFixture) -> None:
    app = Chalice(app_name="local-bus-test")
    calls: list[str] = []
    customer_events = {"source": [DEFAULT_SOURCE], "detail-type": ["customer.created"]}

    @app.on_cw_event(customer_events, name="fails")
    def fails(event: CloudWatchEvent) -> None:
        calls.append("fails")
        raise RuntimeError("bug in a function")

    @app.on_cw_event(customer_events, name="works")
    def works(event: CloudWatchEvent) -> None:
        calls.append(f"works {event.detail['id']}")

    @app.on_cw_event({"source": [DEFAULT_SOURCE], "detail-type": ["invoice.paid"]}, name="other")
    def other(event: CloudWatchEvent) -> None:
        calls.append("other")

    event = samples.sample_event("customer.created")

    with caplog.at_level(logging.ERROR, logger="stripe_events.bus"):
        LocalBus(lambda: app, REGION).publish(_entry(event, _settings(bus="local")))

    assert calls == ["fails", f"works {event['id']}"]
    [record] = caplog.records
    assert record.getMessage() == "function fails failed for customer.created"
    assert record.exc_info is not None and isinstance(record.exc_info[1], RuntimeError)
