"""Oversized events: the body goes to a payload store (S3), the bus carries a small
reference that the rules route as the event, and the dispatcher puts the body back
before a handler sees it. EventBridge refuses entries over its limit, and Stripe would
retry such an event in vain. Items over DynamoDB's 400 KB go there too (`state/`)."""

from __future__ import annotations

import hashlib
import json
import re
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, Any, ClassVar

from stripe_events._errors import (
    PayloadCorrupt,
    PayloadError,
    PayloadMissing,
    PublishFailed,
)
from stripe_events._schema import EVENTS_FOLDER

if TYPE_CHECKING:
    from stripe_events._envelope import Entry, EventHeader

# The key that marks a detail as a reference; no Stripe event has it.
PAYLOAD_KEY = "stripe_events_payload"
# EventBridge counts a present Time as this many bytes, whatever its value.
TIME_BYTES = 14
# Small top-level fields of the envelope that a reference keeps besides the header:
# `account` (snapshot) and `context` (thin) say which connected account it is about.
_KEPT_FIELDS = ("api_version", "account", "context")
_UNSAFE_NAME = re.compile(r"[^A-Za-z0-9_-]")

PayloadRef = dict[str, Any]


def _digest(body: str) -> tuple[bytes, str]:
    data = body.encode("utf-8")
    return data, hashlib.sha256(data).hexdigest()


def _name(folder: str, name: str, sha256: str) -> str:
    # The digest is part of the name because Stripe may deliver one event several times
    # with bodies that differ (`pending_webhooks` changes): each reference must find the
    # very body it was made for. It also makes saving idempotent: the same body is the
    # same object. The name is only made safe for a path; the digest keeps names unique.
    return f"{folder}/{_UNSAFE_NAME.sub('_', name)}/{sha256}.json"


def _field(ref: PayloadRef, name: str, store: str) -> str:
    if ref.get("store") != store:
        raise PayloadError(
            f"the event's body is in a {ref.get('store')!r} payload store, "
            f"but this stage reads the {store!r} one"
        )
    value = ref.get(name)
    if not isinstance(value, str) or not value:
        raise PayloadError(f"the payload reference has no {name!r}: {ref!r}")
    return value


class PayloadStore(ABC):
    """Keeps the bodies of events too large to publish; one implementation per stage kind."""

    kind: ClassVar[str]

    @abstractmethod
    def save(self, name: str, body: str, folder: str = EVENTS_FOLDER) -> PayloadRef:
        """Store `body` (an event's, by its id, or an item's) and return its reference.

        Idempotent: the same body under the same name is the same object.
        """

    @abstractmethod
    def load(self, ref: PayloadRef) -> str:
        """The body that `save` stored for this reference; PayloadMissing if it is gone."""


class S3PayloadStore(PayloadStore):
    kind = "s3"

    def __init__(self, bucket: str, region: str) -> None:
        from botocore.config import Config

        import stripe_events._aws as aws

        # The webhook saves while Stripe waits (about 10 s) and PutEvents still has to
        # follow, so a slow S3 must fail fast: the webhook then answers 503 and Stripe retries.
        config = Config(
            connect_timeout=0.5,
            read_timeout=2.0,
            retries={"mode": "standard", "total_max_attempts": 2},
        )
        self.client = aws.client("s3", region, config)
        self.bucket = bucket

    def save(self, name: str, body: str, folder: str = EVENTS_FOLDER) -> PayloadRef:
        data, sha256 = _digest(body)
        key = _name(folder, name, sha256)
        self.client.put_object(
            Bucket=self.bucket,
            Key=key,
            Body=data,
            ContentType="application/json",
            ServerSideEncryption="AES256",
        )
        return {
            "store": self.kind,
            "bucket": self.bucket,
            "key": key,
            "bytes": len(data),
            "sha256": sha256,
        }

    def load(self, ref: PayloadRef) -> str:
        from botocore.exceptions import ClientError

        key = _field(ref, "key", self.kind)
        # Only the stage's own bucket: a reference on the bus must not make the function
        # read whatever else its role can reach.
        if ref.get("bucket") != self.bucket:
            raise PayloadError(
                f"the event's body is in bucket {ref.get('bucket')!r}, "
                f"but this stage reads bucket {self.bucket!r} (STRIPE_EVENTS_BUCKET)"
            )
        try:
            response = self.client.get_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "NoSuchBucket", "404"):
                raise PayloadMissing(f"s3://{self.bucket}/{key} does not exist ({code})") from None
            raise
        data: bytes = response["Body"].read()
        return _decode(data, f"s3://{self.bucket}/{key}")


