"""The dispatcher: outcomes in the ledger, no second run after success, errors raised."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import stripe

from stripe_events import samples
from stripe_events.context import Context
from stripe_events.dispatch import Dispatcher
from stripe_events.errors import HandlerFailed
from stripe_events.router import Router
from stripe_events.stores.sqlite import SqliteStore
from stripe_events.testing import local_dispatcher


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
