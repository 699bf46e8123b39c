"""The store: the ledger, the state handlers keep, and claims, in one backend.

Two backends: DynamoDB on AWS (dynamodb.py) and SQLite in stage `local`
(stripe_events_local.sqlite). This package never imports the second; _backends picks.
A function's run of an event is a claim too, listed by `failures` if its run dies.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any

from stripe_events._ledger import LedgerEntry, StalledRun
from stripe_events._stores.claims import CLAIMED, Claim, Claims
from stripe_events._stores.ledger import Ledger

# The claims of functions' runs in progress, `<event id>:<router>`: deleted when the run
# ends, kept (and listed by `failures` once the lease is over) when it dies.
RUNS = "runs"


def run_key(event_id: str, router: str) -> str:
    return f"{event_id}:{router}"


def split_run_key(key: str) -> tuple[str, str]:
    """(event id, router) of a run's key: event ids have no ":"."""
    event_id, router = key.split(":", 1)
    return event_id, router


def stalled_run(key: str, stored: dict[str, Any] | None, now: float) -> StalledRun | None:
    """The run that the claim `stored` at `key` is left from, if its lease has ended."""
    if stored is None or stored.get("claim") != CLAIMED or stored.get("lease_until", 0) >= now:
        return None
    handlers = tuple(stored.get("handlers", ()))
    return StalledRun(split_run_key(key)[1], float(stored["lease_until"]), handlers)


class Store(Ledger, Claims):
    def claim_run(
        self,
        event_id: str,
        router: str,
        owner: str,
        lease_seconds: float,
        handlers: list[str],
        now: float | None = None,
    ) -> Claim:
        """Claim a function's run of an event, naming the handlers it is to run, so that
        `failures` can tell what a run that died left undone."""
        about = {"handlers": handlers}
        return self.claim(RUNS, run_key(event_id, router), owner, lease_seconds, now, about)

    def release_run(self, event_id: str, router: str, owner: str) -> None:
        self.release_claim(RUNS, run_key(event_id, router), owner)

    def failures(self, since: str = "", now: float | None = None) -> list[LedgerEntry]:
        """Events seen at or after `since` that need a replay: a handler whose latest
        outcome is an error, or a run that died (its claim outlived its lease, by `now`)
        before each of its handlers had succeeded. Newest first."""
        now = time.time() if now is None else now
        stalled: dict[str, list[StalledRun]] = {}
        for key, claim in self._expired_runs(now):
            run = stalled_run(key, claim, now)
            if run is not None:
                stalled.setdefault(split_run_key(key)[0], []).append(run)
        ids = self._failing_ids(since) | set(stalled)
        entries = [
            dataclasses.replace(entry, stalled=tuple(stalled.get(entry.id, ())))
            for entry in map(self.event, sorted(ids))
            if entry is not None
        ]
        listed = [e for e in entries if e.needs_replay and e.seen_at >= since]
        return sorted(listed, key=lambda e: (e.seen_at, e.id), reverse=True)
