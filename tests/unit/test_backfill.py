"""Backfill against a small Stripe-like Events API on a free loopback port.

The fake lists events as Stripe does: newest first, `limit`, `starting_after`,
`ending_before`, `created[...]`, `types[...]` (at most 20), `has_more`. It can serve the
cursor's event again on the next page (a duplicate) and answer 429 on cue.
"""

from __future__ import annotations

import json
import operator
import re
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from click.testing import CliRunner

from stripe_events._bus import Publisher
from stripe_events._core import StripeEvents
from stripe_events._envelope import Entry
from stripe_events._errors import PublishFailed
from stripe_events._ledger import utc_now
from stripe_events._payloads import PAYLOAD_KEY, entry_size
from stripe_events._settings import Settings
from stripe_events_local.payloads import LocalPayloadStore
from stripe_events_local.sqlite import SqliteStore
from stripe_events_ops import backfill
from stripe_events_ops.backfill import (
    CHECKPOINTS,
    Backfill,
    BackfillError,
    ThinBackfill,
    backfill_command,
    check_window,
    expand_types,
    rfc3339_seconds,
)
from stripe_events_ops.clients import stripe_client
from stripe_events_ops.project import load_events
from stripe_events_testing import samples
from tests.helpers import QuietHandler, answer_json, loopback_server

# The SDK waits at least 0.5 s before its own retries; these tests need not.
pytestmark = pytest.mark.usefixtures("quick_sdk_retries")

API_KEY = "sk_test_backfill_only"
NOW = int(time.time())
HOUR = 3600
TYPES = (
    "customer.created",
    "invoice.created",
    "invoice.paid",
    "charge.succeeded",
    "customer.subscription.created",
    "invoice.payment_failed",
)
Forced = tuple[int, dict[str, str]]


