"""Side effects that must happen once per Stripe object, whichever of its events comes
first (`Context.once_per_object`). The first run claims the object with a lease that ends
when its Lambda would time out (`Store.claim`); a run that finds it held waits
(`ClaimHeld`: Lambda retries it), and one that finds it done skips it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from stripe_events._errors import ClaimHeld
from stripe_events._stores import Claim

if TYPE_CHECKING:
    from stripe_events._stores import Store


class Running(Protocol):
    """What `once_per_object` reads of a handler's Context: who runs, and for how long."""

    @property
    def store(self) -> Store: ...
    @property
    def event_id(self) -> str: ...
    @property
    def handler(self) -> str: ...
    @property
    def lease_seconds(self) -> float: ...


def once_per_object(
    ctx: Running, collection: str, key: str, action: Callable[[], dict[str, Any] | None]
) -> bool:
    """Run `action` unless it was done for `key`; True when it ran now.

    What `action` returns is kept with the "done" record, under `collection`/`key`. If it
    raises, the claim is released and the error goes on.
    """
    owner = f"{ctx.event_id}:{ctx.handler}"
    claim = ctx.store.claim(collection, key, owner, ctx.lease_seconds)
    if claim is Claim.DONE:
        return False
    if claim is Claim.HELD:
        raise ClaimHeld(f"{collection} {key} is being done by another run; retry later")
    try:
        result = action() or {}
    except BaseException:
        ctx.store.release_claim(collection, key, owner)
        raise
    done = {"event_id": ctx.event_id, "handler": ctx.handler, **result}
    ctx.store.finish_claim(collection, key, owner, done)
    return True
