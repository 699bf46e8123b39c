"""The dispatcher: outcomes in the ledger, no second run after success, errors raised."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_events._context import Context
from stripe_events._dispatch import CLOCK_SKEW_SECONDS, Dispatcher, LocalLambdaContext, StripeApi
from stripe_events._errors import HandlerBusy, HandlerFailed, RetryLater
from stripe_events._router import Router
from stripe_events._stores.base import RUNS
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import local_dispatcher, samples


class Flaky:
    """Counts runs; fails while `failing` is set."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.failing = False

    def __call__(self, event: stripe.Event, ctx: Context) -> None:
        self.runs.append(event.id)
        if self.failing:
            raise RuntimeError("the warehouse is down")


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "ledger.sqlite3")


@pytest.fixture
def dispatcher(store: SqliteStore, tmp_path: Path) -> Dispatcher:
    return local_dispatcher(store, tmp_path)


def make_router() -> tuple[Router, Flaky, Flaky]:
    router = Router("billing")
    first, second = Flaky(), Flaky()
    first.__name__ = "first"  # type: ignore[attr-defined]
    second.__name__ = "second"  # type: ignore[attr-defined]
    router.on("invoice.paid")(first)
    router.on("invoice.*")(second)
    return router, first, second


def test_matching_handlers_run_once_and_are_recorded(
    store: SqliteStore, dispatcher: Dispatcher
) -> None:
    router, first, second = make_router()
    event = samples.sample_event("invoice.paid")
    outcomes = dispatcher.dispatch(router, event)
    assert {n: o.status for n, o in outcomes.items()} == {
        "billing.first": "ok",
        "billing.second": "ok",
    }
    dispatcher.dispatch(router, event)  # delivered again
    dispatcher.dispatch(router, json.dumps(event))  # and again, as a JSON string
    assert first.runs == second.runs == [event["id"]]
    [entry] = store.recent(10)
    assert (entry.id, entry.type, entry.created) == (event["id"], "invoice.paid", event["created"])
    assert {n: (o.status, o.attempts) for n, o in entry.handlers.items()} == {
        "billing.first": ("ok", 1),
        "billing.second": ("ok", 1),
    }


def test_only_matching_handlers_run(store: SqliteStore, dispatcher: Dispatcher) -> None:
    router, first, second = make_router()
    dispatcher.dispatch(router, samples.sample_event("invoice.created"))
    assert (len(first.runs), len(second.runs)) == (0, 1)
    assert dispatcher.dispatch(router, samples.sample_event("customer.created")) == {}


def test_a_failure_is_recorded_raised_and_retried_alone(
    store: SqliteStore, dispatcher: Dispatcher
) -> None:
    router, first, second = make_router()
    first.failing = True
    event = samples.sample_event("invoice.paid")
    with pytest.raises(HandlerFailed) as caught:
        dispatcher.dispatch(router, event)
    assert caught.value.errors == {"billing.first": "RuntimeError: the warehouse is down"}
    assert len(second.runs) == 1  # the other handler still ran
    failed = store.outcomes(event["id"])["billing.first"]
    assert (failed.status, failed.attempts, failed.error_type, failed.error) == (
        "error",
        1,
        "RuntimeError",
        "the warehouse is down",
    )
    with pytest.raises(HandlerFailed):
        dispatcher.dispatch(router, event)  # Lambda's retry
    assert store.outcomes(event["id"])["billing.first"].attempts == 2
    first.failing = False
    dispatcher.dispatch(router, event)
    outcomes = store.outcomes(event["id"])
    assert (outcomes["billing.first"].status, outcomes["billing.first"].attempts) == ("ok", 3)
    assert len(first.runs) == 3
    assert len(second.runs) == 1  # never again once it succeeded


def test_the_handler_gets_a_typed_stripe_event(store: SqliteStore, dispatcher: Dispatcher) -> None:
    seen: list[stripe.Event] = []
    router = Router("types")
    router.on("customer.created")(lambda event, ctx: seen.append(event))
    dispatcher.dispatch(router, samples.sample_event("customer.created"))
    [event] = seen
    assert isinstance(event, stripe.Event)
    assert isinstance(event.data.object, stripe.Customer)


@pytest.mark.parametrize(
    ("key", "for_live", "for_test"),
    [("sk_test_abc", False, True), ("rk_live_abc", True, False), ("", False, False)],
)
def test_the_stripe_client_is_given_only_for_events_of_its_keys_mode(
    key: str, for_live: bool, for_test: bool
) -> None:
    # A test key asked about a live object gets a 404, which would store it as deleted.
    api = StripeApi(lambda: key)
    assert (api.for_mode(True) is not None) is for_live
    assert (api.for_mode(False) is not None) is for_test


