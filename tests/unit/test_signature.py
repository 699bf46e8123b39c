"""Our verification against the stripe library's own signatures and verdicts."""

from __future__ import annotations

import time

import pytest
import stripe
from hypothesis import given, settings
from hypothesis import strategies as st

from stripe_events._errors import Rejected
from stripe_events._signature import parse_header, verify

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
        timestamp, signatures = parse_header(header)
    except Rejected as rejected:
        assert rejected.status == 400
        return
    # Accepted: what it returns is in the header, as the items Stripe writes.
    items = [item.strip() for item in header.split(",")]
    assert any(item.startswith("t=") and int(item[2:]) == timestamp for item in items)
    assert signatures and all(f"v1={signature}" in items for signature in signatures)


digests = st.text("0123456789abcdef", min_size=1, max_size=64)


@given(
    timestamp=st.integers(min_value=0, max_value=10**15 - 1),
    signatures=st.lists(digests, min_size=1, max_size=3),
    others=st.lists(st.tuples(st.sampled_from(["v0", "x", "scheme"]), digests), max_size=3),
    spaces=st.sampled_from(["", " "]),
    data=st.data(),
)
def test_a_header_as_stripe_writes_it_gives_its_timestamp_and_v1_signatures(
    timestamp: int,
    signatures: list[str],
    others: list[tuple[str, str]],
    spaces: str,
    data: st.DataObject,
) -> None:
    items = [f"t={timestamp}", *(f"v1={s}" for s in signatures), *(f"{k}={v}" for k, v in others)]
    header = ("," + spaces).join(data.draw(st.permutations(items)))
    parsed, found = parse_header(header)
    assert (parsed, sorted(found)) == (timestamp, sorted(signatures))


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


T = 1_767_225_600


def signed(timestamp: int, secret: str = "whsec_x") -> str:
    return str(stripe.WebhookSignature.generate_signature_header("{}", secret, timestamp))


@pytest.mark.parametrize(
    ("header", "code", "message"),
    [
        (None, "missing_signature", "The Stripe-Signature header is missing."),
        ("", "missing_signature", "The Stripe-Signature header is missing."),
        (
            "t=1,v1=" + "a" * 9000,
            "malformed_signature",
            "The Stripe-Signature header is too long.",
        ),
        (
            "t=abc,v1=a",
            "malformed_signature",
            "The Stripe-Signature header's timestamp t= is not a whole number.",
        ),
        (
            "v1=abc",
            "malformed_signature",
            "The Stripe-Signature header has no timestamp (t=...).",
        ),
        (
            "t=1",
            "malformed_signature",
            "The Stripe-Signature header has no v1 signature (v1=...).",
        ),
        (
            signed(T - 301),
            "stale_timestamp",
            "The signature's timestamp is 301 s old; at most 300 s is accepted. Replayed or "
            "delayed requests are refused.",
        ),
        (
            signed(T + 301),
            "future_timestamp",
            "The signature's timestamp is 301 s in the future; at most 300 s is accepted. "
            "Check the sender's clock.",
        ),
        (
            signed(T, "whsec_other"),
            "signature_mismatch",
            "No v1 signature matches the configured signing secret(s). Check that "
            "STRIPE_WEBHOOK_SECRET holds this endpoint's secret, and that the body was not "
            "changed on the way.",
        ),
    ],
)
def test_each_refusal_says_what_is_wrong_and_what_to_check(
    header: str | None, code: str, message: str
) -> None:
    with pytest.raises(Rejected) as refused:
        verify(b"{}", header, ["whsec_x"], 300, T)
    assert (refused.value.status, refused.value.code, refused.value.message) == (400, code, message)


def test_items_without_a_value_or_with_equals_in_it_do_not_stop_the_parse() -> None:
    assert parse_header(f"junk,,x=a=b,t={T}, v1=abc ,v1=de=f") == (T, ["abc", "de=f"])
