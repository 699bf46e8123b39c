"""State under concurrent delivery: several processes, one object, the same moment.

Each scenario is a burst Stripe really sends about one object within a second or so.
Four warm containers (processes, see containers.py) deliver its events at the same
moment, for many rounds, against DynamoDB on the moto server and against SQLite. After
each round the state must equal the state that delivering the same events one by one,
in order, gives; and an order must have been fulfilled exactly once.

STRIPE_EVENTS_RACE_ROUNDS sets the rounds per scenario and store (`make stress` runs
many more than `make test`).
"""

from __future__ import annotations

import os
import random
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chalicelib.resources import billing_state
from stripe_events._payloads import S3PayloadStore
from stripe_events._stores import Store
from stripe_events._stores.dynamodb import DynamoStore
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import module_context, run_handlers, samples
from tests.conftest import REGION
from tests.containers import CRASH_EXIT_CODE, ContainerDied, Containers, Delivered, spread
from tests.helpers import create_table, figures_after, resource_routers
from tests.sqs_poller import unique

ROUNDS = int(os.environ.get("STRIPE_EVENTS_RACE_ROUNDS", "10"))
CONTAINERS = 4
T0 = 1_767_225_600  # 2026-01-01
ROUTERS = resource_routers()
PRO = {"id": "price_pro", "object": "price", "product": "prod_pro", "lookup_key": "pro"}


@dataclass
class Tally:
    rounds: int = 0
    deliveries: int = 0
    invocations: int = 0  # deliveries plus Lambda's retries of busy or failed functions
    diverged: int = 0
    fulfilments: int = 0
    stores: set[str] = field(default_factory=set)

    def add(self, results: list[Delivered]) -> None:
        self.deliveries += len(results)
        self.invocations += sum(r.invocations for r in results)

    def summary(self) -> str:
        return (
            f"test_concurrency: {self.rounds} rounds on {', '.join(sorted(self.stores))}, "
            f"{CONTAINERS} processes; {self.deliveries} deliveries at the same moment, "
            f"{self.invocations - self.deliveries} retried (busy or failed); "
            f"{self.diverged} rounds diverged from in-order delivery; "
            f"{self.fulfilments} orders fulfilled, each once"
        )


TALLY = Tally()


figures = figures_after(TALLY.summary)


@dataclass(frozen=True)
class Backend:
    name: str
    store: Store
    containers: Containers
    env: dict[str, str]
    workdir: Path


@pytest.fixture(scope="module", params=["dynamodb", "sqlite"])
def backend(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Backend]:
    workdir = tmp_path_factory.mktemp(f"containers-{request.param}")
    # The containers run the event functions only: no signing secret is read.
    env: dict[str, str]
    if request.param == "sqlite":
        env = {"STRIPE_EVENTS_STAGE": "local", "STRIPE_EVENTS_STATE_DIR": str(workdir / "state")}
        store: Store = SqliteStore(workdir / "state" / "stripe-events.sqlite3")
    else:
        request.getfixturevalue("moto_url")
        bucket = request.getfixturevalue("s3_bucket")
        table = unique("concurrency")
        create_table(table, REGION)
        topic = boto3.client("sns", region_name=REGION).create_topic(Name=table)["TopicArn"]
        env = {
            **{k: v for k, v in os.environ.items() if k.startswith("AWS_")},
            "STRIPE_EVENTS_STAGE": "test",
            "STRIPE_EVENTS_BUS": "default",
            "STRIPE_EVENTS_TABLE": table,
            "STRIPE_EVENTS_BUCKET": bucket,
            "STRIPE_EVENTS_TOPIC_ARN": topic,
        }
        store = DynamoStore(table, REGION, lambda: S3PayloadStore(bucket, REGION))
    containers = Containers(env, CONTAINERS, workdir)
    TALLY.stores.add(request.param)
    yield Backend(request.param, store, containers, env, workdir)
    containers.close()


# Events, built around Stripe's example objects ------------------------------------------


def event(event_type: str, created: int, **changes: Any) -> dict[str, Any]:
    return samples.sample_event(event_type, created=created, changes=changes)


def subscription(sub: str, customer: str, status: str) -> dict[str, Any]:
    item = {"id": f"si_{sub}", "object": "subscription_item", "price": PRO, "quantity": 1}
    items = {"object": "list", "data": [item], "has_more": False, "url": "/v1/subscription_items"}
    return {"id": sub, "customer": customer, "status": status, "items": items}


def invoice(invoice_id: str, customer: str, status: str, attempts: int) -> dict[str, Any]:
    return {
        "id": invoice_id,
        "customer": customer,
        "status": status,
        "attempt_count": attempts,
        "amount_due": 2000,
        "amount_paid": 2000 if status == "paid" else 0,
    }


@dataclass(frozen=True)
class Scenario:
    """A burst of events about one object, in the order Stripe made them."""

    customer: str
    events: list[dict[str, Any]]
    objects: list[tuple[str, str]]  # (collection, key) whose stored snapshot is compared
    before: list[dict[str, Any]] = field(default_factory=list)  # delivered first, in order
    session: str | None = None  # a Checkout Session that must be fulfilled exactly once


