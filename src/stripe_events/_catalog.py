"""Every event type Stripe documents, as the installed stripe package knows them:
snapshot types (`invoice.paid`) and thin types, named after their API version
(`v1.billing.meter.no_meter_found`). Routers check their names at import, in every
function; the webhook's would otherwise never import stripe, which costs more than the
rest of its cold start. So the lists come from data/event_types.json (`make catalog`),
or from the package when another version of it is installed.
"""

from __future__ import annotations

import difflib
import importlib.util
import json
import re
import typing
from collections import defaultdict
from functools import cache
from pathlib import Path
from typing import Any

from stripe_events._errors import UnknownEventType

WILDCARD = "*"
THIN_PREFIX = re.compile(r"v\d+\.")
DATA = Path(__file__).parent / "data" / "event_types.json"


@cache
def _catalog() -> dict[str, Any]:
    data: dict[str, Any] = json.loads(DATA.read_text(encoding="utf-8"))
    if data["stripe_version"] == installed_stripe_version():
        return data
    return from_package()


def installed_stripe_version() -> str:
    """The version of the installed stripe package, read without importing it."""
    spec = importlib.util.find_spec("stripe")
    if spec is None or spec.origin is None:
        raise ModuleNotFoundError("the stripe package is not installed")
    text = (Path(spec.origin).parent / "_version.py").read_text(encoding="utf-8")
    found = re.search(r"^VERSION\s*=\s*[\"']([^\"']+)[\"']", text, flags=re.M)
    return found[1] if found else ""


def from_package() -> dict[str, Any]:
    """The catalog, from the stripe package itself (what `make catalog` writes)."""
    import stripe
    import stripe.events

    names = [ref.__forward_arg__ for ref in typing.get_args(stripe.events.ALL_EVENT_NOTIFICATIONS)]
    classes = [getattr(stripe.events, name) for name in names]
    return {
        "stripe_version": stripe.VERSION,
        "snapshot": sorted(typing.get_args(stripe.Event.__annotations__["type"])),
        "thin": sorted(c.LOOKUP_TYPE for c in classes if c.LOOKUP_TYPE),
    }


def write_data(path: Path = DATA) -> None:
    path.write_text(json.dumps(from_package(), indent=1) + "\n", encoding="utf-8")


def stripe_version() -> str:
    return str(_catalog()["stripe_version"])


@cache
def event_types() -> tuple[str, ...]:
    """The snapshot event types."""
    return tuple(_catalog()["snapshot"])


@cache
def thin_event_types() -> tuple[str, ...]:
    """The thin event types: those the package has a typed notification class for."""
    return tuple(_catalog()["thin"])


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
        f"{name!r} is not an event type Stripe documents (stripe {stripe_version()}).{hint} "
        "Run `stripe-events catalog` for the full list."
    )