@dataclass
class FakeStripe:
    events: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    thin_events: list[dict[str, Any]] = field(default_factory=list)  # v2, oldest first
    script: list[Forced | None] = field(default_factory=list)  # answers to force, in turn
    repeat_cursor: bool = False
    requests: list[dict[str, str]] = field(default_factory=list)
    statuses: list[int] = field(default_factory=list)
    url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, event_type: str, created: int, **kwargs: Any) -> dict[str, Any]:
        event_id = f"evt_{len(self.events):04d}{event_type.replace('.', '_')}"
        event = samples.sample_event(event_type, event_id=event_id, created=created, **kwargs)
        self.events.append(event)
        self.events.sort(key=lambda e: e["created"])  # stable: same-second events keep order
        return event

    def add_thin(self, event_type: str, created: int) -> dict[str, Any]:
        """A thin event as the v2 Events API lists it (with its data)."""
        event_id = f"evt_{len(self.thin_events):04d}thin"
        notification = samples.sample_event(event_type, event_id=event_id, created=created)
        event = samples.thin_event(notification)
        self.thin_events.append(event)
        self.thin_events.sort(key=lambda e: e["created"])
        return event

    def list_thin(self, q: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        """GET /v2/core/events: newest first, RFC 3339 bounds, pages by next_page_url."""
        types = [v for k, v in q.items() if re.fullmatch(r"types\[\d*\]", k)]
        low, high = q.get("created[gte]", ""), q.get("created[lte]", "9999")
        seconds = {e["id"]: rfc3339_seconds(e["created"]) for e in self.thin_events}

        def bound(text: str, default: int) -> int:
            return rfc3339_seconds(text) if text and text != "9999" else default

        kept = [
            e
            for e in self.thin_events[::-1]
            if (not types or e["type"] in types)
            and bound(low, 0) <= seconds[e["id"]] <= bound(high, 2**40)
        ]
        limit, page = int(q.get("limit", "10")), int(q.get("page", "0"))
        chunk = kept[page * limit : (page + 1) * limit]
        more = (page + 1) * limit < len(kept)
        query = "&".join(f"{k}={v}" for k, v in q.items() if k != "page")
        next_url = f"/v2/core/events?{query}&page={page + 1}" if more else None
        return 200, {}, {"data": chunk, "next_page_url": next_url, "previous_page_url": None}

    def ids(self, since: int = 0, types: frozenset[str] | None = None) -> list[str]:
        """What a backfill from `since` must publish, oldest first."""
        return [
            e["id"]
            for e in self.events
            if e["created"] >= since and (types is None or e["type"] in types)
        ]

    def answer(self, path: str, query: dict[str, str]) -> tuple[int, dict[str, str], Any]:
        with self.lock:
            self.requests.append({"path": path, **query})
            forced = self.script.pop(0) if self.script else None
        if forced is not None:
            status, headers = forced
            return status, headers, error("rate_limit", "Too many requests in a short time.")
        newest_first = self.events[::-1]
        if path == "/v2/core/events":
            return self.list_thin(query)
        match_thin = re.fullmatch(r"/v2/core/events/(evt_\w+)", path)
        if match_thin:
            found_thin = [e for e in self.thin_events if e["id"] == match_thin[1]]
            if found_thin:
                return 200, {}, found_thin[0]
        if path == "/v1/events":
            return self.list_events(newest_first, query)
        match = re.fullmatch(r"/v1/events/(evt_\w+)", path)
        found = [e for e in newest_first if match and e["id"] == match[1]]
        if found:
            return 200, {}, found[0]
        return 404, {}, error("resource_missing", f"No such event: '{path.rsplit('/')[-1]}'")

    def list_events(
        self, newest_first: list[dict[str, Any]], q: dict[str, str]
    ) -> tuple[int, dict[str, str], Any]:
        types = [v for k, v in q.items() if re.fullmatch(r"types\[\d*\]", k)]
        if len(types) > 20:
            return 400, {}, error("parameter_invalid", "types: at most 20 event types")
        bounds: dict[str, Callable[[int, int], bool]] = {
            "gte": operator.ge,
            "gt": operator.gt,
            "lte": operator.le,
            "lt": operator.lt,
        }
        tests = [(bounds[op], int(q[f"created[{op}]"])) for op in bounds if f"created[{op}]" in q]

        def keep(e: dict[str, Any]) -> bool:
            in_types = not types or e["type"] in types
            return in_types and all(test(e["created"], v) for test, v in tests)

        limit = min(max(int(q.get("limit", "10")), 1), 100)
        ids = [e["id"] for e in newest_first]
        cursor = q.get("ending_before") or q.get("starting_after")
        if cursor is not None and cursor not in ids:
            return 404, {}, error("resource_missing", f"No such event: '{cursor}'")
        if "ending_before" in q:  # the `limit` events just newer than the cursor
            at = ids.index(q["ending_before"])
            candidates = [e for e in newest_first[:at] if keep(e)]
            page = candidates[-limit:]
            if self.repeat_cursor and keep(newest_first[at]):
                page = [*page, newest_first[at]]
        else:
            start = ids.index(q["starting_after"]) + 1 if "starting_after" in q else 0
            candidates = [e for e in newest_first[start:] if keep(e)]
            page = candidates[:limit]
            if self.repeat_cursor and start and keep(newest_first[start - 1]):
                page = [newest_first[start - 1], *page]
        body = {
            "object": "list",
            "url": "/v1/events",
            "has_more": len(candidates) > limit,
            "data": page,
        }
        return 200, {}, body


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message}}


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    state = FakeStripe()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            url = urlsplit(self.path)
            headers: dict[str, str] = {}
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                status, body = 401, error("api_key_invalid", "Invalid API Key")
            else:
                status, headers, body = state.answer(url.path, dict(parse_qsl(url.query)))
            state.statuses.append(status)
            answer_json(self, status, body, headers)

    with loopback_server(Handler) as url:
        state.url = url
        yield state


class Recorder(Publisher):
    def __init__(self, fail_after: int | None = None) -> None:
        self.entries: list[Entry] = []
        self.fail_after = fail_after

    def publish(self, entry: Entry) -> None:
        if self.fail_after is not None and len(self.entries) >= self.fail_after:
            raise PublishFailed("the bus is down")
        self.entries.append(entry)

    @property
    def ids(self) -> list[str]:
        return [json.loads(e["Detail"])["id"] for e in self.entries]


