"""Realistic Stripe events, built from Stripe's own example object for each resource.

`data/stripe-fixtures3.json` is Stripe's published example of every API object (from
its OpenAPI repository, MIT licence beside it). Used by the test kit (`testing.py`),
`stripe-events send`, the tests and the benchmark; never by the Lambda functions.
"""

from __future__ import annotations

import copy
import inspect
import json
import secrets
import time
from datetime import UTC, datetime
from functools import cache
from pathlib import Path
from typing import Any

import stripe_events._catalog as catalog

FIXTURES = Path(__file__).resolve().parent / "data" / "stripe-fixtures3.json"
API_VERSION = "2025-01-27.acacia"


@cache
def example_objects() -> dict[str, dict[str, Any]]:
    with FIXTURES.open(encoding="utf-8") as f:
        resources: dict[str, dict[str, Any]] = json.load(f)["resources"]
    return resources


def object_name(event_type: str) -> str | None:
    """The fixture key of the object an event type carries, if Stripe published one.

    Usually the event's resource (`invoice.paid` -> `invoice`). Nested resources carry
    their own object (`customer.subscription.updated` -> `subscription`), and a few
    are spelled with `_` in events and `.` in objects (`issuing_card` -> `issuing.card`).
    """
    resource = catalog.resource_of(event_type)
    candidates = [
        resource,
        resource.rpartition(".")[2],
        resource.replace("_", ".", 1),
        resource.replace(".", "_"),
    ]
    if resource == "customer.source":
        candidates.append("card")
    objects = example_objects()
    for name in candidates:
        if name in objects:
            return name
    return None


def new_event_id() -> str:
    return "evt_" + secrets.token_hex(12)


def sample_event(
    event_type: str,
    *,
    event_id: str | None = None,
    created: int | None = None,
    livemode: bool = False,
    changes: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A Stripe event envelope around the example object for `event_type`.

    `changes` are merged into the object, to vary it (another id, a status, …). For a
    thin type, a thin event notification, and `changes` are merged into it (`context`,
    `related_object`).
    """
    if catalog.is_thin(event_type):
        notification = sample_thin_event(event_type, event_id=event_id, created=created)
        return {**notification, "livemode": livemode, **(changes or {})}
    name = object_name(event_type)
    if name is None:  # a few resources have no published example: a minimal object
        resource = catalog.resource_of(event_type)
        obj: dict[str, Any] = {"id": f"{resource.replace('.', '_')}_example", "object": resource}
    else:
        obj = copy.deepcopy(example_objects()[name])
    obj.update(changes or {})
    if "livemode" in obj:
        obj["livemode"] = livemode
    return {
        "id": event_id or new_event_id(),
        "object": "event",
        "api_version": API_VERSION,
        "created": int(time.time()) if created is None else created,
        "data": {"object": obj},
        "livemode": livemode,
        "pending_webhooks": 1,
        "request": {"id": None, "idempotency_key": None},
        "type": event_type,
    }


def sample_thin_event(
    event_type: str, *, event_id: str | None = None, created: int | None = None
) -> dict[str, Any]:
    """A thin event notification as Stripe sends it: no data, maybe its related object.

    The related object is Stripe's example of that resource, when there is one (its type
    and URL as the API names them).
    """
    moment = datetime.fromtimestamp(int(time.time()) if created is None else created, UTC)
    notification: dict[str, Any] = {
        "id": event_id or new_event_id(),
        "object": "v2.core.event",
        "type": event_type,
        "created": moment.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "livemode": False,
    }
    related = related_object(event_type)
    if related is not None:
        notification["related_object"] = related
    return notification


def related_object(event_type: str) -> dict[str, str] | None:
    """The `related_object` of a thin type's notifications, or None if it has none.

    Its type is the object `fetch_related_object()` returns, as the SDK types it; its id
    is Stripe's example of that object, when there is one.
    """
    from stripe.events._event_classes import get_v2_event_notification_class

    notification_class = get_v2_event_notification_class(event_type)
    if "related_object" not in inspect.get_annotations(notification_class):
        return None
    returned = inspect.get_annotations(notification_class.fetch_related_object)["return"]
    version = event_type.partition(".")[0]
    name, cls = _object_class(version, str(returned))
    object_id = example_objects().get(name, {}).get("id") or f"{name.replace('.', '_')}_example"
    # A v2 name holds its version (v2.core.account -> /v2/core/accounts); a v1 one does not.
    path = name if version != "v1" else f"v1.{name}"
    base = cls.class_url() if hasattr(cls, "class_url") else f"/{path.replace('.', '/')}s"
    return {"id": object_id, "type": name, "url": f"{base}/{object_id}"}


def _object_class(version: str, class_name: str) -> tuple[str, Any]:
    """The API's name of the object class `class_name` (`Meter` -> `billing.meter`), and it."""
    from stripe._object_classes import OBJECT_CLASSES, V2_OBJECT_CLASSES, get_object_class

    mapping = OBJECT_CLASSES if version == "v1" else V2_OBJECT_CLASSES
    for name, (_, candidate) in mapping.items():
        if candidate == class_name:
            return name, get_object_class("V1" if version == "v1" else "V2", name)
    raise ValueError(f"no {version} object class {class_name!r} in the stripe package")


# What Stripe's Events API returns as `data` for a few thin types (the notification itself
# carries none): enough to exercise the handlers that read it.
THIN_EVENT_DATA: dict[str, dict[str, Any]] = {
    "v1.billing.meter.error_report_triggered": {
        "developer_message_summary": "There is 1 invalid event",
        "reason": {
            "error_count": 1,
            "error_types": [
                {
                    "code": "meter_event_customer_not_found",
                    "error_count": 1,
                    "sample_errors": [
                        {
                            "error_message": "No customer with id cus_gone was found.",
                            "request": {"identifier": "req_meter_event_1"},
                        }
                    ],
                }
            ],
        },
        "validation_start": "2026-01-31T12:00:00.000Z",
        "validation_end": "2026-01-31T12:01:00.000Z",
    },
}
THIN_EVENT_DATA["v1.billing.meter.no_meter_found"] = {
    **THIN_EVENT_DATA["v1.billing.meter.error_report_triggered"],
    "reason": {
        "error_count": 2,
        "error_types": [
            {
                "code": "no_meter",
                "error_count": 2,
                "sample_errors": [
                    {
                        "error_message": "No active meter was found for event_name api_calls.",
                        "request": {"identifier": "req_meter_event_2"},
                    }
                ],
            }
        ],
    },
}


def thin_event(notification: dict[str, Any]) -> dict[str, Any]:
    """The event as Stripe's Events API (GET /v2/core/events/{id}) returns it."""
    return {
        **notification,
        "context": notification.get("context"),
        "data": THIN_EVENT_DATA.get(notification["type"], {}),
    }


def encode(event: dict[str, Any]) -> bytes:
    """The body as Stripe sends it: pretty-printed JSON."""
    return json.dumps(event, indent=2).encode()
