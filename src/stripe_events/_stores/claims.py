"""Work that one run at a time may do: a claim, with a lease, taken in one atomic step.

The claim rule is here, once, as the condition both stores write under: a claim can be
taken when nobody holds it, when its owner takes it again (the same run retried), or
when the holder's lease has ended (the holder crashed or timed out).
"""

from __future__ import annotations

import enum
import time
from typing import Any

from stripe_events._stores.conditions import Absent, AllOf, AnyOf, Condition, Value, below, equals
from stripe_events._stores.state import State, check_collection

CLAIMED, DONE = "claimed", "done"


class Claim(enum.Enum):
    TAKEN = "taken"  # yours: do the work, then finish_claim (or release_claim if it fails)
    DONE = "done"  # a run already finished it
    HELD = "held"  # another run holds it and its lease has not ended: try again later


def takeable(owner: str, now: float) -> Condition:
    mine_or_over = AnyOf((equals("owner", owner), below("lease_until", now)))
    return AnyOf((Absent(), AllOf((equals("claim", CLAIMED), mine_or_over))))


def held_by(owner: str) -> Condition:
    return AllOf((equals("claim", CLAIMED), equals("owner", owner)))


def refusal(stored: dict[str, Any] | None) -> Claim:
    """Why a claim could not be taken over `stored`, read after the attempt: HELD when
    it is gone by then (its holder released it: try again); DONE for an item with no
    claim field (written by `put`, or before claims existed)."""
    if stored is None or stored.get("claim") == CLAIMED:
        return Claim.HELD
    return Claim.DONE


class Claims(State):
    def claim(
        self,
        collection: str,
        key: str,
        owner: str,
        lease_seconds: float,
        now: float | None = None,
        about: dict[str, Any] | None = None,
    ) -> Claim:
        """Take the work named `key` for `owner` until the lease ends.

        The item, as `get` returns it, is `about` with `{"claim": "claimed" | "done",
        "owner": …, "lease_until": …}`, and once done, the result given to `finish_claim`.
        """
        now = time.time() if now is None else now
        lease_until = now + lease_seconds
        fields: dict[str, Value] = {"claim": CLAIMED, "owner": owner, "lease_until": lease_until}
        item, condition = {**(about or {}), **fields}, takeable(owner, now)
        if self._write(check_collection(collection), key, item, fields=fields, condition=condition):
            return Claim.TAKEN
        return refusal(self.get(collection, key))

    def finish_claim(self, collection: str, key: str, owner: str, result: dict[str, Any]) -> None:
        """Mark the work done, with `result`; later claims answer DONE."""
        fields = {"claim": DONE, "owner": owner}
        self._write(check_collection(collection), key, {**result, **fields}, fields=fields)

    def release_claim(self, collection: str, key: str, owner: str) -> None:
        """Give the work back (it failed), if `owner` still holds it: the next claim takes it."""
        self._delete(check_collection(collection), key, held_by(owner))