@pytest.mark.parametrize("livemode", [True, False])
def test_a_handler_gets_a_client_only_for_an_event_of_the_keys_mode(
    dispatcher: Dispatcher, livemode: bool
) -> None:
    seen: list[stripe.StripeClient | None] = []
    router = Router("billing")

    @router.on("invoice.paid")
    def look(event: stripe.Event, ctx: Context) -> None:
        seen.append(ctx.stripe)

    dispatcher.stripe_api = StripeApi(lambda: "sk_test_abc")
    dispatcher.dispatch(router, samples.sample_event("invoice.paid", livemode=livemode))
    assert [client is not None for client in seen] == [not livemode]


def records(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, dict[str, Any]]]:
    fields = ("event_id", "event_type", "handler", "outcome", "attempts")
    return [
        (
            r.levelname,
            r.getMessage(),
            {f: getattr(r, f) for f in fields if hasattr(r, f)},
        )
        for r in caplog.records
        if r.name == "stripe_events.dispatch"
    ]


def test_each_outcome_is_logged_with_the_fields_to_search_on(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    router, _, second = make_router()
    second.failing = True
    event = samples.sample_event("invoice.paid", event_id="evt_logged")
    fields = {"event_id": "evt_logged", "event_type": "invoice.paid"}
    with caplog.at_level(logging.INFO, logger="stripe_events"), pytest.raises(HandlerFailed):
        dispatcher.dispatch(router, event)
    assert records(caplog) == [
        (
            "INFO",
            "billing.first ok for invoice.paid evt_logged",
            {**fields, "handler": "billing.first", "outcome": "ok", "attempts": 1},
        ),
        (
            "ERROR",
            "billing.second failed for invoice.paid evt_logged",
            {**fields, "handler": "billing.second", "outcome": "error", "attempts": 1},
        ),
    ]
    [failed] = [r for r in caplog.records if r.levelname == "ERROR"]
    assert failed.exc_info is not None  # the traceback is in the log
    ok = next(r for r in caplog.records if getattr(r, "outcome", "") == "ok")
    assert 0 <= ok.__dict__["duration_ms"] < 60_000

    caplog.clear()
    second.failing = False
    with caplog.at_level(logging.INFO, logger="stripe_events"):
        dispatcher.dispatch(router, event)
    assert records(caplog) == [
        (
            "INFO",
            "skip billing.first for invoice.paid evt_logged: already done",
            {"event_id": "evt_logged", "handler": "billing.first", "outcome": "skipped"},
        ),
        (
            "INFO",
            "billing.second ok for invoice.paid evt_logged",
            {**fields, "handler": "billing.second", "outcome": "ok", "attempts": 2},
        ),
    ]


def test_a_handler_that_must_wait_is_logged_and_the_run_is_busy(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router("billing")

    @router.on("invoice.paid")
    def wait(event: stripe.Event, ctx: Context) -> None:
        raise RetryLater("the order is being fulfilled elsewhere")

    event = samples.sample_event("invoice.paid", event_id="evt_waits")
    with caplog.at_level(logging.INFO, logger="stripe_events"), pytest.raises(HandlerBusy) as busy:
        dispatcher.dispatch(router, event)
    assert str(busy.value) == "event evt_waits: still running elsewhere: billing.wait"
    assert records(caplog) == [
        (
            "WARNING",
            "billing.wait must wait for evt_waits, retry later: "
            "the order is being fulfilled elsewhere",
            {},
        )
    ]
    # Waiting is not an outcome: nothing is recorded, and the next run runs it.
    assert dispatcher.store.outcomes("evt_waits") == {}


def test_outside_lambda_a_run_has_the_time_a_lambda_would_have() -> None:
    context = LocalLambdaContext()
    assert 59_000 < context.get_remaining_time_in_millis() <= 60_000
    assert LocalLambdaContext(timeout_seconds=2).get_remaining_time_in_millis() <= 2_000
    assert LocalLambdaContext(timeout_seconds=0).get_remaining_time_in_millis() == 0
    assert LocalLambdaContext(timeout_seconds=-5).get_remaining_time_in_millis() == 0


def test_the_stripe_api_reads_its_settings_as_given() -> None:
    assert StripeApi().api_base == ""
    assert StripeApi(api_base="http://127.0.0.1:12111").api_base == "http://127.0.0.1:12111"
    assert StripeApi().setting == "STRIPE_API_KEY"


class NoRequestId:
    """A Lambda-like context without a request id (a test double, a custom runtime)."""

    def get_remaining_time_in_millis(self) -> int:
        return 600_000


def test_a_run_claims_the_event_for_the_time_its_lambda_has_left(
    dispatcher: Dispatcher, store: SqliteStore
) -> None:
    leases: list[float] = []
    router = Router("billing")

    @router.on("invoice.paid")
    def look(event: stripe.Event, ctx: Context) -> None:
        claim = store.get(RUNS, f"{event.id}:billing")
        assert claim is not None
        leases.append(claim["lease_until"] - time.time())

    dispatcher.dispatch(router, samples.sample_event("invoice.paid"), NoRequestId())
    # 600 s left, and the clock skew allowed for.
    [lease] = leases
    assert abs(lease - (600 + CLOCK_SKEW_SECONDS)) < 0.3


def test_runs_without_a_request_id_never_share_a_claim(
    dispatcher: Dispatcher, store: SqliteStore, tmp_path: Path
) -> None:
    busy: list[BaseException] = []
    router = Router("billing")
    event = samples.sample_event("invoice.paid", event_id="evt_shared")

    @router.on("invoice.paid")
    def deliver_again(delivered: stripe.Event, ctx: Context) -> None:
        if not busy:  # the same event, delivered again while this run holds it
            try:
                local_dispatcher(store, tmp_path).dispatch(router, event, NoRequestId())
            except HandlerBusy as error:
                busy.append(error)

    dispatcher.dispatch(router, event, NoRequestId())
    [refused] = busy
    assert str(refused) == "event evt_shared: billing is running it elsewhere"


def test_a_handler_that_waits_does_not_stop_the_others(
    dispatcher: Dispatcher, store: SqliteStore
) -> None:
    router = Router("billing")
    ran: list[str] = []

    @router.on("invoice.paid")
    def first(event: stripe.Event, ctx: Context) -> None:
        raise RetryLater("held elsewhere")

    @router.on("invoice.paid")
    def second(event: stripe.Event, ctx: Context) -> None:
        raise RetryLater("held elsewhere too")

    @router.on("invoice.paid")
    def third(event: stripe.Event, ctx: Context) -> None:
        ran.append(ctx.handler)

    event = samples.sample_event("invoice.paid", event_id="evt_wait")
    with pytest.raises(HandlerBusy) as busy:
        dispatcher.dispatch(router, event)
    assert str(busy.value) == (
        "event evt_wait: still running elsewhere: billing.first, billing.second"
    )
    assert ran == ["billing.third"]
    assert store.outcomes("evt_wait")["billing.third"].status == "ok"


def test_a_failure_names_the_event_and_each_handler_that_failed(dispatcher: Dispatcher) -> None:
    router, first, second = make_router()
    first.failing = second.failing = True
    with pytest.raises(HandlerFailed) as failed:
        dispatcher.dispatch(router, samples.sample_event("invoice.paid", event_id="evt_both"))
    assert failed.value.event_id == "evt_both"
    assert str(failed.value) == (
        "event evt_both: 2 handler(s) failed: billing.first: RuntimeError: the warehouse is "
        "down; billing.second: RuntimeError: the warehouse is down"
    )


def test_a_handlers_context_names_it_its_event_and_its_logger(dispatcher: Dispatcher) -> None:
    seen: list[tuple[str, str, str]] = []
    router = Router("billing")

    @router.on("invoice.paid")
    def charge(event: stripe.Event, ctx: Context) -> None:
        seen.append((ctx.handler, ctx.event_id, ctx.log.name))

    dispatcher.dispatch(router, samples.sample_event("invoice.paid", event_id="evt_ctx"))
    assert seen == [("billing.charge", "evt_ctx", "stripe_events.billing.charge")]


def test_a_handlers_duration_is_in_milliseconds(
    dispatcher: Dispatcher, caplog: pytest.LogCaptureFixture
) -> None:
    router = Router("billing")

    @router.on("invoice.paid")
    def slow(event: stripe.Event, ctx: Context) -> None:
        time.sleep(0.05)

    with caplog.at_level(logging.INFO, logger="stripe_events"):
        dispatcher.dispatch(router, samples.sample_event("invoice.paid"))
    [ok] = [r for r in caplog.records if getattr(r, "outcome", "") == "ok"]
    assert 50 <= ok.__dict__["duration_ms"] < 5_000
