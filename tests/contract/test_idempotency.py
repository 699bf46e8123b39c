"""Exactly once per (event id, handler): concurrent deliveries, a crashed run's claim, and
the same answers as Powertools' idempotency utility for the same deliveries."""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from aws_lambda_powertools.utilities.idempotency import (
    DynamoDBPersistenceLayer,
    IdempotencyConfig,
    idempotent_function,
)
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
)

from stripe_events._context import Context
from stripe_events._dispatch import CLOCK_SKEW_SECONDS, Dispatcher
from stripe_events._errors import HandlerBusy, HandlerFailed
from stripe_events._router import Router
from stripe_events._schema import PARTITION_KEY, SORT_KEY
from stripe_events._stores import RUNS, Store
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_local.payloads import LocalPayloadStore
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import samples
from tests.conftest import REGION
from tests.helpers import create_table
from tests.sqs_poller import unique

THREADS = 20
EVENT_TYPE = "invoice.payment_failed"


@pytest.fixture(params=["sqlite", "dynamodb"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        yield SqliteStore(tmp_path / "ledger.sqlite3")
        return
    request.getfixturevalue("moto_url")
    table = unique("idempotency")
    create_table(table, REGION)
    yield DynamoStore(table, REGION)
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)


@dataclass
class LambdaContext:
    """What the dispatcher reads of Lambda's context: the time left, the request id."""

    millis: int = 60_000
    aws_request_id: str = field(default_factory=lambda: unique("request"))

    def get_remaining_time_in_millis(self) -> int:
        return self.millis


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


def billing_router(effects: SideEffects) -> Router:
    router = Router("billing")

    def charge_card(event: Any, ctx: Context) -> None:
        effects.run()

    router.on(EVENT_TYPE)(charge_card)
    return router


def test_twenty_concurrent_deliveries_have_one_side_effect(store: Store, tmp_path: Path) -> None:
    effects = SideEffects()
    refused = threading.Event()
    router = Router("billing")

    @router.on(EVENT_TYPE)
    def charge_card(event: Any, ctx: Context) -> None:
        # The run holds its claim until another delivery has been turned away, so that
        # the busy path is taken every time, not only when the threads happen to overlap.
        assert refused.wait(timeout=10), "no other delivery was refused while this one ran"
        effects.run()

    event = samples.sample_event(EVENT_TYPE)

    def deliver() -> None:
        bodies = LocalPayloadStore(tmp_path / "bodies")
        try:
            Dispatcher(store, lambda: bodies).dispatch(router, event, LambdaContext())
        except HandlerBusy:
            refused.set()
            raise

    raised = all_at_once(deliver)

    assert effects.count == 1
    assert all(e is None or isinstance(e, HandlerBusy) for e in raised), raised
    assert any(isinstance(e, HandlerBusy) for e in raised)
    outcome = store.outcomes(event["id"])["billing.charge_card"]
    assert (outcome.status, outcome.attempts) == ("ok", 1)
    # Lambda retries the busy ones: they find the handler done.
    deliver()
    assert effects.count == 1
    # No claim is left behind: a run deletes its own when it ends.
    assert store.get(RUNS, f"{event['id']}:billing") is None


def test_a_crashed_runs_claim_holds_until_its_lambda_would_have_ended(
    store: Store, tmp_path: Path
) -> None:
    effects = SideEffects()
    router = billing_router(effects)
    dispatcher = Dispatcher(store, lambda: LocalPayloadStore(tmp_path / "bodies"))

    def crashed_run(remaining_ms: int) -> tuple[dict[str, Any], LambdaContext]:
        """An event whose run died holding its claim (SystemExit unwinds no claim)."""
        event = samples.sample_event(EVENT_TYPE)
        context = LambdaContext(remaining_ms)
        crashing = Router("billing")

        @crashing.on(EVENT_TYPE)
        def charge_card(event: Any, ctx: Context) -> None:
            raise SystemExit("the Lambda timed out")

        with pytest.raises(SystemExit):
            dispatcher.dispatch(crashing, event, context)
        return event, context

    # Another delivery during the dead run's minute is busy.
    event, context = crashed_run(60_000)
    with pytest.raises(HandlerBusy):
        dispatcher.dispatch(router, event, LambdaContext())
    # Lambda's retry of that invocation has its request id: it takes the claim over.
    dispatcher.dispatch(router, event, LambdaContext(aws_request_id=context.aws_request_id))
    assert effects.count == 1
    # A run that had a millisecond left: its claim ends with its time, plus the skew.
    event, _ = crashed_run(1)
    time.sleep(CLOCK_SKEW_SECONDS + 0.05)
    dispatcher.dispatch(router, event, LambdaContext())
    assert effects.count == 2


def test_each_handler_costs_one_write(moto_url: str, tmp_path: Path) -> None:
    table = unique("writes")
    create_table(table, REGION)
    dynamo = DynamoStore(table, REGION)
    calls: list[str] = []
    dynamo.client.meta.events.register(
        "before-call.dynamodb", lambda model, **_: calls.append(model.name)
    )

    def calls_for(handlers: int) -> list[str]:
        router = Router("billing")
        for n in range(handlers):

            def handler(event: Any, ctx: Context) -> None:
                pass

            handler.__name__ = f"handler_{n}"
            router.on(EVENT_TYPE)(handler)
        calls.clear()
        event = samples.sample_event(EVENT_TYPE)
        Dispatcher(dynamo, lambda: LocalPayloadStore(tmp_path)).dispatch(router, event)
        return list(calls)

    one, five = calls_for(1), calls_for(5)
    # Four more handlers: four more calls, each a write (its outcome). The event's own
    # (received, the run's claim, the outcomes read under it, the release) do not grow.
    extra = Counter(five) - Counter(one)
    assert sum(extra.values()) == 4 and set(extra) <= {"PutItem", "UpdateItem"}, (one, five)
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)