def subscription_updates(tag: str, rng: random.Random) -> Scenario:
    """One subscription, four updates a second apart; the last is sometimes a deletion."""
    customer, sub = f"cus_{tag}", f"sub_{tag}"
    steps = [("updated", "active"), ("updated", "past_due"), ("updated", "active")]
    steps.append(rng.choice([("updated", "past_due"), ("deleted", "canceled")]))
    events = [
        event(f"customer.subscription.{action}", T0 + n, **subscription(sub, customer, status))
        for n, (action, status) in enumerate(steps)
    ]
    return Scenario(customer, events, [("subscriptions", sub)])


def subscription_same_second(tag: str, rng: random.Random) -> Scenario:
    """Created incomplete and updated to active in one second: the customer pays."""
    customer, sub = f"cus_{tag}", f"sub_{tag}"
    events = [
        event("customer.subscription.created", T0, **subscription(sub, customer, "incomplete")),
        event("customer.subscription.updated", T0, **subscription(sub, customer, "active")),
    ]
    return Scenario(customer, events, [("subscriptions", sub)])


def invoice_paid_after_failure(tag: str, rng: random.Random) -> Scenario:
    customer, invoice_id = f"cus_{tag}", f"in_{tag}"
    events = [
        event("invoice.finalized", T0, **invoice(invoice_id, customer, "open", 0)),
        event("invoice.payment_failed", T0, **invoice(invoice_id, customer, "open", 1)),
        event("invoice.paid", T0, **invoice(invoice_id, customer, "paid", 1)),
    ]
    return Scenario(customer, events, [("invoices", invoice_id)])


def dispute_won(tag: str, rng: random.Random) -> Scenario:
    customer, charge, dispute = f"cus_{tag}", f"ch_{tag}", f"dp_{tag}"
    fields = {"id": dispute, "charge": charge}
    events = [
        event("charge.dispute.created", T0, **fields, status="needs_response"),
        event("charge.dispute.updated", T0, **fields, status="under_review"),
        event("charge.dispute.closed", T0, **fields, status="won"),
    ]
    charge_event = event("charge.succeeded", T0 - 60, id=charge, customer=customer, refunds=None)
    return Scenario(customer, events, [("disputes", dispute)], before=[charge_event])


def checkout_settled_twice(tag: str, rng: random.Random) -> Scenario:
    customer, session = f"cus_{tag}", f"cs_{tag}"
    fields = {"id": session, "customer": customer, "status": "complete", "payment_status": "paid"}
    events = [
        event("checkout.session.completed", T0, **fields),
        event("checkout.session.async_payment_succeeded", T0 + 1, **fields),
    ]
    return Scenario(customer, events, [("checkout_sessions", session)], session=session)


SCENARIOS: dict[str, Callable[[str, random.Random], Scenario]] = {
    "subscription-updates": subscription_updates,
    "subscription-same-second": subscription_same_second,
    "invoice-paid-after-failure": invoice_paid_after_failure,
    "dispute-won": dispute_won,
    "checkout-settled-twice": checkout_settled_twice,
}


# The state, and the state that in-order delivery gives -----------------------------------


def state(store: Store, scenario: Scenario) -> dict[str, Any]:
    found = billing_state.customer_state(store, scenario.customer) or {}
    objects = {f"{c}/{k}": store.get(c, k) for c, k in scenario.objects}
    fulfilment = store.get("fulfilments", scenario.session) if scenario.session else None
    return {**found, **objects, "fulfilled": fulfilment is not None and fulfilment["claim"]}


def in_order(scenario: Scenario, workdir: Path) -> dict[str, Any]:
    """The state after delivering the events one by one, in Stripe's order, in process."""
    ctx = module_context(workdir)
    for data in [*scenario.before, *sorted(scenario.events, key=lambda e: e["created"])]:
        typed = event_of_dict(data)
        for router in ROUTERS:
            run_handlers(router, typed, ctx)
    return state(ctx.store, scenario)


def event_of_dict(data: dict[str, Any]) -> Any:
    import stripe

    return stripe.Event.construct_from(data, None)


def run_round(backend: Backend, scenario: Scenario, rng: random.Random, workdir: Path) -> None:
    if scenario.before:
        TALLY.add(backend.containers.deliver_at_once([scenario.before]))
    results = backend.containers.deliver_at_once(spread(scenario.events, CONTAINERS, rng))
    TALLY.add(results)
    TALLY.rounds += 1
    failed = [r for r in results if r.error is not None]
    assert not failed, failed
    expected = in_order(scenario, workdir)
    got = state(backend.store, scenario)
    if got != expected:
        TALLY.diverged += 1
    assert got == expected
    if scenario.session is not None:
        TALLY.fulfilments += 1
        assert backend.containers.fulfilled(scenario.session) == 1


@pytest.mark.parametrize("name", SCENARIOS)
def test_events_of_one_object_at_the_same_moment_end_as_in_order(
    backend: Backend, name: str, tmp_path: Path
) -> None:
    rng = random.Random(f"{backend.name}/{name}")
    for n in range(ROUNDS):
        tag = f"{name.replace('-', '')}{n}{uuid.uuid4().hex[:6]}"
        run_round(backend, SCENARIOS[name](tag, rng), rng, tmp_path / str(n))


