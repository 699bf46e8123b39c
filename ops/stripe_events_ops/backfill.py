"""Backfill: publish the events that Stripe created but our webhook never received.

Stripe's Events API lists the last 30 days of events, newest first. A backfill reads a
window of it oldest first, so that handlers see events in the order Stripe made them,
and publishes each event the ledger has never seen, exactly as the webhook would. The
ledger makes a run idempotent; a checkpoint in the store lets the next run start where
the last one stopped instead of reading the whole window again.

Snapshot events come from the v1 Events API (`Backfill`), thin ones from the v2 Events
API (`ThinBackfill`), published as the thin notifications Stripe would have sent.
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal, TypeVar

import click
import stripe
from stripe.params import EventListParams
from stripe.params.v2.core import EventListParams as ThinEventListParams

import stripe_events._catalog as catalog
import stripe_events._envelope as envelope
from stripe_events._bus import Publisher, publish_event
from stripe_events._errors import PublishFailed, Rejected, SettingsError, UnknownEventType
from stripe_events._ledger import utc_now
from stripe_events._payloads import PayloadStore
from stripe_events._settings import Settings
from stripe_events._stores import Store
from stripe_events_ops.clients import stripe_client
from stripe_events_ops.durations import parse_since
from stripe_events_ops.project import current_project, load_events, routing_app, subscribers

log = logging.getLogger("stripe_events.backfill")

MAX_WINDOW_SECONDS = 30 * 86400  # what the Events API keeps
PAGE_SIZE = 100  # the most Stripe returns per page
MAX_TYPES_PER_REQUEST = 20  # Stripe's limit for the `types` filter
# The list may show an event a little after its `created` second. The checkpoint never
# moves past events younger than this, so that a later run still reads such stragglers.
SETTLE_SECONDS = 300
# The SDK retries 429 only when Stripe sends `Stripe-Should-Retry: true`; a plain rate
# limit comes back as RateLimitError, and we wait and retry it ourselves.
RATE_LIMIT_RETRIES = 8
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 30.0
# Connection errors, 409, 5xx and `Stripe-Should-Retry: true`: the SDK's own retries.
FIRST_PROBE_SECONDS = 60
CHECKPOINTS = "backfill_checkpoints"

T = TypeVar("T")
# What a thin notification carries of its event (the event's `data` stays in Stripe).
THIN_FIELDS = ("id", "object", "type", "created", "livemode", "context", "related_object", "reason")


class BackfillError(Exception):
    """The backfill cannot start or go on; the message says why and what to do."""


def check_window(since: int, until: int) -> None:
    if since > until:
        raise BackfillError(f"--since {iso(since)} is in the future; nothing to backfill.")
    if until - since > MAX_WINDOW_SECONDS:
        days = (until - since) / 86400
        raise BackfillError(
            f"Stripe's Events API keeps only the last 30 days of events, and this window "
            f"reaches back {days:.1f} days (to {iso(since)}). Use --since 30d or less."
        )


def expand_types(patterns: list[str] | tuple[str, ...]) -> frozenset[str] | None:
    """The event types that `patterns` name (types, `prefix.*`, commas allowed); None: all."""
    names = [name.strip() for pattern in patterns for name in pattern.split(",")]
    names = [name for name in names if name]
    if not names or catalog.WILDCARD in names:
        return None
    return frozenset(t for name in names for t in catalog.expand(name))


def iso(timestamp: int) -> str:
    return datetime.fromtimestamp(timestamp, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@dataclass
class Progress:
    """How far a run has got; the progress callback receives it after every event."""

    since: int
    until: int
    position: int  # `created` of the last event read: events are read oldest first
    read: int = 0
    published: int = 0
    already_seen: int = 0
    other_types: int = 0
    resumed_after: str | None = None  # the checkpoint's event, when the run resumed
    checkpoint: str | None = None  # the last event saved as the checkpoint


ProgressCallback = Callable[[Progress], None]


@dataclass(frozen=True)
class Listed:
    """One event as the Events API listed it, and the body the webhook would have got."""

    id: str
    type: str
    created: int
    body: dict[str, Any]

    @classmethod
    def snapshot(cls, event: stripe.Event) -> Listed:
        return cls(event.id, event.type, event.created, event.to_dict(for_json=True))

    @classmethod
    def thin(cls, event: Any) -> Listed:
        """A v2 event, as the thin notification its event destination would deliver."""
        data = event.to_dict()
        body = {k: data[k] for k in THIN_FIELDS if data.get(k) is not None}
        return cls(event.id, event.type, rfc3339_seconds(event.created), body)


@dataclass(frozen=True)
class Checkpoint:
    """Every event from `since` up to and including `event_id` has been handled."""

    since: int
    event_id: str
    created: int

    def covers(self, since: int) -> bool:
        return self.since <= since <= self.created


def checkpoint_key(types: frozenset[str] | None) -> str:
    # A run over `invoice.*` says nothing about other types, so each selection has its own.
    if types is None:
        return "all"
    return "types-" + hashlib.sha256(",".join(sorted(types)).encode()).hexdigest()[:16]


class Backfill:
    """Reads a window of the Events API and publishes what the ledger lacks.

    `payloads` keeps the bodies of events too large for an EventBridge entry, as the
    webhook does; without it, every entry is published whatever its size.
    """

    checkpoint_prefix = ""  # each kind keeps its checkpoints apart

    def __init__(
        self,
        client: stripe.StripeClient,
        store: Store,
        publisher: Publisher,
        settings: Settings,
        *,
        payloads: Callable[[], PayloadStore] | None = None,
        page_size: int = PAGE_SIZE,
        settle_seconds: int = SETTLE_SECONDS,
        rate_limit_retries: int = RATE_LIMIT_RETRIES,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.client = client
        self.store = store
        self.publisher = publisher
        self.settings = settings
        self.payloads = payloads
        self.page_size = page_size
        self.settle_seconds = settle_seconds
        self.rate_limit_retries = rate_limit_retries
        self.sleep = sleep

    def run(
        self,
        since: int,
        until: int,
        types: frozenset[str] | None = None,
        *,
        resume: bool = True,
        progress: ProgressCallback | None = None,
    ) -> Progress:
        """Publish, oldest first, every event created in [since, until] the ledger lacks."""
        check_window(since, until)
        report = Progress(since, until, position=since)
        key = self.checkpoint_prefix + checkpoint_key(types)
        checkpoint = self._usable_checkpoint(key, since) if resume else None
        if checkpoint is not None:
            report.resumed_after = checkpoint.event_id
        events = self._listed(since, until, types, checkpoint)
        covered_from = checkpoint.since if checkpoint else since
        return self._publish_all(events, key, covered_from, types, report, progress)

    def _listed(
        self, since: int, until: int, types: frozenset[str] | None, checkpoint: Checkpoint | None
    ) -> Iterable[Listed]:
        """The window's events oldest first; after the checkpoint's event, when resuming."""
        filters = self._type_filter(types)
        window: EventListParams = {
            **filters,
            "limit": self.page_size,
            "created": {"gte": since, "lte": until},
        }
        if checkpoint is not None:
            events = self._paged(window, "ending_before", checkpoint.event_id)
        else:
            events = self._from_window_start(window, filters, since, until)
        return map(Listed.snapshot, events)

    def _retrieve(self, event_id: str) -> object:
        return self.client.v1.events.retrieve(event_id)

    def _publish_all(
        self,
        events: Iterable[Listed],
        key: str,
        covered_from: int,
        types: frozenset[str] | None,
        report: Progress,
        progress: ProgressCallback | None,
    ) -> Progress:
        """Handle `events` oldest first, checkpointing each page under `key`."""
        done: Listed | None = None
        try:
            for listed in events:
                self._handle(listed, types, report)
                if listed.created <= report.until - self.settle_seconds:
                    done = listed
                if done is not None and report.read % self.page_size == 0:
                    self._save_checkpoint(key, covered_from, done, report)
                if progress is not None:
                    progress(report)
        finally:
            # Also on failure or Ctrl-C: the next run starts after the last event handled.
            if done is not None:
                self._save_checkpoint(key, covered_from, done, report)
        return report

    def _handle(self, event: Listed, types: frozenset[str] | None, report: Progress) -> None:
        report.read += 1
        report.position = max(report.position, event.created)
        if types is not None and event.type not in types:
            report.other_types += 1
            return
        if self.store.seen(event.id):
            report.already_seen += 1
            return
        text = json.dumps(event.body, separators=(",", ":"))
        try:
            header = envelope.parse_event(text, self.settings.livemode)
        except Rejected as error:
            raise BackfillError(
                f"Stripe lists {event.id}, but stage {self.settings.stage!r} would reject it: "
                f"{error.message} Is STRIPE_API_KEY the key of the right mode?"
            ) from None
        entry = envelope.to_entry(text, header, self.settings)
        publish_event(
            entry, header, self.publisher, self.store, self.payloads, self.settings.max_entry_bytes
        )
        report.published += 1

    def _type_filter(self, types: frozenset[str] | None) -> EventListParams:
        # Beyond Stripe's 20 names, list everything and filter here: one stream keeps
        # Stripe's own order and needs one cursor, where several requests would need a
        # merge with no rule for same-second ties, and a cursor each.
        if types is not None and len(types) <= MAX_TYPES_PER_REQUEST:
            return {"types": sorted(types)}
        return {}

    def _from_window_start(
        self, window: EventListParams, filters: EventListParams, since: int, until: int
    ) -> Iterator[stripe.Event]:
        # `ending_before` pages towards newer events, but needs an event to start from:
        # the newest one before the window, if Stripe still lists one.
        before: EventListParams = {**filters, "limit": 1, "created": {"lt": since}}
        page = self._retrying(lambda: self.client.v1.events.list(before))
        if page.data:
            yield from self._paged(window, "ending_before", page.data[0].id)
            return
        first = self._oldest_in_window(filters, since, until)
        if first is not None:
            yield first
            yield from self._paged(window, "ending_before", first.id)

    def _oldest_in_window(
        self, filters: EventListParams, since: int, until: int
    ) -> stripe.Event | None:
        # Nothing older is listed (a window of 30 days, or a new account). Find the oldest
        # event by reading newest first over a slice of the window's start that doubles
        # until it holds an event, so that at most about twice the events before the first
        # one are read, and no list of ids is held in memory.
        span = FIRST_PROBE_SECONDS
        while True:  # bounded: the slice doubles until it covers the whole window
            end = min(since + span, until + 1)
            probe: EventListParams = {
                **filters,
                "limit": self.page_size,
                "created": {"gte": since, "lt": end},
            }
            oldest = None
            for event in self._paged(probe, "starting_after", None):
                oldest = event
            if oldest is not None or end > until:
                return oldest
            span *= 2

    def _paged(
        self,
        params: EventListParams,
        direction: Literal["ending_before", "starting_after"],
        cursor: str | None,
    ) -> Iterator[stripe.Event]:
        """The SDK's auto-pagination, started again after the last event read on a 429.

        With `ending_before`, the SDK pages towards newer events and reverses each page,
        so events come oldest first.
        """
        failures = 0
        while True:  # bounded: a pass reads to the end, or _back_off gives up on 429s
            query = params.copy()
            if cursor is not None and direction == "ending_before":
                query["ending_before"] = cursor
            elif cursor is not None:
                query["starting_after"] = cursor
            try:
                for event in self.client.v1.events.list(query).auto_paging_iter():
                    cursor = event.id
                    failures = 0
                    yield event
                return
            except stripe.RateLimitError as error:
                failures += 1
                self._back_off(failures, error)

    def _retrying(self, request: Callable[[], T]) -> T:
        failures = 0
        while True:  # bounded: _back_off raises after rate_limit_retries
            try:
                return request()
            except stripe.RateLimitError as error:
                failures += 1
                self._back_off(failures, error)

    def _back_off(self, failures: int, error: stripe.RateLimitError) -> None:
        if failures > self.rate_limit_retries:
            raise BackfillError(
                f"Stripe kept answering 429 (rate limited) after {self.rate_limit_retries} "
                "retries. Run the same command again later: it resumes."
            ) from error
        delay = min(MAX_BACKOFF_SECONDS, FIRST_BACKOFF_SECONDS * 2 ** (failures - 1))
        delay *= 0.5 + random.random() / 2  # jitter: other clients share the rate limit
        retry_after = _retry_after(error)
        if retry_after is not None:
            delay = max(delay, retry_after)
        log.warning("Stripe answered 429; retry %d in %.1f s", failures, delay)
        self.sleep(delay)

    def _usable_checkpoint(self, key: str, since: int) -> Checkpoint | None:
        checkpoint = _checkpoint_from(self.store.get(CHECKPOINTS, key))
        if checkpoint is None or not checkpoint.covers(since):
            return None
        try:
            self._retrying(lambda: self._retrieve(checkpoint.event_id))
        except stripe.InvalidRequestError as error:
            # A key of another account or mode has never seen that event: start afresh.
            if error.http_status != 404:
                raise
            log.warning("checkpoint %s is not listed by Stripe; ignoring it", checkpoint.event_id)
            return None
        return checkpoint

    def _save_checkpoint(self, key: str, since: int, event: Listed, report: Progress) -> None:
        if report.checkpoint == event.id:
            return
        item = {"since": since, "event_id": event.id, "created": event.created, "at": utc_now()}
        self.store.put(CHECKPOINTS, key, item)
        report.checkpoint = event.id


class ThinBackfill(Backfill):
    """Reads a window of the v2 Events API (thin events) and publishes what the ledger lacks.

    The v2 API lists newest first and pages forward only, so a run reads its window (from
    the checkpoint on, when it resumes), then publishes oldest first; thin events are few
    (errors, account changes), and only their notifications are kept meanwhile.
    """

    checkpoint_prefix = "thin-"

    def _listed(
        self, since: int, until: int, types: frozenset[str] | None, checkpoint: Checkpoint | None
    ) -> Iterable[Listed]:
        # From the checkpoint's second on: what it covered the ledger has, and skips.
        start = checkpoint.created if checkpoint is not None else since
        window: ThinEventListParams = {
            "created": {"gte": iso(start), "lte": iso(until)},
            "limit": self.page_size,
        }
        if types is not None and len(types) <= MAX_TYPES_PER_REQUEST:
            window["types"] = sorted(types)
        listed = self._retrying(
            lambda: [
                Listed.thin(e) for e in self.client.v2.core.events.list(window).auto_paging_iter()
            ]
        )
        return sorted(listed, key=lambda e: (e.created, e.id))

    def _retrieve(self, event_id: str) -> object:
        return self.client.v2.core.events.retrieve(event_id)


def rfc3339_seconds(value: str) -> int:
    return int(datetime.fromisoformat(value).timestamp())


def _checkpoint_from(item: dict[str, Any] | None) -> Checkpoint | None:
    if item is None:
        return None
    since, event_id, created = item.get("since"), item.get("event_id"), item.get("created")
    if isinstance(since, int) and isinstance(event_id, str) and isinstance(created, int):
        return Checkpoint(since, event_id, created)
    return None


def _retry_after(error: stripe.RateLimitError) -> float | None:
    value = (error.headers or {}).get("retry-after") or (error.headers or {}).get("Retry-After")
    try:
        return None if value is None else min(float(value), MAX_BACKOFF_SECONDS)
    except ValueError:
        return None


@click.command("backfill")
@click.option(
    "--since",
    required=True,
    metavar="2h|3d|ISO",
    help="How far back: 30m, 2h, 3d (at most 30d), or an ISO 8601 time.",
)
@click.option(
    "--types",
    multiple=True,
    metavar="TYPES",
    help="Only these event types or prefix.* patterns; repeat, or separate with commas.",
)
@click.option("--restart", is_flag=True, help="Ignore the checkpoint of an earlier run.")
@click.option("--stage", default="local", show_default=True, help="Stage in .chalice/config.json.")
def backfill_command(since: str, types: tuple[str, ...], restart: bool, stage: str) -> None:
    """Publish, oldest first, the events since then that the ledger has never seen.

    Reads Stripe's Events API with STRIPE_API_KEY (STRIPE_API_BASE points it elsewhere,
    such as stripe-mock). Safe to run again: it skips what the ledger has, and resumes
    after the last event an earlier run handled.
    """
    until = int(time.time())
    try:
        start = int(parse_since(since, datetime.fromtimestamp(until, UTC)).timestamp())
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--since") from None
    try:
        check_window(start, until)
        selected = expand_types(types)
        events = load_events(stage, current_project())
    except (BackfillError, UnknownEventType, SettingsError) as error:
        raise click.UsageError(str(error)) from None
    if not events.api_key:
        raise click.UsageError(
            "Set STRIPE_API_KEY to a key that can read events (a restricted key with "
            "read access to Events is enough)."
        )
    client = stripe_client(events.api_key)
    snapshot, thin = split_kinds(selected)
    kinds: list[tuple[str, type[Backfill], frozenset[str] | None]] = []
    if snapshot != frozenset():
        kinds.append(("Events", Backfill, snapshot))
    if thin != frozenset():
        kinds.append(("Thin events", ThinBackfill, thin))
    for what, kind, chosen in kinds:
        backfill = kind(
            client,
            events.store,
            events.publisher,
            events.settings,
            payloads=lambda: events.payloads,
        )
        report = _run_with_progress(backfill, what, start, until, chosen, resume=not restart)
        if report.resumed_after:
            click.echo(f"Resumed after {report.resumed_after}, where an earlier run stopped.")
        prefix = "" if kind is Backfill else "thin events: "
        click.echo(
            f"{prefix}{iso(start)} to {iso(until)}: read {report.read} events, published "
            f"{report.published}, already in the ledger {report.already_seen}, "
            f"other types {report.other_types}."
        )


def split_kinds(
    selected: frozenset[str] | None,
) -> tuple[frozenset[str] | None, frozenset[str] | None]:
    """(snapshot types, thin types) to backfill; None is every type, empty is none.

    With no selection: every snapshot event, and the thin types the app handles (its
    thin event destination sends no other).
    """
    if selected is None:
        handled = subscribers(routing_app(current_project()))
        return None, frozenset(t for t in handled if catalog.is_thin(t))
    return (
        frozenset(t for t in selected if not catalog.is_thin(t)),
        frozenset(t for t in selected if catalog.is_thin(t)),
    )


def _run_with_progress(
    backfill: Backfill,
    what: str,
    start: int,
    until: int,
    types: frozenset[str] | None,
    *,
    resume: bool,
) -> Progress:
    length = max(until - start, 1)

    def label(report: Progress | None) -> str | None:
        return None if report is None else f"{report.published} published"

    with click.progressbar(
        length=length, label=f"{what} since {iso(start)}", item_show_func=label, file=sys.stderr
    ) as bar:

        def show(report: Progress) -> None:
            bar.update(report.position - start - bar.pos, report)

        try:
            report = backfill.run(start, until, types, resume=resume, progress=show)
        except (BackfillError, PublishFailed, stripe.StripeError) as error:
            raise click.ClickException(
                f"{error} Events handled so far are in the ledger; run the same command "
                "again to resume."
            ) from None
        bar.update(length - bar.pos, report)
    return report
