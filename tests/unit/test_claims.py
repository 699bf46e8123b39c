"""once_per_object: the claim, its lease from the Lambda's deadline, how the dispatcher waits."""

from __future__ import annotations

import logging
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import stripe

from stripe_events._claims import once_per_object
from stripe_events._context import Context
from stripe_events._dispatch import CLOCK_SKEW_SECONDS, Dispatcher, LocalLambdaContext
from stripe_events._errors import ClaimHeld, HandlerBusy
from stripe_events._router import Router
from stripe_events._stores import Claim
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import local_dispatcher, module_context, samples
from tests.containers import FakeLambdaContext


@pytest.fixture
def ctx(tmp_path: Path) -> Context:
    return replace(module_context(tmp_path, "shop.fulfil"), event_id="evt_a", lease_seconds=30)


def test_the_action_runs_once_and_its_result_is_kept(ctx: Context) -> None:
    runs: list[str] = []

    def ship() -> dict[str, Any]:
        runs.append("shipped")
        return {"parcel": "p1"}

    assert once_per_object(ctx, "orders", "cs_1", ship)
    assert not once_per_object(replace(ctx, event_id="evt_b"), "orders", "cs_1", ship)
    assert runs == ["shipped"]
    assert ctx.store.get("orders", "cs_1") == {
        "claim": "done",
        "owner": "evt_a:shop.fulfil",
        "event_id": "evt_a",
        "handler": "shop.fulfil",
        "parcel": "p1",
    }


def test_another_run_holding_the_claim_makes_this_one_wait(ctx: Context) -> None:
    assert ctx.store.claim("orders", "cs_1", "evt_b:shop.fulfil", 30) is Claim.TAKEN
    with pytest.raises(ClaimHeld, match="orders cs_1 is being done by another run"):
        once_per_object(ctx, "orders", "cs_1", lambda: None)


def test_a_failing_action_releases_the_claim_for_the_retry(ctx: Context) -> None:
    def fails() -> dict[str, Any]:
        raise ConnectionError("the warehouse is down")

    with pytest.raises(ConnectionError):
        once_per_object(ctx, "orders", "cs_1", fails)
    assert ctx.store.get("orders", "cs_1") is None
    other = replace(ctx, event_id="evt_b")
    assert once_per_object(other, "orders", "cs_1", lambda: None)


def test_the_lease_is_the_lambdas_remaining_time(tmp_path: Path) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    leases: list[float] = []
    router = Router("shop")

    @router.on("checkout.session.completed")
    def fulfil(event: stripe.Event, ctx: Context) -> None:
        leases.append(ctx.lease_seconds)

    dispatcher = local_dispatcher(store, tmp_path)
    context = FakeLambdaContext(deadline=time.time() + 42)
    dispatcher.dispatch(router, samples.sample_event("checkout.session.completed"), context)
    [lease] = leases
    assert 41 <= lease - CLOCK_SKEW_SECONDS <= 42


def test_a_held_claim_is_busy_not_failed(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    store = SqliteStore(tmp_path / "state.sqlite3")
    router = Router("shop")
    held: list[bool] = [True]

    @router.on("checkout.session.completed")
    def fulfil(event: stripe.Event, ctx: Context) -> None:
        if held[0]:
            raise ClaimHeld("cs_1 is being done by another run")

    dispatcher: Dispatcher = local_dispatcher(store, tmp_path)
    event = samples.sample_event("checkout.session.completed")
    invocation = LocalLambdaContext(timeout_seconds=30)
    with caplog.at_level(logging.WARNING), pytest.raises(HandlerBusy):
        dispatcher.dispatch(router, event, invocation)
    assert store.outcomes(event["id"]) == {}  # not an error
    assert "shop.fulfil must wait" in caplog.text
    # The run keeps its claim, which names what is left to do: were no retry to come,
    # `failures` would list the event once the lease is over, and not before.
    assert store.failures() == []
    [stalled] = store.failures(now=time.time() + 31 + CLOCK_SKEW_SECONDS)
    assert stalled.waiting == ["shop.fulfil"]
    held[0] = False
    # Lambda's retry of the invocation has its request id, and takes the claim back.
    assert dispatcher.dispatch(router, event, invocation)["shop.fulfil"].status == "ok"
    assert store.failures(now=time.time() + 3600) == []