# The same answers as Powertools' idempotency utility ---------------------------------------

Step = tuple[str, int]  # what the handler does ("ok", "error", "crash"), the Lambda's millis


class Powertools:
    """The library's answer: one handler made idempotent by Powertools, on DynamoDB."""

    def __init__(self, table: str) -> None:
        self.persistence = DynamoDBPersistenceLayer(
            table_name=table, key_attr=PARTITION_KEY, sort_key_attr=SORT_KEY
        )
        self.key = {"event": samples.new_event_id(), "handler": "billing.charge_card"}

    def deliver(self, action: str, millis: int) -> str:
        ran: list[bool] = []

        def charge_card(key: dict[str, str]) -> dict[str, str]:
            ran.append(True)
            return act(action)

        config = IdempotencyConfig(expires_after_seconds=35 * 86400)
        config.register_lambda_context(LambdaContext(millis))  # type: ignore[arg-type]
        guarded: Callable[..., Any] = idempotent_function(
            charge_card,
            data_keyword_argument="key",
            persistence_store=self.persistence,
            config=config,
        )
        try:
            guarded(key=self.key)
        except IdempotencyAlreadyInProgressError:
            return "busy"
        except SystemExit:
            return "crashed"
        except RuntimeError:
            return "failed"
        return "ran" if ran else "skipped"


class Ours:
    """Ours: the dispatcher, on DynamoDB, with one handler."""

    def __init__(self, table: str, tmp_path: Path) -> None:
        self.dispatcher = Dispatcher(
            DynamoStore(table, REGION), lambda: LocalPayloadStore(tmp_path)
        )
        self.event = samples.sample_event(EVENT_TYPE)
        self.action = "ok"
        self.ran = False
        self.router = Router("billing")

        @self.router.on(EVENT_TYPE)
        def charge_card(event: Any, ctx: Context) -> None:
            self.ran = True
            act(self.action)

    def deliver(self, action: str, millis: int) -> str:
        self.action, self.ran = action, False
        try:
            self.dispatcher.dispatch(self.router, self.event, LambdaContext(millis))
        except HandlerBusy:
            return "busy"
        except SystemExit:
            return "crashed"
        except HandlerFailed:
            return "failed"
        return "ran" if self.ran else "skipped"


def act(action: str) -> dict[str, str]:
    if action == "crash":
        raise SystemExit("the Lambda was killed")  # no handler of ours or theirs runs
    if action == "error":
        raise RuntimeError("the card was declined")
    return {"status": "ok"}


SCENARIOS: dict[str, list[Step]] = {
    "done once, then skipped": [("ok", 60_000), ("ok", 60_000), ("error", 60_000)],
    "a failure is retried until it succeeds": [
        ("error", 60_000),
        ("error", 60_000),
        ("ok", 60_000),
        ("ok", 60_000),
    ],
    "a live run makes the others wait": [("crash", 60_000), ("ok", 60_000), ("ok", 60_000)],
    "a dead run's lock ends with its time": [("crash", 1), ("wait", 0), ("ok", 60_000)],
}


@pytest.mark.parametrize("steps", SCENARIOS.values(), ids=SCENARIOS.keys())
def test_the_dispatcher_answers_as_powertools_idempotency_does(
    moto_url: str, tmp_path: Path, steps: list[Step]
) -> None:
    table = unique("differential")
    create_table(table, REGION)
    library, ours = Powertools(table), Ours(table, tmp_path)
    theirs_answers, our_answers = [], []
    for action, millis in steps:
        if action == "wait":  # past both locks' end (ours adds the clock skew)
            time.sleep(CLOCK_SKEW_SECONDS + 0.1)
            continue
        theirs_answers.append(library.deliver(action, millis))
        our_answers.append(ours.deliver(action, millis))
    assert our_answers == theirs_answers
    boto3.client("dynamodb", region_name=REGION).delete_table(TableName=table)
