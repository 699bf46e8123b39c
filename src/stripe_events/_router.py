"""Which handlers of a resource module run for which event types. A handler takes
snapshot events (a typed `stripe.Event`) or thin ones (the SDK's typed notification),
not both; every name is checked against the catalog at import, with suggestions."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import stripe_events._catalog as catalog
from stripe_events._settings import PARTNER_SOURCE_PREFIX

if TYPE_CHECKING:
    from stripe_events._context import Context
    from stripe_events._settings import Settings

# The first argument is a stripe.Event, or a thin event's typed EventNotification.
HandlerFunc = Callable[[Any, "Context"], None]


@dataclass(frozen=True)
class Handler:
    name: str  # "<router>.<function>": the key of its outcomes in the ledger
    patterns: tuple[str, ...]
    func: HandlerFunc
    thin: bool = False  # it takes thin event notifications

    def matches(self, event_type: str) -> bool:
        return catalog.is_thin(event_type) == self.thin and any(
            catalog.covers(p, event_type) for p in self.patterns
        )


class Router:
    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: list[Handler] = []

    def on(self, *names: str) -> Callable[[HandlerFunc], HandlerFunc]:
        """Register the decorated function for these event types or `prefix.*` patterns."""
        if not names:
            raise TypeError("Router.on() needs at least one event type")
        for name in names:
            catalog.expand(name)  # raises UnknownEventType with suggestions
        kinds = {catalog.is_thin(name) for name in names}
        if len(kinds) > 1:
            raise TypeError(
                f"Router.on{names!r} mixes snapshot and thin event types: their handlers "
                "receive different objects (a stripe.Event, an EventNotification); use two"
            )

        def register(func: HandlerFunc) -> HandlerFunc:
            handler_name = f"{self.name}.{func.__name__}"
            if any(h.name == handler_name for h in self.handlers):
                raise ValueError(f"{handler_name} is registered twice")
            self.handlers.append(Handler(handler_name, names, func, thin=kinds == {True}))
            return func

        return register

    def handlers_for(self, event_type: str) -> list[Handler]:
        return [h for h in self.handlers if h.matches(event_type)]

    @property
    def patterns(self) -> list[str]:
        return sorted({p for h in self.handlers for p in h.patterns})

    def event_types(self) -> list[str]:
        """Every catalog type this router handles, wildcards expanded."""
        return sorted({t for p in self.patterns for t in catalog.expand(p)})

    def pattern(self, settings: Settings) -> RulePattern:
        """The EventBridge pattern for this router's types, from us or from Stripe directly."""
        if not self.handlers:
            raise ValueError(f"router {self.name!r} has no handlers")
        pattern = RulePattern(self)
        pattern["source"] = [settings.source, {"prefix": PARTNER_SOURCE_PREFIX}]
        if catalog.WILDCARD not in self.patterns:
            detail_types: list[Any] = []
            for name in self.patterns:
                if name.endswith("." + catalog.WILDCARD):
                    detail_types.append({"prefix": name[:-1]})
                else:
                    detail_types.append(name)
            pattern["detail-type"] = detail_types
        return pattern


class RulePattern(dict[str, Any]):
    """An event pattern, as `@app.on_cw_event` takes it, that knows its router: Chalice
    keeps the object it is given, so the operator's tooling can tell which handlers each
    function runs (an alarm per handler) from the loaded app alone."""

    def __init__(self, router: Router) -> None:
        super().__init__()
        self.router = router
