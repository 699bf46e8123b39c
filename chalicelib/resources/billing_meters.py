"""Billing meters: raise the alarm when usage reported to a meter is refused.

Stripe reports refused meter events (`POST /v1/billing/meter_events` or its v2 stream)
with thin events only: `v1.billing.meter.error_report_triggered` for a meter's errors
(an unknown customer, an invalid value, …), and `v1.billing.meter.no_meter_found` for
usage sent to an event name no meter listens to. Either way that usage is not billed.

The notification names only the meter, so the handler fetches the event, whose data
holds the errors, and sends one "meter_errors" notification per event: the meter, each
error code with its count, and Stripe's sample errors (each with the request id to
look for in your logs). It needs STRIPE_API_KEY to fetch; without it, the notification
says so and carries what the notification itself gives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from stripe_events import Context, Router

if TYPE_CHECKING:  # for annotations only: the webhook function imports this module too
    from stripe.events import (
        V1BillingMeterErrorReportTriggeredEventNotification,
        V1BillingMeterNoMeterFoundEventNotification,
    )

    MeterErrorNotification = (
        V1BillingMeterErrorReportTriggeredEventNotification
        | V1BillingMeterNoMeterFoundEventNotification
    )

router = Router("billing_meters")


@router.on("v1.billing.meter.error_report_triggered", "v1.billing.meter.no_meter_found")
def alert_meter_errors(notification: MeterErrorNotification, ctx: Context) -> None:
    related = getattr(notification, "related_object", None)
    meter = related.id if related is not None else None
    message: dict[str, Any] = {"event": notification.id, "type": notification.type, "meter": meter}
    if ctx.stripe is None:
        missing = f"no Stripe API key of this event's mode in {ctx.stripe_setting}"
        ctx.log.warning("%s: %s to fetch the errors with", notification.id, missing)
        message["errors"] = None
        message["summary"] = f"{missing}: see the event in the Dashboard"
    else:
        data = notification.fetch_event().data
        message["summary"] = data.developer_message_summary
        message["window"] = [data.validation_start, data.validation_end]
        message["errors"] = [
            {
                "code": error_type.code,
                "count": error_type.error_count,
                "samples": [
                    {"message": sample.error_message, "request": sample.request.identifier}
                    for sample in error_type.sample_errors
                ],
            }
            for error_type in data.reason.error_types
        ]
    where = f"meter {meter}" if meter else "no meter"
    ctx.notify("meter_errors", f"Usage refused ({where}): {notification.type}", message)
