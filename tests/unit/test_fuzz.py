"""Fuzzing POST /stripe/webhook: whatever comes in, a 4xx, nothing published, no ledger row.

Two kinds of input. Unsigned or wrongly signed requests (random headers, many `v1=`
entries, wrong secrets, stale or future timestamps) with any body, real events included:
they must stop at the signature. Correctly signed bodies that are not Stripe events
(random bytes, broken, huge or deeply nested JSON, odd Unicode, envelopes with one field
wrong): they get past the signature and must stop at the body checks.

Three classes of input once crashed the webhook, and the tests at the end pin them: a
`t=` of more than 308 digits, a `created` past the year 9999, and a lone surrogate in
`type` or `id`.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.test import Client
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stripe_events._bus import Publisher
from stripe_events._envelope import Entry
from stripe_events_testing import samples
from tests.helpers import ROOT, figures_after, load_app, local_stage_env

URL = "/stripe/webhook"
SIGNATURE_ERRORS = {
    "missing_signature",
    "malformed_signature",
    "signature_mismatch",
    "stale_timestamp",
    "future_timestamp",
}
BODY_ERRORS = {"invalid_encoding", "invalid_json", "not_an_event", "too_deeply_nested"}
# The largest body accepted (STRIPE_WEBHOOK_MAX_BYTES in .chalice/config.json).
MAX_BYTES = 1024 * 1024
TOLERANCE = 300
# A few types, from different resources: the envelope checks do not depend on the type.
TYPES = ("customer.created", "invoice.payment_failed", "charge.refunded", "quote.accepted")
# JSON whitespace: anything else after a complete value makes the body invalid JSON.
JSON_SPACE = " \t\n\r"
# Characters that are easy to mishandle: NUL, bidi controls, BOM, non-characters,
# non-BMP; lone surrogates only ever reach the body escaped (\ud800) or as invalid UTF-8.
ODD = ("\x00", "\u202e", "\u200f", "\u2066", "\ufeff", "\ufffe", "\U0001f9fe", "\U0010ffff")
SURROGATES = ("\ud800", "\udfff", "\ud83d")

FUZZED: Counter[str] = Counter()  # inputs, per test
ANSWERS: Counter[str] = Counter()  # "<status> <error>", over every input


def summary() -> str:
    answers = ", ".join(f"{name}: {n}" for name, n in sorted(ANSWERS.items()))
    fuzzed = ", ".join(f"{k}: {n}" for k, n in sorted(FUZZED.items()))
    return f"test_fuzz: {sum(FUZZED.values())} inputs fuzzed ({fuzzed}); answers {answers}"


figures = figures_after(summary)


@dataclass
class RecordingPublisher(Publisher):
    entries: list[Entry] = field(default_factory=list)

    def publish(self, entry: Entry) -> None:
        self.entries.append(entry)


@dataclass
class Hook:
    module: ModuleType
    client: Client
    publisher: RecordingPublisher

    @property
    def secret(self) -> str:
        secret: str = self.module.events.settings.webhook_secrets[0]
        return secret

    def post(self, body: bytes, headers: dict[str, str]) -> tuple[int, dict[str, Any]]:
        response = self.client.http.post(URL, headers=headers, body=body)
        assert response.status_code < 500, response.body
        answer: dict[str, Any] = json.loads(response.body)
        return response.status_code, answer

    def assert_untouched(self) -> None:
        assert self.publisher.entries == []
        assert self.module.events.store.recent(1) == []


def make_hook(state_dir: Path) -> Hook:
    module = load_app({**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(state_dir)})
    publisher = RecordingPublisher()
    module.events.publisher = publisher  # instead of the LocalBus
    client = Client(module.app, stage_name="local", project_dir=str(ROOT))
    return Hook(module, client, publisher)


@pytest.fixture(scope="module")
def hook(tmp_path_factory: pytest.TempPathFactory) -> Hook:
    # One app for every example: a publish or a ledger row from any input stays visible.
    hook = make_hook(tmp_path_factory.mktemp("fuzz-state"))
    assert hook.module.events.settings.max_body_bytes == MAX_BYTES
    assert hook.module.events.settings.tolerance_seconds == TOLERANCE
    return hook


def assert_refusal(answer: dict[str, Any], codes: set[str], secret: str) -> None:
    assert set(answer) == {"error", "message"}
    assert answer["error"] in codes
    assert secret not in json.dumps(answer)


def check_refused(hook: Hook, body: bytes, headers: dict[str, str], codes: set[str]) -> None:
    """Refused with one of `codes` (or 413), never a 5xx; nothing published or recorded."""
    status, answer = hook.post(body, headers)
    ANSWERS[f"{status} {answer.get('error')}"] += 1
    if len(body) > MAX_BYTES:
        assert (status, answer["error"]) == (413, "payload_too_large")
    else:
        assert status == 400
        assert_refusal(answer, codes, hook.secret)
    hook.assert_untouched()


def hmac_hex(secret: str, timestamp: int, body: bytes) -> str:
    # Stripe's scheme, written out here rather than taken from the code under test.
    return hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


# --- Strategies -----------------------------------------------------------------------------

odd_text = st.lists(st.text(max_size=6) | st.sampled_from(ODD + SURROGATES), max_size=6).map(
    "".join
)
json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | odd_text
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(odd_text, inner, max_size=4),
    max_leaves=12,
)


@st.composite
def dumped(draw: st.DrawFn, value: Any) -> bytes:
    """`value` as JSON, in one of the ways a sender could write it."""
    indent = draw(st.sampled_from([None, 2]))
    if draw(st.booleans()):
        return json.dumps(value, indent=indent).encode()  # surrogates escaped: \ud800
    # Raw: a lone surrogate becomes bytes that are not UTF-8.
    return json.dumps(value, indent=indent, ensure_ascii=False).encode("utf-8", "surrogatepass")


def a_sample_event(draw: st.DrawFn) -> dict[str, Any]:
    return samples.sample_event(draw(st.sampled_from(TYPES)))


@st.composite
def valid_events(draw: st.DrawFn) -> bytes:
    return samples.encode(a_sample_event(draw))


def not_str(values: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return values.filter(lambda v: not isinstance(v, str))


# One way to break each field the webhook checks; None deletes the field.
BREAKS: dict[str, st.SearchStrategy[Any]] = {
    "object": st.none() | not_str(json_values) | odd_text.filter(lambda s: s != "event"),
    "id": st.none()
    | not_str(json_values)
    | odd_text.filter(lambda s: not s.startswith("evt_"))
    | odd_text.filter(lambda s: not s.isascii()).map(lambda s: "evt_" + s),
    "type": st.none()
    | not_str(json_values)
    | st.just("")
    | odd_text.filter(lambda s: not s.isascii()).map(lambda s: "customer." + s)
    | st.just("invoice." + "x" * 130),
    "created": st.none()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.integers(max_value=-1)
    | st.integers(min_value=253_402_300_800)
    | st.booleans()
    | st.text(alphabet="0123456789", min_size=1, max_size=12)
    | st.lists(st.integers(min_value=0, max_value=2**31), min_size=1, max_size=2),
}


@st.composite
def wrong_envelopes(draw: st.DrawFn) -> bytes:
    """A real event with one checked field broken, odd fields added, maybe huge or deep."""
    event = a_sample_event(draw)
    name = draw(st.sampled_from(sorted(BREAKS)))
    value = draw(BREAKS[name])
    if value is None:
        del event[name]
    else:
        event[name] = value
    extra = draw(st.dictionaries(odd_text, json_values, max_size=3))
    event.update({k: v for k, v in extra.items() if k not in BREAKS})  # keep the break
    # Huge bodies are few: each costs milliseconds, and a few cover both sides of the limit.
    shape = draw(st.sampled_from(["plain", "plain", "plain", "huge", "deep"]))
    if shape == "huge":  # both sides of the size limit
        event["padding"] = "x" * draw(
            st.integers(min_value=MAX_BYTES - 4096, max_value=MAX_BYTES + 4096)
        )
    elif shape == "deep":  # both sides of the parser's recursion limit
        # Python's parser gives up near 1000 levels, depending on the stack it starts from.
        depth = draw(
            st.integers(min_value=1, max_value=50)
            | st.integers(min_value=900, max_value=1100)
            | st.integers(min_value=1100, max_value=20_000)
        )
        text = json.dumps(event)
        return (text[:-1] + ', "data": ' + "[" * depth + "]" * depth + "}").encode()
    return draw(dumped(event))


@st.composite
def truncated_events(draw: st.DrawFn) -> bytes:
    body = draw(valid_events())
    # Without its closing brace, and possibly much more, the object is never complete.
    return body[: draw(st.integers(min_value=0, max_value=len(body) - 2))]


@st.composite
def events_with_trailing_data(draw: st.DrawFn) -> bytes:
    garbage = draw(st.text(min_size=1).filter(lambda s: s.strip(JSON_SPACE) != ""))
    return draw(valid_events()) + garbage.encode()


@st.composite
def bom_events(draw: st.DrawFn) -> bytes:
    return "\ufeff".encode() + draw(valid_events())


@st.composite
def raw_odd_strings(draw: st.DrawFn) -> bytes:
    # Raw, unescaped characters inside a JSON string (NUL and control characters are not
    # allowed there), in the one field that is then a string where a number must be.
    # No quote or backslash: they could close the string and let a valid event through.
    raw = draw(odd_text.filter(lambda s: '"' not in s and "\\" not in s))
    encoded = raw.encode("utf-8", "surrogatepass")
    return (
        b'{"object": "event", "id": "evt_fuzz", "type": "customer.created", "created": "'
        + encoded
        + b'"}'
    )


@st.composite
def deeply_nested(draw: st.DrawFn) -> bytes:
    depth = draw(st.integers(min_value=1, max_value=100_000))
    opener, closer = draw(st.sampled_from([(b"[", b"]"), (b'{"a":', b"}")]))
    middle = b"1" if opener == b'{"a":' else b""
    closed = draw(st.booleans())
    return opener * depth + middle + (closer * depth if closed else b"")


@st.composite
def huge_non_events(draw: st.DrawFn) -> bytes:
    size = draw(st.integers(min_value=MAX_BYTES - 64, max_value=MAX_BYTES + 64))
    return draw(st.sampled_from([b"[", b"{", b" ", b"\xff"])) * size


other_non_events = st.one_of(
    st.binary(max_size=2048),
    json_values.filter(lambda v: not isinstance(v, dict)).flatmap(dumped),
    truncated_events(),
    events_with_trailing_data(),
    bom_events(),
    raw_odd_strings(),
    deeply_nested(),
    huge_non_events(),
)


@st.composite
def not_events(draw: st.DrawFn) -> bytes:
    # Half are envelopes with one field wrong: past the signature, the checks that look at
    # fields are the ones with the most ways to go wrong. (`|` would flatten into 1 in 9.)
    if draw(st.booleans()):
        return draw(wrong_envelopes())
    body: bytes = draw(other_non_events)
    return body


any_bodies = not_events() | valid_events()

hex64 = st.text(alphabet="0123456789abcdef", min_size=64, max_size=64)
header_text = st.text(max_size=200)
timestamps = st.text(alphabet="0123456789", min_size=1, max_size=400)


@st.composite
def junk_headers(draw: st.DrawFn, body: bytes, secret: str) -> str | None:
    """A Stripe-Signature header that no valid delivery would carry."""
    now = int(time.time())
    kind = draw(st.sampled_from(["none", "text", "items", "other secret", "stale", "other body"]))
    if kind == "none":
        return None
    if kind == "text":
        return draw(header_text)
    if kind == "items":
        item = st.one_of(
            timestamps.map(lambda t: f"t={t}"),
            st.integers(min_value=-(10**6), max_value=10**6).map(lambda d: f"t={now + d}"),
            hex64.map(lambda h: f"v1={h}"),
            header_text.map(lambda s: f"v1={s}"),
            hex64.map(lambda h: f"v0={h}"),
            st.tuples(header_text, header_text).map("=".join),
            header_text,
        )
        items = draw(st.lists(item, max_size=150))  # many v1=, and past the 8 KiB limit
        return draw(st.sampled_from([",", ", ", " ,"])).join(items)
    t = now
    signed = body
    if kind == "other secret":
        secret = "whsec_" + draw(st.text(min_size=1, max_size=40).filter(lambda s: s != secret))
    elif kind == "stale":
        t += draw(st.sampled_from([-1, 1])) * draw(
            st.integers(min_value=TOLERANCE + 60, max_value=10**9)
        )
    else:
        signed = body + draw(st.binary(min_size=1, max_size=8))
    return f"t={t},v1={hmac_hex(secret, t, signed)}"


@st.composite
def good_headers(draw: st.DrawFn, body: bytes, secret: str) -> str:
    """A valid signature among many wrong ones: as a sender rolling its secret would send."""
    t = int(time.time()) + draw(st.integers(min_value=-(TOLERANCE - 60), max_value=TOLERANCE - 60))
    v1s = [f"v1={h}" for h in draw(st.lists(hex64, max_size=110))]  # stays under 8 KiB
    v1s.insert(
        draw(st.integers(min_value=0, max_value=len(v1s))), f"v1={hmac_hex(secret, t, body)}"
    )
    extra = draw(st.lists(hex64.map(lambda h: f"v0={h}"), max_size=2))
    return draw(st.sampled_from([",", ", "])).join([f"t={t}", *v1s, *extra])


content_types = st.sampled_from(["application/json", "text/plain", ""]) | header_text


def request_headers(signature: str | None, content_type: str) -> dict[str, str]:
    headers = {"Content-Type": content_type}
    if signature is not None:
        headers["Stripe-Signature"] = signature
    return headers


FUZZ = settings(
    max_examples=1000,
    deadline=None,  # a 1 MiB body on a busy 2-core machine is slow, not wrong
    suppress_health_check=[HealthCheck.too_slow],
)


# --- The fuzz tests --------------------------------------------------------------------------


@FUZZ
@given(data=st.data(), body=any_bodies, content_type=content_types)
def test_unsigned_requests_stop_at_the_signature(
    hook: Hook, data: st.DataObject, body: bytes, content_type: str
) -> None:
    FUZZED["unsigned"] += 1
    signature = data.draw(junk_headers(body, hook.secret))
    check_refused(hook, body, request_headers(signature, content_type), SIGNATURE_ERRORS)


@FUZZ
@given(data=st.data(), body=not_events(), content_type=content_types)
def test_signed_bodies_that_are_not_events_stop_at_the_body_checks(
    hook: Hook, data: st.DataObject, body: bytes, content_type: str
) -> None:
    FUZZED["signed"] += 1
    signature = data.draw(good_headers(body, hook.secret))
    check_refused(hook, body, request_headers(signature, content_type), BODY_ERRORS)


def test_the_checks_see_a_publish_and_a_ledger_row(tmp_path: Path) -> None:
    # The control: a valid event through the same harness trips both checks.
    hook = make_hook(tmp_path)
    body = samples.encode(samples.sample_event("customer.created"))
    t = int(time.time())
    status, _ = hook.post(body, {"Stripe-Signature": f"t={t},v1={hmac_hex(hook.secret, t, body)}"})
    assert status == 200
    assert len(hook.publisher.entries) == 1
    assert len(hook.module.events.store.recent(1)) == 1
    with pytest.raises(AssertionError):
        hook.assert_untouched()


# --- Known bugs: these inputs crash the webhook today --------------------------------------


def _raw_post(hook: Hook, body: bytes, signature: str) -> tuple[int, bytes]:
    response = hook.client.http.post(URL, headers={"Stripe-Signature": signature}, body=body)
    return response.status_code, response.body


@pytest.mark.parametrize("digits", [309, 5000])
def test_bug_a_huge_header_timestamp_is_a_400(tmp_path: Path, digits: int) -> None:
    hook = make_hook(tmp_path)
    status, body = _raw_post(hook, b"{}", f"t={'9' * digits},v1={'0' * 64}")
    assert status == 400, body
    assert json.loads(body)["error"] == "malformed_signature"


@pytest.mark.parametrize("created", [253_402_300_800, 10**20])
def test_bug_a_created_past_year_9999_is_a_400(tmp_path: Path, created: int) -> None:
    hook = make_hook(tmp_path)
    body = samples.encode(samples.sample_event("customer.created", created=created))
    t = int(time.time())
    status, answer = _raw_post(hook, body, f"t={t},v1={hmac_hex(hook.secret, t, body)}")
    assert status == 400, answer
    assert json.loads(answer)["error"] == "not_an_event"
    hook.assert_untouched()


@pytest.mark.parametrize("name", ["type", "id"])
def test_bug_a_lone_surrogate_in_type_or_id_is_a_400(tmp_path: Path, name: str) -> None:
    hook = make_hook(tmp_path)
    event = samples.sample_event("customer.created")
    event[name] = {"type": "customer.\ud800", "id": "evt_\ud800"}[name]
    body = json.dumps(event).encode()  # escaped, as valid UTF-8: \ud800
    t = int(time.time())
    status, answer = _raw_post(hook, body, f"t={t},v1={hmac_hex(hook.secret, t, body)}")
    assert status == 400, answer
    assert json.loads(answer)["error"] == "not_an_event"
    hook.assert_untouched()
