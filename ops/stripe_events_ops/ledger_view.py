"""How the commands show a ledger entry: what it is about, its handlers, its body."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

from stripe_events._envelope import THIN_OBJECT
from stripe_events._ledger import LedgerEntry
from stripe_events._payloads import PAYLOAD_KEY


def _body(entry: LedgerEntry) -> dict[str, Any] | None:
    if entry.body is None:
        return None
    try:
        data = json.loads(entry.body)
    except ValueError:
        return None
    return data if isinstance(data, dict) else None


def _id(value: Any) -> str | None:
    """An id, whether the field holds it or the expanded object does."""
    if isinstance(value, dict):
        value = value.get("id")
    return value if isinstance(value, str) else None


def about(entry: LedgerEntry) -> tuple[str | None, str | None]:
    """(object id, customer id) of the event, from its body; None where it does not say
    (published but never received, a thin event's customer, an oversized body's)."""
    data = _body(entry)
    if data is None or PAYLOAD_KEY in data:
        return None, None
    if data.get("object") == THIN_OBJECT:
        return _id(data.get("related_object")), None
    obj = (data.get("data") or {}).get("object") or {}
    if not isinstance(obj, dict):
        return None, None
    customer = _id(obj.get("id")) if obj.get("object") == "customer" else _id(obj.get("customer"))
    return _id(obj.get("id")), customer


def as_json(entry: LedgerEntry, *, body: bool = False) -> dict[str, Any]:
    object_id, customer = about(entry)
    shown: dict[str, Any] = {
        "id": entry.id,
        "type": entry.type,
        "object": object_id,
        "customer": customer,
        "created": entry.created,
        "published_at": entry.published_at,
        "received_at": entry.received_at,
        "handlers": {name: o.status for name, o in entry.handlers.items()},
        "outcomes": {
            name: {"status": o.status, "attempts": o.attempts, "at": o.at}
            | ({"type": o.error_type, "message": o.error} if o.status == "error" else {})
            for name, o in entry.handlers.items()
        },
        "errors": {
            name: {"type": o.error_type, "message": o.error, "attempts": o.attempts, "at": o.at}
            for name, o in entry.failing.items()
        },
        "stalled": entry.waiting,
    }
    if body:
        shown["body"] = _body(entry) if entry.body is not None else None
    return shown


def summary_line(entry: LedgerEntry) -> str:
    object_id, customer = about(entry)
    parts = [entry.seen_at, entry.id, entry.type, object_id or "-"]
    if customer and customer != object_id:
        parts.append(f"customer {customer}")
    if entry.published_at is not None:
        parts.append(f"published {entry.published_at}")
    return "  ".join(parts)


def handler_lines(entry: LedgerEntry) -> list[str]:
    lines = []
    for name, o in entry.handlers.items():
        detail = f"  {o.error_type}: {o.error} (at {o.at})" if o.status == "error" else ""
        lines.append(f"{name}: {o.status} (attempts {o.attempts}){detail}")
    for run in entry.stalled:
        undone = [name for name in run.handlers if name not in entry.handlers]
        if undone:
            ended = datetime.fromtimestamp(run.lease_until, UTC).isoformat(timespec="seconds")
            lines.append(
                f"{', '.join(undone)}: stalled (the {run.router} function's run ended "
                f"without finishing; its lease ended {ended})"
            )
    return lines or ["(no handler has run for it)"]


def detail_lines(entry: LedgerEntry) -> list[str]:
    """Everything the ledger has of one event, for `ledger EVENT_ID`."""
    object_id, customer = about(entry)
    created = datetime.fromtimestamp(entry.created, UTC).isoformat()
    lines = [
        f"{entry.id}  {entry.type}",
        f"  object     {object_id or '-'}" + (f"  customer {customer}" if customer else ""),
        f"  created    {created}",
        f"  published  {entry.published_at or '-'}",
        f"  received   {entry.received_at or '- (no function has received it)'}",
        "  handlers",
        *(f"    {line}" for line in handler_lines(entry)),
    ]
    data = _body(entry)
    if data is None:
        lines.append("  body       - (not in the ledger: `replay` fetches it from Stripe)")
    else:
        lines += ["  body", *(f"    {line}" for line in json.dumps(data, indent=2).splitlines())]
    return lines
