"""Realistic Stripe events, built from Stripe's own example object for each resource.

`data/stripe-fixtures3.json` is Stripe's published example of every API object (from
its OpenAPI repository, MIT licence beside it). Used by the test kit (`testing.py`),
`stripe-events send`, the tests and the benchmark; never by the Lambda functions.
"""

from __future__ import annotations

import copy
import json
import secrets
import time
from functools import cache
from pathlib import Path
from typing import Any

import stripe_events.catalog as catalog

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

    `changes` are merged into the object, to vary it (another id, a status, …).
    """
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


def encode(event: dict[str, Any]) -> bytes:
    """The body as Stripe sends it: pretty-printed JSON."""
    return json.dumps(event, indent=2).encode()
