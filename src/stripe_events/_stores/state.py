"""What handlers keep: items by collection and key, and items under a parent (a
customer's subscriptions). Functions write at the same moment, so every write that
depends on what is stored is one atomic, conditional step: the store's `_write`."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

from stripe_events._stores.conditions import AnyOf, Condition, Missing, Value, at_most

ORDER = "order_key"


def not_older(order: str) -> Condition:
    """The order rule: the stored item is no newer than `order` (an item `put` wrote has
    no order, and counts as oldest). An equal order is the same version again."""
    return AnyOf((Missing(ORDER), at_most(ORDER, order)))


def check_collection(name: str) -> str:
    """Collection names are plain words: the DynamoDB key is `<collection>#<key>`."""
    if not name or "#" in name:
        raise ValueError(f"a collection name must be non-empty and without '#': {name!r}")
    return name


class State(ABC):
    @abstractmethod
    def get(self, collection: str, key: str) -> dict[str, Any] | None: ...

    @abstractmethod
    def children(self, collection: str, parent: str) -> dict[str, dict[str, Any]]:
        """Every item under `parent`, by key, in key order."""

    @abstractmethod
    def _write(
        self,
        collection: str,
        key: str,
        item: dict[str, Any],
        *,
        parent: str | None = None,
        fields: Mapping[str, Value] | None = None,
        condition: Condition | None = None,
    ) -> bool:
        """Store `item` (with `fields`, which conditions read) if `condition` holds for
        what is stored, in one atomic step; whether it was written."""

    @abstractmethod
    def _delete(self, collection: str, key: str, condition: Condition) -> bool:
        """Delete the item if `condition` holds for it, in one atomic step."""

    def put(self, collection: str, key: str, item: dict[str, Any]) -> None:
        """Create or replace one item, whatever is stored (last write wins)."""
        self._write(check_collection(collection), key, item)

    def put_if_newer(self, collection: str, key: str, item: dict[str, Any], order: str) -> bool:
        """Write the item unless the stored one has a greater `order` (orders compare as
        strings), in one atomic step. False means "not newer": nothing to retry."""
        fields, condition = {ORDER: order}, not_older(order)
        return self._write(
            check_collection(collection), key, item, fields=fields, condition=condition
        )

    def put_child_if_newer(
        self, collection: str, parent: str, key: str, item: dict[str, Any], order: str
    ) -> bool:
        """`put_if_newer` for one item under `parent`, e.g. a subscription under its customer."""
        fields, condition = {ORDER: order}, not_older(order)
        name = check_collection(collection)
        return self._write(name, key, item, parent=parent, fields=fields, condition=condition)
