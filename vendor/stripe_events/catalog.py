"""Every event type Stripe documents, read from the installed stripe package.

Two kinds, told apart by their names:

- snapshot events (`invoice.paid`): the package's `Event.type` is a Literal of every v1
  event type of the API version it pins;
- thin event notifications (`v1.billing.meter.error_report_triggered`,
  `v2.core.account.updated`): the package has one typed `…EventNotification` class per
  type (stripe.events). Their names always start with the API version, `v1.` or `v2.`.

Upgrading `stripe` updates the catalog.
"""

from __future__ import annotations

import difflib
import re
import typing
from collections import defaultdict
from functools import cache

import stripe

from stripe_events.errors import UnknownEventType

WILDCARD = "*"
THIN_PREFIX = re.compile(r"v\d+\.")


@cache
def event_types() -> tuple[str, ...]:
    """The snapshot event types."""
    return tuple(sorted(typing.get_args(stripe.Event.__annotations__["type"])))


@cache
def thin_event_types() -> tuple[str, ...]:
    """The thin event types: those the package has a typed notification class for.

    Read from the package's lookup table, which imports no class (a test checks it
    against the classes of stripe.events.ALL_EVENT_NOTIFICATIONS).
    """
    from stripe.events._event_classes import _V2_EVENT_NOTIFICATION_CLASS_LOOKUP

    return tuple(sorted(_V2_EVENT_NOTIFICATION_CLASS_LOOKUP))


def is_thin(name: str) -> bool:
    """Whether an event type, or a pattern, names thin event notifications."""
    return bool(THIN_PREFIX.match(name))


def all_event_types() -> tuple[str, ...]:
    return event_types() + thin_event_types()


def resource_of(event_type: str) -> str:
    """What an event type is about: `customer.subscription.updated` -> `customer.subscription`."""
    return event_type.rpartition(".")[0]


def by_resource() -> dict[str, list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for event_type in all_event_types():
        groups[resource_of(event_type)].append(event_type)
    return dict(groups)


def covers(pattern: str, event_type: str) -> bool:
    """Whether a name (`invoice.paid`) or a pattern (`invoice.*`, `*`) covers the type.

    Plain prefixes, not globs: thin types hold brackets, such as
    `v2.core.account[configuration.customer].updated`.
    """
    if pattern == WILDCARD:
        return True
    if pattern.endswith("." + WILDCARD):
        return event_type.startswith(pattern[:-1])
    return event_type == pattern


def expand(name: str) -> list[str]:
    """The catalog types that `name` means: itself, or all that a `prefix.*` covers.

    `*` alone means every snapshot type; thin types are named by their own prefix
    (`v1.billing.meter.*`), since their handlers receive another kind of object.
    """
    known = thin_event_types() if is_thin(name) else event_types()
    if name.endswith("." + WILDCARD) or name == WILDCARD:
        matched = [t for t in known if covers(name, t)]
        if matched:
            return matched
        prefixes = sorted({resource_of(t) + ".*" for t in all_event_types()})
        close = difflib.get_close_matches(name, prefixes, n=5, cutoff=0.6)
    else:
        if name in known:
            return [name]
        close = difflib.get_close_matches(name, all_event_types(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else ""
    raise UnknownEventType(
        f"{name!r} is not an event type Stripe documents (stripe {stripe.VERSION}).{hint} "
        "Run `stripe-events catalog` for the full list."
    )
