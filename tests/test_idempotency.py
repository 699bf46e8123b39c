"""Exactly once per (event id, handler): 20 concurrent deliveries, lock expiry, retention."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
import stripe
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

from stripe_events import samples
from stripe_events.context import Context
from stripe_events.dispatch import Dispatcher
from stripe_events.errors import HandlerBusy
from stripe_events.idempotency import KEY_PREFIX, open_idempotency, run_once
from stripe_events.payloads import LocalPayloadStore
from stripe_events.router import Router
from stripe_events.settings import Settings
from stripe_events.stores import Store
from stripe_events.stores.dynamodb import DynamoStore
from stripe_events.stores.sqlite import SqliteStore
from tests.conftest import REGION
from tests.helpers import create_table
from tests.sqs_poller import unique

THREADS = 20
Layer = Callable[[], BasePersistenceLayer]


@pytest.fixture(params=["sqlite", "dynamodb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[Store, Layer]]:
    """A store and a factory of persistence layers: one layer per Lambda instance."""
    if request.param == "sqlite":
        settings = Settings(stage="local", bus="local", state_dir=tmp_path)
        yield SqliteStore(tmp_path / "ledger.sqlite3"), lambda: open_idempotency(settings)
        return
    request.getfixturevalue("moto_url")
    table = unique("idempotency")
    create_table(table, REGION)
    settings = Settings(stage="dev", table=table, region=REGION)
    yield DynamoStore(table, REGION), lambda: open_idempotency(settings)
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)


class SideEffects:
    def __init__(self) -> None:
        self.count = 0
        self.lock = threading.Lock()

    def run(self) -> dict[str, Any]:
        time.sleep(0.05)  # widen the window in which the other deliveries arrive
        with self.lock:
            self.count += 1
        return {"status": "ok"}


def all_at_once(work: Callable[[], None]) -> list[BaseException | None]:
    """Run `work` in THREADS threads released together; return what each raised."""
    start = threading.Barrier(THREADS)
    raised: list[BaseException | None] = [None] * THREADS

    def one(i: int) -> None:
        start.wait()
        try:
            work()
        except BaseException as error:
            raised[i] = error

    threads = [threading.Thread(target=one, args=(i,)) for i in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not any(t.is_alive() for t in threads)
    return raised


def test_twenty_concurrent_runs_have_one_side_effect(backend: tuple[Store, Layer]) -> None:
    _, layer = backend
    effects = SideEffects()
    key = {"event": samples.new_event_id(), "handler": "billing.charge_card"}

    raised = all_at_once(lambda: run_once(layer(), key, effects.run, retention_days=35))

    assert effects.count == 1
    assert all(e is None or isinstance(e, IdempotencyAlreadyInProgressError) for e in raised)
    # Once done, any later delivery returns the recorded result without running.
    assert run_once(layer(), key, effects.run, retention_days=35) == {"status": "ok"}
    assert effects.count == 1


def test_twenty_concurrent_deliveries_through_the_dispatcher(
    backend: tuple[Store, Layer], tmp_path: Path
) -> None:
    store, layer = backend
    effects = SideEffects()
    router = Router("billing")

    def charge_card(event: stripe.Event, ctx: Context) -> None:
        effects.run()

    router.on("invoice.payment_failed")(charge_card)
    event = samples.sample_event("invoice.payment_failed")

    def deliver() -> None:
        bodies = LocalPayloadStore(tmp_path / "bodies")
        Dispatcher(store, layer(), lambda: bodies).dispatch(router, event)

    raised = all_at_once(deliver)

    assert effects.count == 1
    assert all(e is None or isinstance(e, HandlerBusy) for e in raised), raised
    outcome = store.outcomes(event["id"])["billing.charge_card"]
    assert (outcome.status, outcome.attempts) == ("ok", 1)
    # Lambda retries the busy ones: they find the handler done.
    deliver()
    assert effects.count == 1


class Remaining:
    def __init__(self, millis: int) -> None:
        self.millis = millis

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


def test_a_crashed_runs_lock_expires_with_the_lambdas_time(backend: tuple[Store, Layer]) -> None:
    _, layer = backend
    effects = SideEffects()

    def crash() -> dict[str, Any]:
        # SystemExit is not an Exception: Powertools leaves the lock, as a killed Lambda would.
        raise SystemExit("the Lambda timed out")

    def crashed_run(remaining_ms: int) -> dict[str, str]:
        key = {"event": samples.new_event_id(), "handler": "billing.crashes"}
        with pytest.raises(SystemExit):
            run_once(layer(), key, crash, retention_days=35, lambda_context=Remaining(remaining_ms))
        return key

    # A crashed run with a minute left: its lock holds for that minute.
    with pytest.raises(IdempotencyAlreadyInProgressError):
        run_once(layer(), crashed_run(60_000), effects.run, retention_days=35)
    # One that had a millisecond left: its lock has expired, and the retry runs.
    expired = crashed_run(1)
    time.sleep(0.05)
    run_once(layer(), expired, effects.run, retention_days=35)
    assert effects.count == 1


def test_completed_records_are_kept_for_the_retention_period(
    backend: tuple[Store, Layer],
) -> None:
    _, layer = backend
    persistence = layer()
    key = {"event": samples.new_event_id(), "handler": "billing.kept"}
    run_once(persistence, key, SideEffects().run, retention_days=40)
    record = persistence.get_record(key)
    assert record is not None and record.expiry_timestamp is not None
    days = (int(record.expiry_timestamp) - time.time()) / 86400  # DynamoDB gives a Decimal
    assert 39.9 < days <= 40
    # With DynamoDB the hashed key is the sort key, under one partition.
    assert (record.sort_key or record.idempotency_key).startswith(KEY_PREFIX)


def test_retention_is_at_least_35_days() -> None:
    with pytest.raises(ValueError, match="at least 35"):
        Settings.from_env({"STRIPE_EVENTS_IDEMPOTENCY_DAYS": "3"})
    assert Settings.from_env({"STRIPE_EVENTS_IDEMPOTENCY_DAYS": "90"}).idempotency_days == 90
