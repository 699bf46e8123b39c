"""EventBridge pattern matching for the local bus.

It covers what Router.pattern generates (exact strings and `prefix`), plus nested
fields, and refuses any other operator loudly rather than guessing. The tests check
it against moto's own, independent matcher for every event type in the catalog.
"""

from __future__ import annotations

from typing import Any


def _value_matches(candidate: Any, value: Any) -> bool:
    if isinstance(candidate, dict):
        (operator, argument), *rest = candidate.items()
        if rest or operator != "prefix":
            raise NotImplementedError(f"the local bus does not support the pattern {candidate}")
        return isinstance(value, str) and value.startswith(argument)
    return bool(candidate == value)


def matches(pattern: dict[str, Any], event: dict[str, Any]) -> bool:
    for key, expected in pattern.items():
        if key not in event:
            return False
        value = event[key]
        if isinstance(expected, dict):
            if not isinstance(value, dict) or not matches(expected, value):
                return False
            continue
        values = value if isinstance(value, list) else [value]
        if not any(_value_matches(c, v) for c in expected for v in values):
            return False
    return True
