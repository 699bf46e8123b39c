"""stripe-events: Stripe webhooks -> EventBridge -> one Lambda function per Stripe resource.

Each resource module gets its own function here, in app.py, because Chalice names the
Lambda handler `app.<function name>`: a function registered from elsewhere in a loop
would not be found when it runs in Lambda.
"""

from typing import Any

from chalice.app import Chalice, CloudWatchEvent, NotFoundError

from chalicelib.resources import (
    billing_meters,
    billing_state,
    charges,
    checkout,
    customers,
    disputes,
    invoices,
    payment_intents,
    payouts,
    subscriptions,
)
from stripe_events import StripeEvents

app = Chalice(app_name="stripe-events")
events = StripeEvents.from_env()
app.register_blueprint(events.webhook)  # POST /stripe/webhook


@app.route("/billing/customers/{customer_id}", methods=["GET"], authorizer=events.authorizer)
def billing_customer(customer_id: str) -> dict[str, Any]:
    state = billing_state.customer_state(events.store, customer_id)
    if state is None:
        raise NotFoundError(f"no billing state for customer {customer_id}")
    return state


@app.on_cw_event(customers.router.pattern(events.settings), name="customers")
def on_customer_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(customers.router, event)


@app.on_cw_event(subscriptions.router.pattern(events.settings), name="subscriptions")
def on_subscription_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(subscriptions.router, event)


@app.on_cw_event(invoices.router.pattern(events.settings), name="invoices")
def on_invoice_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(invoices.router, event)


@app.on_cw_event(payment_intents.router.pattern(events.settings), name="payment_intents")
def on_payment_intent_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(payment_intents.router, event)


@app.on_cw_event(charges.router.pattern(events.settings), name="charges")
def on_charge_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(charges.router, event)


@app.on_cw_event(disputes.router.pattern(events.settings), name="disputes")
def on_dispute_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(disputes.router, event)


@app.on_cw_event(checkout.router.pattern(events.settings), name="checkout")
def on_checkout_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(checkout.router, event)


@app.on_cw_event(payouts.router.pattern(events.settings), name="payouts")
def on_payout_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(payouts.router, event)


@app.on_cw_event(billing_meters.router.pattern(events.settings), name="billing_meters")
def on_billing_meter_event(event: CloudWatchEvent) -> dict[str, str]:
    return events.dispatch(billing_meters.router, event)