@pytest.fixture
def store(tmp_path: Path) -> SqliteStore:
    return SqliteStore(tmp_path / "ledger.sqlite3")


def make_backfill(
    fake: FakeStripe,
    store: SqliteStore,
    publisher: Publisher,
    sleeps: list[float] | None = None,
    **kwargs: Any,
) -> Backfill:
    return Backfill(
        stripe_client(API_KEY, fake.url),
        store,
        publisher,
        Settings(stage="test"),
        page_size=5,
        sleep=(sleeps if sleeps is not None else []).append,
        **kwargs,
    )


def add_history(fake: FakeStripe, count: int, first: int, last: int) -> None:
    """`count` events between `first` and `last`, in pairs that share a second."""
    step = (last - first) // max(count // 2, 1)
    for i in range(count):
        fake.add(TYPES[i % len(TYPES)], first + (i // 2) * step)


def test_publishes_only_unseen_events_oldest_first_exactly_once(
    fake: FakeStripe, store: SqliteStore
) -> None:
    add_history(fake, 4, NOW - 5 * HOUR, NOW - 3 * HOUR)  # before the window
    add_history(fake, 24, NOW - 2 * HOUR + 60, NOW - 10 * 60)
    since = NOW - 2 * HOUR
    window = fake.ids(since)
    already = window[1::5]  # the webhook delivered these
    for event_id in already:
        store.record_received(event_id, "customer.created", 0, utc_now(), "{}")
    fake.repeat_cursor = True  # every page boundary serves one event twice
    recorder = Recorder()
    positions: list[int] = []

    report = make_backfill(fake, store, recorder).run(
        since, NOW, progress=lambda p: positions.append(p.position)
    )

    expected = [i for i in window if i not in already]
    assert recorder.ids == expected
    assert report.published == len(expected)
    assert report.read > len(window), "the fake served duplicates"
    assert report.already_seen == len(already) + report.read - len(window)
    assert positions == sorted(positions) and positions[-1] == fake.events[-1]["created"]
    served = {e["id"]: e for e in fake.events}
    for entry in recorder.entries:
        detail = json.loads(entry["Detail"])
        assert detail == served[detail["id"]]
        assert entry["DetailType"] == detail["type"]
        assert entry["Source"] == "stripe.webhook"
        assert entry["Time"] == datetime.fromtimestamp(detail["created"], UTC)
        ledger_entry = store.event(detail["id"])
        assert ledger_entry is not None and ledger_entry.published_at is not None


def test_a_second_run_publishes_nothing_and_starts_at_the_checkpoint(
    fake: FakeStripe, store: SqliteStore
) -> None:
    add_history(fake, 2, NOW - 3 * HOUR, NOW - 3 * HOUR)
    add_history(fake, 12, NOW - HOUR, NOW - 10 * 60)
    make_backfill(fake, store, Recorder()).run(NOW - 2 * HOUR, NOW)
    fake.requests.clear()

    recorder = Recorder()
    report = make_backfill(fake, store, recorder).run(NOW - 2 * HOUR + 60, NOW + 60)

    assert recorder.ids == []
    assert report.resumed_after == fake.events[-1]["id"]
    assert report.read == 0
    assert len(fake.requests) == 2  # the checkpoint's event, then one empty page

    again = make_backfill(fake, store, recorder).run(NOW - 2 * HOUR, NOW, resume=False)
    assert recorder.ids == [] and again.read == 12 and again.already_seen == 12


def test_an_interrupted_run_resumes_after_the_last_event_and_publishes_each_once(
    fake: FakeStripe, store: SqliteStore
) -> None:
    add_history(fake, 2, NOW - 3 * HOUR, NOW - 3 * HOUR)
    add_history(fake, 17, NOW - 100 * 60, NOW - 10 * 60)
    since = NOW - 2 * HOUR
    failing = Recorder(fail_after=7)
    with pytest.raises(PublishFailed):
        make_backfill(fake, store, failing).run(since, NOW)
    checkpoint = store.get(CHECKPOINTS, "all")
    assert checkpoint is not None and checkpoint["event_id"] == failing.ids[-1]

    recorder = Recorder()
    report = make_backfill(fake, store, recorder).run(since, NOW)

    assert failing.ids + recorder.ids == fake.ids(since)
    assert report.resumed_after == failing.ids[-1]
    assert report.read == 17 - 7, "the resumed run did not read the window again"


def test_the_checkpoint_stays_behind_events_that_may_still_settle(
    fake: FakeStripe, store: SqliteStore
) -> None:
    add_history(fake, 4, NOW - HOUR, NOW - 30 * 60)
    fake.add("invoice.paid", NOW - 60)
    fake.add("invoice.paid", NOW - 10)
    make_backfill(fake, store, Recorder()).run(NOW - 2 * HOUR, NOW)

    report = make_backfill(fake, store, Recorder()).run(NOW - 2 * HOUR, NOW)

    assert report.resumed_after == fake.events[3]["id"]
    assert report.read == 2 and report.published == 0


def test_a_window_with_nothing_older_listed_starts_at_its_oldest_event(
    fake: FakeStripe, store: SqliteStore
) -> None:
    since = NOW - 29 * 86400
    fake.add("customer.created", since)  # `created` is inclusive at the start
    add_history(fake, 9, since + 3 * 86400, NOW - HOUR)
    recorder = Recorder()

    make_backfill(fake, store, recorder).run(since, NOW)

    assert recorder.ids == fake.ids(since)
    probes = [r for r in fake.requests if "created[lt]" in r and "created[gte]" in r]
    assert probes, "no event before the window: the oldest in it is found by probing"


def test_an_empty_window_reads_nothing_and_saves_no_checkpoint(
    fake: FakeStripe, store: SqliteStore
) -> None:
    report = make_backfill(fake, store, Recorder()).run(NOW - 30 * 86400, NOW)
    assert report.read == 0
    assert store.get(CHECKPOINTS, "all") is None
    assert len(fake.requests) < 30, "the probe doubles its slice"


def test_rate_limits_are_retried_with_growing_waits(fake: FakeStripe, store: SqliteStore) -> None:
    add_history(fake, 2, NOW - 3 * HOUR, NOW - 3 * HOUR)
    add_history(fake, 20, NOW - HOUR, NOW - 10 * 60)
    should_retry = {"Stripe-Should-Retry": "true"}
    # Requests in turn: the event before the window; page 1: 429, 429, ok; page 2: a 429
    # that the SDK retries itself, ok; page 3: 429 after events were read, ok.
    fake.script = [None, (429, {}), (429, {}), None, (429, should_retry), None, (429, {})]
    recorder = Recorder()
    sleeps: list[float] = []

    report = make_backfill(fake, store, recorder, sleeps).run(NOW - 2 * HOUR, NOW)

    assert recorder.ids == fake.ids(NOW - 2 * HOUR)
    assert report.read == 20, "after a 429, reading goes on after the last event read"
    assert fake.statuses.count(429) == 4
    assert len(sleeps) == 3, "Stripe-Should-Retry: true is the SDK's to retry, not ours"
    assert 0.5 <= sleeps[0] <= 1.0 and 1.0 <= sleeps[1] <= 2.0, "the wait doubles"
    assert 0.5 <= sleeps[2] <= 1.0, "and starts again once Stripe answers"


def test_persistent_rate_limits_stop_with_a_clear_error_and_honour_retry_after(
    fake: FakeStripe, store: SqliteStore
) -> None:
    add_history(fake, 4, NOW - HOUR, NOW - 10 * 60)
    fake.script = [(429, {"Retry-After": "7"})] * 10
    sleeps: list[float] = []
    backfill_run = make_backfill(fake, store, Recorder(), sleeps, rate_limit_retries=2)
    with pytest.raises(BackfillError, match="429"):
        backfill_run.run(NOW - 2 * HOUR, NOW)
    assert sleeps == [7.0, 7.0]


def test_windows_longer_than_30_days_are_refused_before_asking_stripe(
    fake: FakeStripe, store: SqliteStore
) -> None:
    with pytest.raises(BackfillError, match="30 days"):
        make_backfill(fake, store, Recorder()).run(NOW - 30 * 86400 - 1, NOW)
    assert fake.requests == []
    check_window(NOW - 30 * 86400, NOW)
    with pytest.raises(BackfillError, match="future"):
        check_window(NOW + 60, NOW)


def test_up_to_20_types_are_filtered_by_stripe(fake: FakeStripe, store: SqliteStore) -> None:
    add_history(fake, 18, NOW - HOUR, NOW - 10 * 60)
    types = expand_types(("invoice.*",))
    assert types is not None and len(types) <= 20
    recorder = Recorder()

    report = make_backfill(fake, store, recorder).run(NOW - 2 * HOUR, NOW, types)

    assert recorder.ids == fake.ids(types=types) and recorder.ids
    assert report.other_types == 0
    assert all(any(k.startswith("types[") for k in r) for r in fake.requests)


def test_more_than_20_types_are_filtered_here(fake: FakeStripe, store: SqliteStore) -> None:
    add_history(fake, 18, NOW - HOUR, NOW - 10 * 60)
    types = expand_types(("customer.*", "charge.succeeded"))
    assert types is not None and len(types) > 20
    recorder = Recorder()

    report = make_backfill(fake, store, recorder).run(NOW - 2 * HOUR, NOW, types)

    assert recorder.ids == fake.ids(types=types) and recorder.ids
    assert report.other_types == 18 - len(recorder.ids)
    assert not any(k.startswith("types[") for r in fake.requests for k in r)
    # A run over other types has its own checkpoint.
    rest = make_backfill(fake, store, Recorder()).run(NOW - 2 * HOUR, NOW)
    assert rest.resumed_after is None and rest.published == 18 - len(recorder.ids)


def test_an_event_too_large_for_eventbridge_is_published_as_a_reference(
    fake: FakeStripe, store: SqliteStore, tmp_path: Path
) -> None:
    event = fake.add("invoice.paid", NOW - HOUR)
    bodies = LocalPayloadStore(tmp_path / "bodies")
    recorder = Recorder()
    small_entries = Settings(stage="test", max_entry_bytes=1024)
    Backfill(
        stripe_client(API_KEY, fake.url), store, recorder, small_entries, payloads=lambda: bodies
    ).run(NOW - 2 * HOUR, NOW)

    [entry] = recorder.entries
    detail = json.loads(entry["Detail"])
    assert entry_size(entry) <= 1024 and detail["id"] == event["id"]
    assert json.loads(bodies.load(detail[PAYLOAD_KEY])) == event


def test_a_checkpoint_stripe_does_not_know_is_ignored(fake: FakeStripe, store: SqliteStore) -> None:
    add_history(fake, 6, NOW - HOUR, NOW - 10 * 60)
    stale = {"since": NOW - 3 * HOUR, "event_id": "evt_of_another_account", "created": NOW}
    store.put(CHECKPOINTS, "all", stale)
    recorder = Recorder()

    report = make_backfill(fake, store, recorder).run(NOW - 2 * HOUR, NOW)

    assert report.resumed_after is None
    assert recorder.ids == fake.ids()


def test_an_event_of_the_wrong_mode_stops_the_run(fake: FakeStripe, store: SqliteStore) -> None:
    fake.add("customer.created", NOW - HOUR)
    live_only = Backfill(
        stripe_client(API_KEY, fake.url), store, Recorder(), Settings(stage="prod", livemode=True)
    )
    with pytest.raises(BackfillError, match="STRIPE_API_KEY"):
        live_only.run(NOW - 2 * HOUR, NOW)


# The command, as `stripe-events backfill` runs it.


@pytest.fixture
def recorder(monkeypatch: pytest.MonkeyPatch) -> Recorder:
    """The stage's own settings and store, with a recording publisher."""
    recording = Recorder()

    def with_recorder(stage: str, project: Path) -> StripeEvents:
        events = load_events(stage, project)
        events.publisher = recording
        return events

    monkeypatch.setattr(backfill, "load_events", with_recorder)
    return recording


@pytest.fixture
def runner(fake: FakeStripe, tmp_path: Path) -> CliRunner:
    env = {
        "STRIPE_API_KEY": API_KEY,
        "STRIPE_API_BASE": fake.url,
        "STRIPE_EVENTS_STATE_DIR": str(tmp_path),
    }
    return CliRunner(env=env)


def test_the_command_backfills_with_a_progress_bar_and_resumes(
    fake: FakeStripe, runner: CliRunner, recorder: Recorder, tmp_path: Path
) -> None:
    add_history(fake, 12, NOW - HOUR, NOW - 10 * 60)
    invoices = expand_types(("invoice.*",))

    result = runner.invoke(backfill_command, ["--since", "2h", "--types", "invoice.*"])

    assert result.exit_code == 0, result.output
    assert recorder.ids == fake.ids(types=invoices)
    assert f"published {len(recorder.ids)}," in result.stdout
    assert "Events since" in result.stderr and "Events since" not in result.stdout
    ledger = SqliteStore(tmp_path / "stripe-events.sqlite3")
    assert all(ledger.seen(event_id) for event_id in recorder.ids)

    since_iso = datetime.fromtimestamp(NOW - HOUR - 60, UTC).isoformat()
    again = runner.invoke(backfill_command, ["--since", since_iso, "--types", "invoice.*"])
    assert again.exit_code == 0, again.output
    assert "Resumed after" in again.stdout and "published 0," in again.stdout
    assert len(recorder.ids) == len(fake.ids(types=invoices))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "31d"], "30 days"),
        (["--since", "2 hours"], "Invalid value for --since"),
        (["--since", "2h", "--types", "invoice.payment_faild"], "invoice.payment_failed"),
    ],
)
def test_the_command_refuses_bad_options(
    runner: CliRunner, recorder: Recorder, fake: FakeStripe, args: list[str], message: str
) -> None:
    result = runner.invoke(backfill_command, args)
    assert result.exit_code == 2
    assert message in result.output
    assert fake.requests == []


