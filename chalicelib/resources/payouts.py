"""Payouts: keep each payout to your bank account, and raise the alarm when one fails.

A failed payout means the money is back in your Stripe balance and your bank details
probably need fixing (`failure_code`, e.g. "account_closed"). It can fail after it was
paid, when the bank returns it days later: every `payout.failed` event alerts, once.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from stripe_events import Context, Router

if TYPE_CHECKING:
    import stripe

router = Router("payouts")


@router.on("payout.paid", "payout.failed")
def save_payout(event: stripe.Event, ctx: Context) -> None:
    if not ctx.apply_snapshot("payouts", event):
        ctx.log.info("kept the stored payout: %s %s is not newer", event.type, event.id)


@router.on("payout.failed")
def alert_failed_payout(event: stripe.Event, ctx: Context) -> None:
    # Not tied to apply_snapshot's answer: a failure that arrives late is still news.
    payout = event.data.object.to_dict(for_json=True)
    ctx.notify(
        "payout_failed",
        f"Payout {payout['id']} failed: {payout.get('failure_code')}",
        {
            "payout": payout["id"],
            "amount": payout.get("amount"),  # in the currency's smallest unit, as Stripe gives it
            "currency": payout.get("currency"),
            "arrival_date": payout.get("arrival_date"),
            "failure_code": payout.get("failure_code"),
            "failure_message": payout.get("failure_message"),
            "destination": payout.get("destination"),
        },
    )