def test_a_container_that_dies_mid_fulfilment_is_taken_over_when_its_lease_ends(
    backend: Backend,
) -> None:
    tag = f"crash{uuid.uuid4().hex[:10]}"
    scenario = checkout_settled_twice(tag, random.Random(0))
    completed, succeeded = scenario.events
    session = scenario.session
    assert session is not None
    doomed = Containers(backend.env, 1, backend.workdir / tag / "doomed", crash_on=[session])
    survivor = Containers(backend.env, 1, backend.workdir / tag / "survivor")
    try:
        # The first container claims the session and dies inside fulfil_order: its Lambda
        # had 2 s left, so its claim's lease ends 3 s from now (with the clock skew).
        with pytest.raises(ContainerDied, match=f"exited with {CRASH_EXIT_CODE}"):
            doomed.deliver_at_once([[completed]], timeout_seconds=2)
        [delivered] = survivor.deliver_at_once([[succeeded]])
        assert delivered.error is None
        assert delivered.invocations > 1  # busy while the dead container's lease ran
        # Lambda retries the dead container's event too: done, so it is skipped.
        [retried] = survivor.deliver_at_once([[completed]])
        assert retried.error is None
    finally:
        doomed.close()
        survivor.close()
    assert doomed.fulfilled(session) + survivor.fulfilled(session) == 1
    record = backend.store.get("fulfilments", session)
    assert record is not None
    assert (record["claim"], record["event_id"]) == ("done", succeeded["id"])


# Random groups of events at the same moment, in random order, with duplicates ----------------

# A customer's history: each step's events, as (type, seconds after T0, changes). The steps
# are what Stripe sends at one moment; any of them may be delivered together.
HISTORY: list[list[tuple[str, int, Callable[[str], dict[str, Any]]]]] = [
    [
        ("customer.created", 0, lambda t: {"id": f"cus_{t}", "email": "a@example.com"}),
        (
            "customer.subscription.created",
            0,
            lambda t: subscription(f"sub_{t}", f"cus_{t}", "incomplete"),
        ),
        ("invoice.created", 0, lambda t: invoice(f"in_{t}", f"cus_{t}", "draft", 0)),
    ],
    [
        ("invoice.finalized", 1, lambda t: invoice(f"in_{t}", f"cus_{t}", "open", 0)),
        ("invoice.payment_failed", 1, lambda t: invoice(f"in_{t}", f"cus_{t}", "open", 1)),
    ],
    [
        ("invoice.paid", 2, lambda t: invoice(f"in_{t}", f"cus_{t}", "paid", 2)),
        (
            "customer.subscription.updated",
            2,
            lambda t: subscription(f"sub_{t}", f"cus_{t}", "active"),
        ),
        ("customer.updated", 2, lambda t: {"id": f"cus_{t}", "email": "b@example.com"}),
    ],
    [
        (
            "customer.subscription.updated",
            3,
            lambda t: subscription(f"sub_{t}", f"cus_{t}", "past_due"),
        ),
        (
            "customer.subscription.deleted",
            4,
            lambda t: subscription(f"sub_{t}", f"cus_{t}", "canceled"),
        ),
    ],
]


@st.composite
def bursts(draw: st.DrawFn) -> tuple[list[int], list[int], int]:
    """Which history events go out, which of them twice, and a seed for their order."""
    count = sum(len(step) for step in HISTORY)
    chosen = draw(st.lists(st.integers(0, count - 1), min_size=1, max_size=count, unique=True))
    again = draw(st.lists(st.sampled_from(chosen), max_size=4))
    return sorted(chosen), again, draw(st.integers(0, 2**32))


@settings(
    max_examples=int(os.environ.get("STRIPE_EVENTS_RACE_EXAMPLES", "8")),
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(burst=bursts())
def test_random_bursts_with_duplicates_converge_to_the_in_order_state(
    backend: Backend, tmp_path: Path, burst: tuple[list[int], list[int], int]
) -> None:
    chosen, again, seed = burst
    tag = f"burst{uuid.uuid4().hex[:10]}"
    flat = [(t, s, make) for step in HISTORY for t, s, make in step]
    events = [event(flat[n][0], T0 + flat[n][1], **flat[n][2](tag)) for n in chosen]
    duplicates = [events[chosen.index(n)] for n in again]
    scenario = Scenario(
        f"cus_{tag}",
        events,
        [("customers", f"cus_{tag}"), ("subscriptions", f"sub_{tag}"), ("invoices", f"in_{tag}")],
    )
    rng = random.Random(seed)
    results = backend.containers.deliver_at_once(spread([*events, *duplicates], CONTAINERS, rng))
    TALLY.add(results)
    TALLY.rounds += 1
    assert not [r for r in results if r.error is not None]
    expected = in_order(scenario, tmp_path / tag)
    got = state(backend.store, scenario)
    if got != expected:
        TALLY.diverged += 1
    assert got == expected
