"""Conditions on a stored item, written once and checked by each store its own way.

A conditional write states what the stored item must be for the write to happen. The
SQLite store checks it in Python inside its write transaction (`holds`); the DynamoDB
store sends it as a ConditionExpression (dynamodb.py compiles it). Both stores thus apply
the same rules: the claim rule and the order rule are each defined once, in claims.py
and state.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

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
    """The stored item's `field` is `op` (=, <, <=) `value`."""

    field: str
    op: str
    value: Value


@dataclass(frozen=True)
class AnyOf:
    conditions: tuple[Condition, ...]


@dataclass(frozen=True)
class AllOf:
    conditions: tuple[Condition, ...]


Condition = Absent | Missing | Compare | AnyOf | AllOf


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
    if stored is None or condition.field not in stored:
        return False  # as DynamoDB compares a missing attribute: never true
    value = stored[condition.field]
    if type(value) is not type(condition.value) and not all(
        isinstance(v, int | float) for v in (value, condition.value)
    ):
        return False
    if condition.op == "=":
        return bool(value == condition.value)
    if condition.op == "<":
        return bool(value < condition.value)
    return bool(value <= condition.value)
