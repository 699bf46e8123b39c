"""Oversized events: stored aside, published as a reference, restored unchanged."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from stripe_events._backends import open_payload_store
from stripe_events._envelope import Entry, EventHeader, parse_event, to_entry
from stripe_events._errors import (
    PayloadCorrupt,
    PayloadError,
    PayloadMissing,
    PublishFailed,
    SettingsError,
)
from stripe_events._payloads import (
    PAYLOAD_KEY,
    PayloadRef,
    PayloadStore,
    S3PayloadStore,
    entry_size,
    restore,
    shrink,
)
from stripe_events._schema import EVENTS_FOLDER
from stripe_events._settings import Settings
from stripe_events_local.payloads import LocalPayloadStore
from stripe_events_testing.samples import encode, sample_event
from tests.conftest import REGION
from tests.helpers import invoice_with_lines

LIMIT = Settings(stage="test").max_entry_bytes
LINES = 300  # about 2 KB each: a 600 KB event
SETTINGS = Settings(stage="test", source="stripe.webhook", bus="default")


@pytest.fixture(scope="module")
def big_body() -> str:
    # Stripe sends non-ASCII text as UTF-8, not as \u escapes (which `encode` would make).
    body = json.dumps(invoice_with_lines(LINES), indent=2, ensure_ascii=False)
    assert 550_000 < len(body.encode()) < 650_000  # about 600 KB, as the issue describes
    return body


def published(body: str) -> tuple[EventHeader, Entry]:
    header = parse_event(body, None)
    return header, to_entry(body, header, SETTINGS)


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> PayloadStore:
    if request.param == "local":
        return LocalPayloadStore(tmp_path / "bodies")
    bucket: str = request.getfixturevalue("s3_bucket")
    return S3PayloadStore(bucket, REGION)


class UnusableStore(PayloadStore):
    """Fails on any use: proves that small events never touch the store."""

    kind = "unusable"

    def save(self, name: str, body: str, folder: str = EVENTS_FOLDER) -> PayloadRef:
        raise ConnectionError("the store is down")

    def load(self, ref: PayloadRef) -> str:
        raise ConnectionError("the store is down")


# entry_size -----------------------------------------------------------------------


def test_entry_size_counts_utf8_bytes_as_documented() -> None:
    # '{"d":"' is 6 bytes, é 2, 東 3, 🎉 4, '"}' 2: 17 bytes for 11 characters.
    detail = '{"d":"é東🎉"}'
    entry: Entry = {
        "Time": "anything",  # counted as 14 bytes whatever it holds
        "Source": "stripe.webhook",  # 14
        "DetailType": "invoice.paid",  # 12
        "Detail": detail,  # 17
        "Resources": ["arn:x", "ü"],  # 5 + 2
        "EventBusName": "a-bus-name-that-does-not-count",
    }
    assert len(detail) == 11
    assert entry_size(entry) == 14 + 14 + 12 + 17 + 5 + 2
    del entry["Time"], entry["Resources"]
    assert entry_size(entry) == 14 + 12 + 17


def test_entry_size_of_a_webhook_entry(big_body: str) -> None:
    _, entry = published(big_body)
    body_bytes = len(big_body.encode("utf-8"))
    assert body_bytes > len(big_body)  # the descriptions are multibyte
    assert entry_size(entry) == 14 + len("stripe.webhook") + len("invoice.paid") + body_bytes


# shrink and restore ---------------------------------------------------------------


def test_a_large_event_is_published_as_a_reference_and_restored(
    big_body: str, store: PayloadStore
) -> None:
    header, entry = published(big_body)
    assert entry_size(entry) > LIMIT

    shrunk = shrink(entry, header, store, LIMIT)

    assert entry_size(shrunk) < 1024
    for key in ("Source", "DetailType", "Time", "EventBusName"):
        assert shrunk[key] == entry[key]
    detail = json.loads(shrunk["Detail"])
    original = json.loads(big_body)
    # Still a Stripe envelope to whatever routes or logs it.
    for key in ("id", "object", "type", "created", "livemode", "api_version"):
        assert detail[key] == original[key]
    ref = detail[PAYLOAD_KEY]
    assert ref["store"] == store.kind
    assert ref["bytes"] == len(big_body.encode("utf-8"))

    restored = restore(detail, store)

    assert restored == original
    assert len(restored["data"]["object"]["lines"]["data"]) == LINES


def test_a_connect_event_keeps_its_account_in_the_reference(tmp_path: Path) -> None:
    event = invoice_with_lines(200)
    event["account"] = "acct_1Pgc6tB7WZ01zgkW"
    header, entry = published(encode(event).decode())
    detail = json.loads(shrink(entry, header, LocalPayloadStore(tmp_path), LIMIT)["Detail"])
    assert detail["account"] == "acct_1Pgc6tB7WZ01zgkW"


def test_a_small_event_passes_through_untouched() -> None:
    body = encode(sample_event("invoice.paid")).decode()
    header, entry = published(body)
    assert entry_size(entry) <= LIMIT
    assert shrink(entry, header, UnusableStore(), LIMIT) is entry
    detail = json.loads(body)
    assert restore(detail, UnusableStore()) is detail


def test_an_entry_of_exactly_the_limit_is_not_shrunk(big_body: str) -> None:
    header, entry = published(big_body)
    size = entry_size(entry)
    assert shrink(entry, header, UnusableStore(), size) is entry
    with pytest.raises(PublishFailed, match="could not be stored: ConnectionError"):
        shrink(entry, header, UnusableStore(), size - 1)


def test_saving_is_idempotent_and_each_delivery_keeps_its_own_body(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
    event = invoice_with_lines(3)
    first = encode(event).decode()
    assert store.save(event["id"], first) == store.save(event["id"], first)
    # Stripe may deliver the same event again with another pending_webhooks count.
    event["pending_webhooks"] = 0
    second = encode(event).decode()
    first_ref, second_ref = store.save(event["id"], first), store.save(event["id"], second)
    assert first_ref["path"] != second_ref["path"]
    detail = {"id": event["id"], PAYLOAD_KEY: first_ref}
    assert restore(detail, store)["pending_webhooks"] == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == sorted(
        [EVENTS_FOLDER, event["id"], Path(first_ref["path"]).name, Path(second_ref["path"]).name]
    )  # no temporary file left behind


# the two stores -------------------------------------------------------------------


def test_s3_store_puts_an_encrypted_json_object(big_body: str, s3_bucket: str) -> None:
    header, entry = published(big_body)
    store = S3PayloadStore(s3_bucket, REGION)
    ref = json.loads(shrink(entry, header, store, LIMIT)["Detail"])[PAYLOAD_KEY]
    assert ref["bucket"] == s3_bucket
    assert ref["key"].startswith(f"events/{header.id}/")

    head = boto3.client("s3", region_name=REGION).head_object(Bucket=s3_bucket, Key=ref["key"])

    assert head["ServerSideEncryption"] == "AES256"
    assert head["ContentType"] == "application/json"
    assert head["ContentLength"] == ref["bytes"]


def test_local_store_writes_the_body_under_its_directory(big_body: str, tmp_path: Path) -> None:
    header, entry = published(big_body)
    ref = json.loads(shrink(entry, header, LocalPayloadStore(tmp_path), LIMIT)["Detail"])[
        PAYLOAD_KEY
    ]
    assert (tmp_path / ref["path"]).read_bytes() == big_body.encode("utf-8")


def tamper(store: PayloadStore, ref: PayloadRef, data: bytes) -> None:
    if isinstance(store, LocalPayloadStore):
        (store.directory / ref["path"]).write_bytes(data)
    else:
        assert isinstance(store, S3PayloadStore)
        store.client.put_object(Bucket=ref["bucket"], Key=ref["key"], Body=data)


def remove(store: PayloadStore, ref: PayloadRef) -> None:
    if isinstance(store, LocalPayloadStore):
        (store.directory / ref["path"]).unlink()
    else:
        assert isinstance(store, S3PayloadStore)
        store.client.delete_object(Bucket=ref["bucket"], Key=ref["key"])


@pytest.fixture
def reference(store: PayloadStore) -> Iterator[dict[str, Any]]:
    event = invoice_with_lines(2)
    body = encode(event).decode()
    yield {"id": event["id"], "object": "event", PAYLOAD_KEY: store.save(event["id"], body)}


def test_a_tampered_body_is_refused(store: PayloadStore, reference: dict[str, Any]) -> None:
    body = store.load(reference[PAYLOAD_KEY])
    # Same length, one amount changed: only the digest tells.
    tampered = body.replace('"amount": 1000', '"amount": 9000', 1)
    assert len(tampered) == len(body) and tampered != body
    tamper(store, reference[PAYLOAD_KEY], tampered.encode())
    with pytest.raises(PayloadCorrupt, match=r"is not the one saved"):
        restore(reference, store)


def test_a_body_that_is_not_utf8_is_refused(store: PayloadStore, reference: dict[str, Any]) -> None:
    tamper(store, reference[PAYLOAD_KEY], b'{"id": "\xff"}')
    with pytest.raises(PayloadCorrupt, match="not UTF-8"):
        restore(reference, store)


def test_a_missing_body_is_a_clear_error(store: PayloadStore, reference: dict[str, Any]) -> None:
    remove(store, reference[PAYLOAD_KEY])
    with pytest.raises(PayloadMissing, match="does not exist"):
        restore(reference, store)


def test_a_reference_to_another_store_is_refused(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path)
    s3_ref = {"store": "s3", "bucket": "b", "key": "k", "bytes": 1, "sha256": "0"}
    with pytest.raises(PayloadError, match="'s3' payload store"):
        restore({"id": "evt_1", PAYLOAD_KEY: s3_ref}, store)


def test_a_local_reference_cannot_leave_the_directory(tmp_path: Path) -> None:
    (tmp_path / "secret.txt").write_text("{}")
    store = LocalPayloadStore(tmp_path / "bodies")
    ref = {"store": "local", "path": "../secret.txt", "bytes": 2, "sha256": "0"}
    with pytest.raises(PayloadError, match="leaves"):
        restore({"id": "evt_1", PAYLOAD_KEY: ref}, store)


def test_an_s3_reference_to_another_bucket_is_refused(s3_bucket: str) -> None:
    ref = {"store": "s3", "bucket": "someone-elses", "key": "k", "bytes": 1, "sha256": "0"}
    with pytest.raises(PayloadError, match="STRIPE_EVENTS_BUCKET"):
        restore({"id": "evt_1", PAYLOAD_KEY: ref}, S3PayloadStore(s3_bucket, REGION))


def test_an_unsafe_event_id_stays_inside_the_directory(tmp_path: Path) -> None:
    store = LocalPayloadStore(tmp_path / "bodies")
    ref = store.save("evt_../../x", "{}")
    assert (tmp_path / "bodies" / ref["path"]).resolve().is_relative_to(tmp_path / "bodies")
    assert store.load(ref) == "{}"


# open_payload_store ---------------------------------------------------------------


def test_open_payload_store_needs_a_bucket_outside_stage_local() -> None:
    with pytest.raises(SettingsError, match="STRIPE_EVENTS_BUCKET"):
        open_payload_store(Settings(stage="dev", bus="default"))


def test_open_payload_store_in_stage_local(tmp_path: Path) -> None:
    store = open_payload_store(Settings(stage="local", bus="local", state_dir=tmp_path))
    assert isinstance(store, LocalPayloadStore)
    assert store.directory == tmp_path / "bodies"


def test_open_payload_store_on_aws(moto_url: str) -> None:
    store = open_payload_store(Settings(stage="dev", bus="default", bucket="the-bucket"))
    assert isinstance(store, S3PayloadStore)
    assert store.bucket == "the-bucket"
