"""EventBridge pattern matching for the local bus: what Router.pattern generates, and
nothing else (other operators are refused). Tested against moto's own matcher."""

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