def test_the_command_needs_an_api_key(runner: CliRunner, recorder: Recorder) -> None:
    result = runner.invoke(backfill_command, ["--since", "2h"], env={"STRIPE_API_KEY": None})
    assert result.exit_code == 2
    assert "STRIPE_API_KEY" in result.output


def test_the_command_says_how_to_resume_when_publishing_fails(
    fake: FakeStripe, runner: CliRunner, recorder: Recorder
) -> None:
    add_history(fake, 4, NOW - HOUR, NOW - 10 * 60)
    recorder.fail_after = 2
    result = runner.invoke(backfill_command, ["--since", "2h"])
    assert result.exit_code == 1
    assert "run the same command again to resume" in result.output
    assert isinstance(result.exception, SystemExit)


# Thin events: the v2 Events API -----------------------------------------------------------

METER_ERRORS = "v1.billing.meter.error_report_triggered"
NO_METER = "v1.billing.meter.no_meter_found"


def test_thin_events_are_published_oldest_first_as_their_notifications(
    fake: FakeStripe, store: SqliteStore
) -> None:
    for n in range(5):
        fake.add_thin((METER_ERRORS, NO_METER)[n % 2], NOW - HOUR + n * 60)
    recorder = Recorder()
    backfill = ThinBackfill(
        stripe_client(API_KEY, fake.url), store, recorder, Settings(stage="test"), page_size=2
    )
    store.record_published(fake.thin_events[1]["id"], NO_METER, NOW, utc_now())  # seen

    report = backfill.run(NOW - 2 * HOUR, NOW, frozenset({METER_ERRORS, NO_METER}))

    expected = [e["id"] for e in fake.thin_events if e["id"] != fake.thin_events[1]["id"]]
    assert recorder.ids == expected
    assert (report.read, report.published, report.already_seen) == (5, 4, 1)
    first = json.loads(recorder.entries[0]["Detail"])
    # The notification Stripe would have delivered: no data, the related object kept.
    assert first == {k: v for k, v in fake.thin_events[0].items() if k not in ("data", "context")}
    assert recorder.entries[0]["DetailType"] == METER_ERRORS
    pages = [r for r in fake.requests if r["path"] == "/v2/core/events"]
    assert len(pages) == 3 and pages[0]["types[0]"] == METER_ERRORS


