"""Side effects that must happen once per Stripe object, whichever of its events comes first.

Idempotency makes each handler run once per event. Some work is once per object, though:
an order is fulfilled once per Checkout Session, whether `completed` or
`async_payment_succeeded` says it is paid, and both may be handled at the same moment.

    ran = once_per_object(ctx, "fulfilments", session["id"], lambda: fulfil_order(session, ctx))

The first run claims the object, with a lease, in one atomic write (`Store.claim`), runs
the action, and marks the claim done. A run that finds it done skips it. A run that finds
it held by another raises `ClaimHeld`: the dispatcher counts the handler as busy, not
failed, and Lambda retries it later, when the holder has finished (it skips) or has
failed (its claim is released, and the retry takes it). A holder that crashed leaves its
claim until the lease ends, which is when its Lambda would have timed out; then a retry
takes it over. The action can therefore run twice only after a crash between its end
and the "done" record: make what it does outside idempotent by the object's id.
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

    Whatever `action` returns is kept with the "done" record, under `collection`/`key`.
    If it raises, the claim is released and the error goes on.
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
