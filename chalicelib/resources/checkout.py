"""Checkout: keep each Checkout Session, and fulfil each paid order exactly once.

`fulfil_order` below is THE function to replace: give the customer what they bought
(grant access, ship the parcel, e-mail the licence key). The rest is plumbing.

It is called once per session, once the payment is settled: on `completed` when
`payment_status` is "paid" or "no_payment_required" (cards, free orders), or else on
`async_payment_succeeded` (bank debits, which complete "unpaid" and settle days later).
Each handler runs once per event, but Stripe may send both events, in either order and
at the same moment: a claim on the session ("fulfilments", see `Context.once_per_object`)
makes it once per session. Every session, expired ones too, is kept in
"checkout_sessions".

Sessions of events from before September 2020 have no `payment_status`. Then the event
decides: `async_payment_succeeded` is a settled payment; for `completed`, the session is
fetched from the API when STRIPE_API_KEY is set, and otherwise not fulfilled, with a
warning: nothing says whether it was paid.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stripe_events import Context, Router

if TYPE_CHECKING:
    import stripe

router = Router("checkout")

SETTLED = {"paid", "no_payment_required"}


def fulfil_order(session: dict[str, Any], ctx: Context) -> None:
    """Deliver the order of a paid Checkout Session. Replace this body with your own.

    `session` is the Checkout Session as plain JSON. Raise to have it retried. It can
    run twice for one session only after a crash right after it returned, so key what
    you do by `session["id"]`, e.g. as the Idempotency-Key of the API calls you make.
    """
    ctx.store.put(
        "orders",
        session["id"],
        {
            "session": session["id"],
            "customer": session.get("customer"),
            "email": (session.get("customer_details") or {}).get("email"),
            "client_reference_id": session.get("client_reference_id"),
            "amount_total": session.get("amount_total"),
            "currency": session.get("currency"),
            "metadata": session.get("metadata") or {},
        },
    )
    ctx.log.info("fulfilled the order of checkout session %s", session["id"])


@router.on(
    "checkout.session.completed",
    "checkout.session.async_payment_succeeded",
    "checkout.session.async_payment_failed",
    "checkout.session.expired",
)
def save_session(event: stripe.Event, ctx: Context) -> None:
    if not ctx.apply_snapshot("checkout_sessions", event):
        ctx.log.info("kept the stored session: %s %s is not newer", event.type, event.id)


@router.on("checkout.session.completed", "checkout.session.async_payment_succeeded")
def fulfil_when_paid(event: stripe.Event, ctx: Context) -> None:
    session = event.data.object.to_dict(for_json=True)
    # async_payment_succeeded carries payment_status "paid": one rule covers both events.
    status = payment_status(event, session, ctx)
    if status not in SETTLED:
        ctx.log.info("session %s is not paid yet (%s): waiting to fulfil", session["id"], status)
        return

    # Whatever the arrival order (apply_snapshot's answer does not matter here): once
    # paid, a session stays paid, and the first event that says so fulfils it. The claim
    # is marked done only after fulfil_order returned: if it raises, the claim is
    # released and the retry fulfils. Marking it first would turn a crash into a paid
    # order never delivered.
    def fulfil() -> dict[str, Any]:
        fulfil_order(session, ctx)
        return {"event_type": event.type}  # kept with the "done" record, as is the event id

    if not ctx.once_per_object("fulfilments", session["id"], fulfil):
        ctx.log.info("session %s is already fulfilled", session["id"])


def payment_status(event: stripe.Event, session: dict[str, Any], ctx: Context) -> str | None:
    """The session's payment status, also for sessions from before the field existed."""
    if "payment_status" in session:
        return str(session["payment_status"])
    if event.type == "checkout.session.async_payment_succeeded":
        return "paid"
    if ctx.stripe is not None:
        options: stripe.RequestOptions = {}
        if account := getattr(event, "account", None):
            options["stripe_account"] = account
        fetched = ctx.stripe.v1.checkout.sessions.retrieve(session["id"], options=options)
        return str(fetched.payment_status)
    ctx.log.warning(
        "session %s has no payment_status (an API version before 2020-09) and %s holds no "
        "Stripe API key of its mode to fetch it: not fulfilled. Fulfil it by hand if it was "
        "paid.",
        session["id"],
        ctx.stripe_setting,
    )
    return None


@router.on("checkout.session.async_payment_failed")
def record_failed_payment(event: stripe.Event, ctx: Context) -> None:
    # The session stays "complete" and "unpaid", like one still waiting to settle; this
    # record tells them apart (and is where to ask the customer for another way to pay).
    session = event.data.object.to_dict(for_json=True)
    failure = {
        "session": session["id"],
        "customer": session.get("customer"),
        "payment_intent": session.get("payment_intent"),
        "event_id": event.id,
    }
    ctx.keep_if_newer("checkout_payment_failures", session["id"], failure, event)
    ctx.log.warning("the payment of checkout session %s failed", session["id"])