def test_a_thin_backfill_resumes_from_its_checkpoint(fake: FakeStripe, store: SqliteStore) -> None:
    for n in range(4):
        fake.add_thin(NO_METER, NOW - HOUR + n * 60)
    recorder = Recorder(fail_after=2)
    backfill = ThinBackfill(
        stripe_client(API_KEY, fake.url), store, recorder, Settings(stage="test"), page_size=100
    )
    with pytest.raises(PublishFailed):
        backfill.run(NOW - 2 * HOUR, NOW, frozenset({NO_METER}))
    recorder.fail_after = None
    fake.requests.clear()
    report = backfill.run(NOW - 2 * HOUR, NOW, frozenset({NO_METER}))
    assert report.resumed_after == fake.thin_events[1]["id"]
    assert recorder.ids == [e["id"] for e in fake.thin_events]
    [listing] = [r for r in fake.requests if r["path"] == "/v2/core/events"]
    # From the checkpoint's second on, not the whole window again.
    assert listing["created[gte]"] == fake.thin_events[1]["created"].split(".")[0] + "Z"


def test_the_command_backfills_thin_types_on_their_own(
    fake: FakeStripe, runner: CliRunner, recorder: Recorder
) -> None:
    add_history(fake, 3, NOW - HOUR, NOW - 10 * 60)
    fake.add_thin(NO_METER, NOW - HOUR)
    result = runner.invoke(backfill_command, ["--since", "2h", "--types", "v1.billing.meter.*"])
    assert result.exit_code == 0, result.output
    assert recorder.ids == [fake.thin_events[0]["id"]]
    assert "thin events: " in result.stdout and "published 1," in result.stdout
    assert not [r for r in fake.requests if r["path"] == "/v1/events"]