def _decode(data: bytes, where: str) -> str:
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as error:
        raise PayloadCorrupt(f"{where} is not UTF-8 (bad byte at offset {error.start})") from None


def entry_size(entry: Entry) -> int:
    """The size EventBridge counts for a PutEvents entry, against its entry size limit.

    AWS, "Calculating Amazon EventBridge PutEvents event entry size": Time is 14 bytes
    if present; Source, DetailType, Detail and each of Resources count the bytes of
    their UTF-8 encoding. Nothing else (EventBusName, TraceHeader) counts.
    """
    size = TIME_BYTES if entry.get("Time") is not None else 0
    for name in ("Source", "DetailType", "Detail"):
        value = entry.get(name)
        if value is not None:
            size += len(value.encode("utf-8"))
    for resource in entry.get("Resources") or ():
        if resource is not None:
            size += len(resource.encode("utf-8"))
    return size


def shrink(entry: Entry, header: EventHeader, store: PayloadStore, max_bytes: int) -> Entry:
    """`entry` itself if it fits in `max_bytes`; else an entry that refers to its stored body.

    The new entry differs only in its Detail, which keeps the envelope's header fields,
    so rules and the dispatcher's routing treat it as the event itself. Raises
    PublishFailed if the body cannot be stored: the webhook answers 503 and Stripe retries.
    """
    if entry_size(entry) <= max_bytes:
        return entry
    try:
        detail = reference(entry["Detail"], store)
    except Exception as error:
        raise PublishFailed(
            f"the body of event {header.id} is too large to publish and could not be "
            f"stored: {type(error).__name__}: {error}"
        ) from error
    shrunk = {**entry, "Detail": detail}
    size = entry_size(shrunk)
    if size > max_bytes:  # only with an absurd limit or DetailType; the setting's floor is 1 KiB
        raise ValueError(f"even the reference to event {header.id} has {size} bytes > {max_bytes}")
    return shrunk


def reference(body: str, store: PayloadStore) -> str:
    """A small detail that stands for the event `body` (a verified event's JSON).

    It keeps the envelope's header fields and says where `store` keeps the body; `restore`
    gives the event back.
    """
    original = json.loads(body)
    detail: dict[str, Any] = {
        "id": original["id"],
        "object": original["object"],  # "event", or "v2.core.event" for a thin notification
        "type": original["type"],
        "created": original["created"],
        "livemode": original.get("livemode") is True,
    }
    for name in _KEPT_FIELDS:
        if isinstance(original.get(name), str):
            detail[name] = original[name]
    detail[PAYLOAD_KEY] = store.save(original["id"], body)
    return json.dumps(detail, separators=(",", ":"))


def load_checked(ref: PayloadRef, store: PayloadStore, what: str) -> str:
    """The body `ref` points to, checked against the size and SHA-256 it was saved with.

    Raises PayloadMissing if it is gone and PayloadCorrupt if it is another body.
    """
    data, sha256 = _digest(store.load(ref))
    if sha256 != ref.get("sha256") or len(data) != ref.get("bytes"):
        raise PayloadCorrupt(
            f"{what}: the stored body ({len(data)} bytes, sha256 {sha256}) is not "
            f"the one saved ({ref.get('bytes')} bytes, sha256 {ref.get('sha256')})"
        )
    return data.decode("utf-8")


def restore(detail: dict[str, Any], store: PayloadStore) -> dict[str, Any]:
    """The full event for an EventBridge detail: `detail` itself unless it is a reference.

    Raises PayloadMissing if the body is gone and PayloadCorrupt if it is not the one
    the reference was made for (its SHA-256 differs).
    """
    if PAYLOAD_KEY not in detail:
        return detail
    event_id = detail.get("id")
    ref = detail[PAYLOAD_KEY]
    if not isinstance(ref, dict):
        raise PayloadError(f"event {event_id}: {PAYLOAD_KEY} is not an object: {ref!r}")
    event = json.loads(load_checked(ref, store, f"event {event_id}"))
    if not isinstance(event, dict) or event.get("id") != event_id:
        raise PayloadCorrupt(f"event {event_id}: the stored body is another event")
    return event
