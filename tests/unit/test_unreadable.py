"""What a function cannot make into an event is a recorded failure, never a silent one.

The webhook refuses at the door what nests deeper than MAX_NESTING; the functions apply
the same limit to what reaches them by another way (Stripe's own EventBridge
destination, another publisher), and record anything the SDK cannot turn into an event
as each handler's error: listed by `failures`, counted in HandlerError.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import stripe

import stripe_events._observability as observability
from stripe_events._context import Context
from stripe_events._envelope import MAX_NESTING, nests_too_deep, parse_event
from stripe_events._errors import HandlerFailed, Rejected, UnreadableEvent
from stripe_events._router import Router
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import local_dispatcher, samples


def nested(depth: int) -> Any:
    """A value whose containers nest exactly `depth` levels (the value itself is one)."""
    value: Any = {"id": "deepest"}
    for n in range(depth - 1):
        value = {"level": value} if n % 2 else [value]
    return value


def event_around(value: Any) -> dict[str, Any]:
    """A customer.updated whose customer's metadata holds `value`; the event itself adds
    four levels (event, data, object, metadata)."""
    event = samples.sample_event("customer.updated")
    event["data"]["object"]["metadata"] = {"deep": value}
    return event


def test_depth_is_counted_level_by_level() -> None:
    assert not nests_too_deep(nested(MAX_NESTING))
    assert nests_too_deep(nested(MAX_NESTING + 1))
    assert not nests_too_deep("text") and not nests_too_deep([]) and not nests_too_deep({})
    # A walk, not a recursion: it counts what Python's recursion could not.
    assert nests_too_deep(nested(50_000))


def test_the_webhook_takes_exactly_the_deepest_event_and_refuses_one_level_more() -> None:
    deepest = event_around(nested(MAX_NESTING - 4))
    assert parse_event(json.dumps(deepest), None).id == deepest["id"]
    with pytest.raises(Rejected) as refused:
        parse_event(json.dumps(event_around(nested(MAX_NESTING - 3))), None)
    assert refused.value.code == "too_deeply_nested"
    assert str(MAX_NESTING) in refused.value.message


def test_brackets_in_strings_do_not_refuse_a_shallow_event() -> None:
    """The bracket count only decides whether to walk; the walk decides."""
    event = samples.sample_event("customer.updated")
    event["data"]["object"]["description"] = "{[" * 1000
    assert parse_event(json.dumps(event), None).id == event["id"]


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict[str, str]]]:
    calls: list[tuple[str, dict[str, str]]] = []
    monkeypatch.setattr(
        observability, "count", lambda name, **dimensions: calls.append((name, dimensions))
    )
    return calls


def crm() -> Router:
    router = Router("crm")

    @router.on("customer.updated")
    def sync(event: stripe.Event, ctx: Context) -> None:
        ctx.store.put("synced", event.id, {})

    @router.on("customer.updated")
    def audit(event: stripe.Event, ctx: Context) -> None:
        ctx.store.put("audited", event.id, {})

    return router


def test_an_event_nested_900_deep_from_elsewhere_is_recorded_as_each_handlers_failure(
    tmp_path: Path, counted: list[tuple[str, dict[str, str]]]
) -> None:
    store = SqliteStore(tmp_path / "ledger.sqlite3")
    event = event_around(nested(900))  # as the issue saw it, not through our webhook
    with pytest.raises(HandlerFailed) as failed:
        local_dispatcher(store, tmp_path).dispatch(crm(), event)
    assert "UnreadableEvent" in str(failed.value)
    entry = store.event(event["id"])
    assert entry is not None and entry.body is not None  # kept, for a replay after a fix
    assert set(entry.failing) == {"crm.sync", "crm.audit"}
    outcome = entry.failing["crm.sync"]
    assert outcome.error_type == "UnreadableEvent"
    assert f"more than {MAX_NESTING} levels" in (outcome.error or "")
    assert [e.id for e in store.failures()] == [event["id"]]
    assert [d["handler"] for name, d in counted if name == "HandlerError"] == [
        "crm.sync",
        "crm.audit",
    ]
    assert store.get("synced", event["id"]) is None  # no handler ran


def test_whatever_the_sdk_refuses_is_recorded_with_its_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def refuse(*args: Any, **kwargs: Any) -> stripe.Event:
        raise TypeError("an odd shape")

    monkeypatch.setattr(stripe.Event, "construct_from", refuse)
    store = SqliteStore(tmp_path / "ledger.sqlite3")
    event = samples.sample_event("customer.updated")
    with pytest.raises(HandlerFailed):
        local_dispatcher(store, tmp_path).dispatch(crm(), event)
    [entry] = store.failures()
    assert entry.failing["crm.audit"].error == (
        "the SDK cannot make an event of it: TypeError: an odd shape"
    )
    assert entry.failing["crm.audit"].attempts == 1
    # A retry counts its attempt; once the SDK takes it, the handlers run.
    monkeypatch.undo()
    outcomes = local_dispatcher(store, tmp_path).dispatch(crm(), event)
    assert outcomes["crm.audit"].status == "ok" and outcomes["crm.audit"].attempts == 2
    assert store.failures() == []


def test_an_event_without_an_id_is_logged_counted_and_raised(
    tmp_path: Path, counted: list[tuple[str, dict[str, str]]], caplog: pytest.LogCaptureFixture
) -> None:
    store = SqliteStore(tmp_path / "ledger.sqlite3")
    event = samples.sample_event("customer.updated")
    del event["id"]
    with pytest.raises(UnreadableEvent, match='no "id"'):
        local_dispatcher(store, tmp_path).dispatch(crm(), event)
    assert "crm cannot read an event" in caplog.text
    assert sorted(d["handler"] for name, d in counted if name == "HandlerError") == [
        "crm.audit",
        "crm.sync",
    ]
    assert store.recent(10) == []  # nothing to record it under