def test_the_command_without_types_backfills_both_kinds(
    fake: FakeStripe, runner: CliRunner, recorder: Recorder
) -> None:
    add_history(fake, 3, NOW - HOUR, NOW - 10 * 60)
    fake.add_thin(METER_ERRORS, NOW - HOUR)
    result = runner.invoke(backfill_command, ["--since", "2h"])
    assert result.exit_code == 0, result.output
    assert recorder.ids == [*fake.ids(), fake.thin_events[0]["id"]]
    [thin_listing] = [r for r in fake.requests if r["path"] == "/v2/core/events"]
    # The thin types the app handles: what its thin event destination sends.
    assert sorted(v for k, v in thin_listing.items() if k.startswith("types[")) == [
        METER_ERRORS,
        NO_METER,
    ]


def test_a_thin_checkpoint_stripe_does_not_know_is_ignored(
    fake: FakeStripe, store: SqliteStore
) -> None:
    for n in range(3):
        fake.add_thin(NO_METER, NOW - HOUR + n * 60)
    # Of another account: it would skip the whole window, since it is at its very end.
    stale = {"since": NOW - 3 * HOUR, "event_id": "evt_of_another_account", "created": NOW}
    store.put(CHECKPOINTS, "thin-all", stale)
    recorder = Recorder()
    backfill = ThinBackfill(stripe_client(API_KEY, fake.url), store, recorder, Settings(stage="t"))
    report = backfill.run(NOW - 2 * HOUR, NOW)
    assert report.resumed_after is None
    assert recorder.ids == [e["id"] for e in fake.thin_events]
    assert fake.requests[0]["path"] == "/v2/core/events/evt_of_another_account"
