"""The store interface: the ledger, and the projections that resource modules keep.

Two implementations: DynamoDB on AWS (dynamodb.py) and SQLite in stage `local`
(sqlite.py). This module never imports them; the caller picks one (core.open_store).

Several functions write at the same moment (EventBridge runs them concurrently), so
every write that depends on what is stored is one atomic, conditional operation:
`put_if_newer` and `put_child_if_newer` keep the item with the greatest order, and
`claim` hands a piece of work to one run at a time. None of them reads first and then
writes.
"""

from __future__ import annotations

import enum
from abc import ABC, abstractmethod
from typing import Any

from stripe_events.ledger import LedgerEntry, Outcome, StalledRun

# The claims of functions' runs in progress, `<event id>:<router>`: deleted when the run
# ends, kept (and listed by `failures` once the lease is over) when it dies.
RUNS = "runs"


def run_key(event_id: str, router: str) -> str:
    return f"{event_id}:{router}"


def split_run_key(key: str) -> tuple[str, str]:
    """(event id, router) of a run's key: event ids have no ":"."""
    event_id, router = key.split(":", 1)
    return event_id, router


class Store(ABC):
    @abstractmethod
    def record_published(self, event_id: str, event_type: str, created: int, at: str) -> None:
        """Record that the event was put on the bus; the first record wins."""

    @abstractmethod
    def record_received(
        self, event_id: str, event_type: str, created: int, at: str, body: str
    ) -> None:
        """Record that a function received the event, and its body; the first record wins."""

    @abstractmethod
    def record_outcome(self, event_id: str, handler: str, outcome: Outcome) -> None:
        """Record one handler's outcome for one event, replacing an older one (by `at`).

        Conditional, so that a run that failed and is recorded late cannot hide the
        success of the retry that ran meanwhile.
        """

    @abstractmethod
    def outcomes(self, event_id: str) -> dict[str, Outcome]:
        """Every handler's latest outcome for this event."""

    @abstractmethod
    def event(self, event_id: str) -> LedgerEntry | None:
        """One event with its body and outcomes, or None if the ledger never saw it."""

    def seen(self, event_id: str) -> bool:
        return self.event(event_id) is not None

    @abstractmethod
    def recent(self, limit: int, since: str = "") -> list[LedgerEntry]:
        """Events seen at or after `since` (ISO time), newest first; ties by id, descending."""

    @abstractmethod
    def failures(self, since: str = "", now: float | None = None) -> list[LedgerEntry]:
        """Events seen at or after `since` that need a replay: a handler whose latest
        outcome is an error, or a run that died (its claim outlived its lease, `now`
        default the current time) before every handler of it had succeeded."""

    def claim_run(
        self,
        event_id: str,
        router: str,
        owner: str,
        lease_seconds: float,
        handlers: list[str],
        now: float | None = None,
    ) -> Claim:
        """`claim` on a function's run of an event, naming the handlers it is to run, so
        that `failures` can tell what a run that died left undone."""
        about = {"handlers": handlers}
        return self.claim(RUNS, run_key(event_id, router), owner, lease_seconds, now, about)

    def release_run(self, event_id: str, router: str, owner: str) -> None:
        self.release_claim(RUNS, run_key(event_id, router), owner)

    @abstractmethod
    def get(self, collection: str, key: str) -> dict[str, Any] | None:
        """One projected item, or None."""

    @abstractmethod
    def put(self, collection: str, key: str, item: dict[str, Any]) -> None:
        """Create or replace one projected item, whatever is stored (last write wins)."""

    @abstractmethod
    def put_if_newer(self, collection: str, key: str, item: dict[str, Any], order: str) -> bool:
        """Write the item unless the stored one has a greater `order`, in one atomic step.

        Orders compare as strings (projection.order_key makes them). An equal order is the
        same version written again: it is written, and True returned. False means "not
        newer": not an error, and nothing to retry. An item written by `put` has no order
        and is replaced by any.
        """

    @abstractmethod
    def put_child_if_newer(
        self, collection: str, parent: str, key: str, item: dict[str, Any], order: str
    ) -> bool:
        """`put_if_newer` for one item under `parent`, e.g. a subscription under its customer."""

    @abstractmethod
    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        """Every item under `parent`, by key, in key order."""

    @abstractmethod
    def claim(
        self,
        collection: str,
        key: str,
        owner: str,
        lease_seconds: float,
        now: float | None = None,
        about: dict[str, Any] | None = None,
    ) -> Claim:
        """Take the work named `key` for `owner` until the lease ends, in one atomic step.

        TAKEN when nobody holds it, when `owner` itself holds it (its earlier run died),
        or when the holder's lease has ended (the holder crashed or timed out). DONE when
        a run finished it; HELD while another owner's lease runs. The item, as `get`
        returns it, is `{"claim": "claimed" | "done", "owner": …, "lease_until": …}` plus
        `about`, and once done, the result given to `finish_claim`.
        """

    @abstractmethod
    def finish_claim(self, collection: str, key: str, owner: str, result: dict[str, Any]) -> None:
        """Mark the work done, with `result`; later claims answer DONE."""

    @abstractmethod
    def release_claim(self, collection: str, key: str, owner: str) -> None:
        """Give the work back (it failed), if `owner` still holds it: the next claim takes it."""


class Claim(enum.Enum):
    TAKEN = "taken"  # yours: do the work, then finish_claim (or release_claim if it fails)
    DONE = "done"  # a run already finished it
    HELD = "held"  # another run holds it and its lease has not ended: try again later


CLAIMED, DONE = "claimed", "done"


def claim_item(owner: str, until: float, about: dict[str, Any] | None = None) -> dict[str, Any]:
    """The item of a claim just taken: `owner` holds it until `until` (epoch seconds)."""
    return {**(about or {}), "claim": CLAIMED, "owner": owner, "lease_until": until}


def stalled_run(key: str, stored: dict[str, Any] | None, now: float) -> StalledRun | None:
    """The run that the claim `stored` at `key` (in RUNS) is left from, if its lease has
    ended; None when it is released, done or still running."""
    if stored is None or stored.get("claim") != CLAIMED or stored.get("lease_until", 0) >= now:
        return None
    return StalledRun(
        split_run_key(key)[1], float(stored["lease_until"]), tuple(stored.get("handlers", ()))
    )


def held_by(stored: dict[str, Any] | None, owner: str) -> bool:
    """Whether `stored` is a claim that `owner` holds (taken, not done)."""
    return stored is not None and stored.get("claim") == CLAIMED and stored.get("owner") == owner


def can_take(stored: dict[str, Any] | None, owner: str, now: float) -> bool:
    """Whether `owner` may take the claim over `stored`: the rule both stores implement."""
    if stored is None or held_by(stored, owner):
        return True
    return stored.get("claim") == CLAIMED and stored.get("lease_until", 0) < now


def refusal(stored: dict[str, Any] | None) -> Claim:
    """Why a claim could not be taken over `stored`, read after the attempt.

    Gone by then (its holder released it): HELD, so that the caller tries again. An item
    with no claim field (recorded before claims existed, or by `put`) says it was done.
    """
    if stored is None or stored.get("claim") == CLAIMED:
        return Claim.HELD
    return Claim.DONE


def check_collection(name: str) -> str:
    """Collection names are plain words: the DynamoDB key is `<collection>#<key>`."""
    if not name or "#" in name:
        raise ValueError(f"a collection name must be non-empty and without '#': {name!r}")
    return name
