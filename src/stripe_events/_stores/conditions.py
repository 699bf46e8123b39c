"""Conditions on a stored item, written once and checked by each store its own way.

SQLite checks them in Python inside its write transaction (`holds`); DynamoDB sends them
as a ConditionExpression (dynamodb.py compiles them). So the claim rule (claims.py) and
the order rule (state.py) are each defined once, for both stores.
"""

from __future__ import annotations

import operator
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

Value = str | float


@dataclass(frozen=True)
class Absent:
    """Nothing is stored under the key."""


@dataclass(frozen=True)
class Missing:
    """The stored item has no `field` (true too when nothing is stored)."""

    field: str


@dataclass(frozen=True)
class Compare:
    """The stored item's `field` is `op` `value`."""

    field: str
    op: Literal["=", "<", "<="]
    value: Value


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]


Condition = Absent | Missing | Compare | AnyOf | AllOf
OPERATORS = {"=": operator.eq, "<": operator.lt, "<=": operator.le}


def equals(field: str, value: Value) -> Compare:
    return Compare(field, "=", value)


def below(field: str, value: Value) -> Compare:
    return Compare(field, "<", value)


def at_most(field: str, value: Value) -> Compare:
    return Compare(field, "<=", value)


def holds(condition: Condition, stored: Mapping[str, Any] | None) -> bool:
    """Whether `condition` holds for `stored` (None: nothing is stored)."""
    if isinstance(condition, Absent):
        return stored is None
    if isinstance(condition, Missing):
        return stored is None or condition.field not in stored
    if isinstance(condition, AnyOf):
        return any(holds(c, stored) for c in condition.conditions)
    if isinstance(condition, AllOf):
        return all(holds(c, stored) for c in condition.conditions)
    # As DynamoDB compares a missing attribute, or values of different types: never true.
    if stored is None or condition.field not in stored:
        return False
    value = stored[condition.field]
    numbers = all(isinstance(v, int | float) for v in (value, condition.value))
    if type(value) is not type(condition.value) and not numbers:
        return False
    return bool(OPERATORS[condition.op](value, condition.value))
