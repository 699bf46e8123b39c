"""Our verification against the stripe library's own signatures and verdicts."""

from __future__ import annotations

import time

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from stripe_events.errors import Rejected
from stripe_events.signature import parse_header, verify

# Settings drop blank secrets, as stripe refuses them; real ones start with whsec_.
secrets = st.text(st.characters(codec="ascii", exclude_categories=["Cc"]), max_size=40).map(
    lambda s: "whsec_" + s
)
payloads = st.text(max_size=300)


def stripe_accepts(payload: str, header: str, secret: str, tolerance: int) -> bool:
    try:
        stripe.WebhookSignature.verify_header(payload, header, secret, tolerance)
    except stripe.SignatureVerificationError:
        return False
    return True


def ours_accepts(payload: str, header: str, secret: str, tolerance: int, now: float) -> bool:
    try:
        verify(payload.encode(), header, [secret], tolerance, now)
    except Rejected:
        return False
    return True


@settings(max_examples=300, deadline=None)
@given(
    payload=payloads,
    signing_secret=secrets,
    checking_secret=secrets,
    # stripe reads its own clock: keep clear of the boundary, where a second apart matters.
    age=st.integers(min_value=0, max_value=600).filter(lambda a: abs(a - 300) > 2),
    tamper=st.booleans(),
)
def test_same_verdict_as_stripe_for_past_timestamps(
    payload: str, signing_secret: str, checking_secret: str, age: int, tamper: bool
) -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header(payload, signing_secret, now - age)
    received = payload + "x" if tamper else payload
    assert ours_accepts(received, header, checking_secret, 300, now) == stripe_accepts(
        received, header, checking_secret, 300
    )


def test_stripe_checks_no_future_bound_but_we_do() -> None:
    now = int(time.time())
    header = stripe.WebhookSignature.generate_signature_header("{}", "whsec_x", now + 3600)
    assert stripe_accepts("{}", header, "whsec_x", 300)
    with pytest.raises(Rejected) as caught:
        verify(b"{}", header, ["whsec_x"], 300, now)
    assert caught.value.code == "future_timestamp"


@given(st.text(max_size=200))
def test_any_header_is_parsed_or_rejected_with_400(header: str) -> None:
    try:
        parse_header(header)
    except Rejected as rejected:
        assert rejected.status == 400


def test_non_ascii_signatures_never_match_and_never_crash() -> None:
    now = int(time.time())
    with pytest.raises(Rejected) as caught:
        verify(b"{}", f"t={now},v1=é{'a' * 63}", ["whsec_x"], 300, now)
    assert caught.value.code == "malformed_signature"


def test_messages_never_contain_the_secret() -> None:
    now = int(time.time())
    secret = "whsec_very_secret_value"
    for header in (None, "t=1", f"t={now},v1=00", f"t={now - 999},v1=00", f"t={now + 999},v1=00"):
        with pytest.raises(Rejected) as caught:
            verify(b"{}", header, [secret], 300, now)
        assert secret not in caught.value.message
