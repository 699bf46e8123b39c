"""Stripe-Signature verification over the raw body bytes. By hand, because
stripe.WebhookSignature checks one secret only (rotation needs several), lets future
timestamps through and wants `str`; tested against the library's own signatures."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Sequence

from stripe_events._errors import Rejected

SCHEME = "v1"
# A header longer than this is not one Stripe sent; refuse it before doing any work on it.
MAX_HEADER_CHARS = 8192
MAX_TIMESTAMP_DIGITS = 15


def _bad(code: str, message: str) -> Rejected:
    return Rejected(400, code, message)


def parse_header(header: str | None) -> tuple[int, list[str]]:
    """Return the timestamp and the v1 signatures of a Stripe-Signature header."""
    if not header:
        raise _bad("missing_signature", "The Stripe-Signature header is missing.")
    if len(header) > MAX_HEADER_CHARS:
        raise _bad("malformed_signature", "The Stripe-Signature header is too long.")
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, sep, value = item.strip().partition("=")
        if not sep:
            continue
        if key == "t":
            # Seconds since 1970 have 10 digits; a huge one would overflow the arithmetic.
            if not value.isascii() or not value.isdigit() or len(value) > MAX_TIMESTAMP_DIGITS:
                raise _bad(
                    "malformed_signature",
                    "The Stripe-Signature header's timestamp t= is not a whole number.",
                )
            timestamp = int(value)
        elif key == SCHEME and value.isascii():
            # A non-ASCII value can never be a hex digest, and compare_digest refuses it.
            signatures.append(value)
    if timestamp is None:
        raise _bad("malformed_signature", "The Stripe-Signature header has no timestamp (t=...).")
    if not signatures:
        raise _bad(
            "malformed_signature",
            "The Stripe-Signature header has no v1 signature (v1=...).",
        )
    return timestamp, signatures


def expected_signature(payload: bytes, timestamp: int, secret: str) -> str:
    mac = hmac.new(secret.encode(), b"%d." % timestamp, hashlib.sha256)
    mac.update(payload)
    return mac.hexdigest()


def verify(
    payload: bytes,
    header: str | None,
    secrets: Sequence[str],
    tolerance_seconds: int,
    now: float,
    secret_setting: str = "STRIPE_WEBHOOK_SECRET",
) -> int:
    """Check the header against every secret; return the signed timestamp.

    Raises Rejected when the header is missing or malformed, when the timestamp is
    more than `tolerance_seconds` in the past or in the future, or when no v1
    signature matches any secret. `secret_setting` is where the secrets come from, as
    the mismatch's message names it.
    """
    timestamp, signatures = parse_header(header)
    age = now - timestamp
    if age > tolerance_seconds:
        raise _bad(
            "stale_timestamp",
            f"The signature's timestamp is {int(age)} s old; at most {tolerance_seconds} s "
            "is accepted. Replayed or delayed requests are refused.",
        )
    if -age > tolerance_seconds:
        raise _bad(
            "future_timestamp",
            f"The signature's timestamp is {int(-age)} s in the future; at most "
            f"{tolerance_seconds} s is accepted. Check the sender's clock.",
        )
    for secret in secrets:
        expected = expected_signature(payload, timestamp, secret)
        if any(hmac.compare_digest(expected, candidate) for candidate in signatures):
            return timestamp
    raise _bad(
        "signature_mismatch",
        "No v1 signature matches the configured signing secret(s). Check that "
        f"{secret_setting} holds this endpoint's secret, and that the body was "
        "not changed on the way.",
    )
