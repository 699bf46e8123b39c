"""The store: the ledger, the state handlers keep, and claims, in one backend.

DynamoDB on AWS (dynamodb.py), SQLite in stage `local` (stripe_events_local.sqlite, which
this package never imports: _backends picks). A function's run of an event is a claim
too, so that `failures` lists the run if it dies.
"""

from __future__ import annotations

import dataclasses
import time

from stripe_events._ledger import LedgerEntry, StalledRun
from stripe_events._stores.claims import CLAIMED, Claim, Claims
from stripe_events._stores.ledger import Ledger

# The claims of functions' runs in progress, `<event id>:<router>` (event ids have no
# ":"): deleted when the run ends, kept (and listed by `failures` once the lease is over)
# when it dies.
RUNS = "runs"


def run_key(event_id: str, router: str) -> str:
    return f"{event_id}:{router}"


def split_run_key(key: str) -> tuple[str, str]:
    event_id, router = key.split(":", 1)
    return event_id, router


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
        key, about = run_key(event_id, router), {"handlers": handlers}
        return self.claim(RUNS, key, owner, lease_seconds, now, about)

    def release_run(self, event_id: str, router: str, owner: str) -> None:
        self.release_claim(RUNS, run_key(event_id, router), owner)

    def failures(self, since: str = "", now: float | None = None) -> list[LedgerEntry]:
        """Events seen at or after `since` that need a replay: a handler whose latest
        outcome is an error, or a run that died (its claim outlived its lease, by `now`)
        before each of its handlers had succeeded. Newest first."""
        now = time.time() if now is None else now
        stalled: dict[str, list[StalledRun]] = {}
        for key, claim in self._expired_runs(now):
            if claim.get("claim") == CLAIMED and claim.get("lease_until", 0) < now:
                event_id, router = split_run_key(key)
                handlers = tuple(claim.get("handlers", ()))
                run = StalledRun(router, float(claim["lease_until"]), handlers)
                stalled.setdefault(event_id, []).append(run)
        ids = self._failing_ids(since) | set(stalled)
        entries = [
            dataclasses.replace(entry, stalled=tuple(stalled.get(entry.id, ())))
            for entry in map(self.event, sorted(ids))
            if entry is not None
        ]
        listed = [e for e in entries if e.needs_replay and e.seen_at >= since]
        return sorted(listed, key=lambda e: (e.seen_at, e.id), reverse=True)
