"""Every event type Stripe documents, read from the installed stripe package.

The package's `Event.type` is a Literal of all v1 event types of the API version it
pins; upgrading `stripe` updates the catalog.
"""

from __future__ import annotations

import difflib
import fnmatch
import typing
from collections import defaultdict
from functools import cache

import stripe

from stripe_events.errors import UnknownEventType

WILDCARD = "*"


@cache
def event_types() -> tuple[str, ...]:
    return tuple(sorted(typing.get_args(stripe.Event.__annotations__["type"])))


def resource_of(event_type: str) -> str:
    """What an event type is about: `customer.subscription.updated` -> `customer.subscription`."""
    return event_type.rpartition(".")[0]


def by_resource() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for event_type in event_types():
        groups[resource_of(event_type)].append(event_type)
    return dict(groups)


def expand(name: str) -> list[str]:
    """The catalog types that `name` means: itself, or all that a `prefix.*` covers."""
    if name.endswith("." + WILDCARD) or name == WILDCARD:
        matched = fnmatch.filter(event_types(), name)
        if matched:
            return matched
        prefixes = sorted({resource_of(t) + ".*" for t in event_types()})
        close = difflib.get_close_matches(name, prefixes, n=5, cutoff=0.6)
    else:
        if name in event_types():
            return [name]
        close = difflib.get_close_matches(name, event_types(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownEventType(
        f"{name!r} is not an event type Stripe documents (stripe {stripe.VERSION}).{hint} "
        "Run `stripe-events catalog` for the full list."
    )
