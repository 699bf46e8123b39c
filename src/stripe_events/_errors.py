"""Every error the runtime raises, in one tree under StripeEventsError: SettingsError,
UnknownEventType, Rejected (a 4xx at the webhook), PublishFailed (a 503), PayloadError
(PayloadMissing, PayloadCorrupt), HandlerFailed, UnreadableEvent, and RetryLater (not a
failure: ClaimHeld, HandlerBusy)."""

from __future__ import annotations


class StripeEventsError(Exception):
    """The root: `except StripeEventsError` catches whatever the runtime raises on purpose."""


class SettingsError(StripeEventsError, ValueError):
    """A setting is missing or malformed; the message names the variable and the fix."""


class UnknownEventType(StripeEventsError, ValueError):
    """An event type or pattern that matches nothing Stripe documents."""


class Rejected(StripeEventsError):
    """Bad input. It changes nothing and is never published; Stripe should not retry it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class PublishFailed(StripeEventsError):
    """EventBridge did not accept the entry. The webhook answers 503 so that Stripe retries."""


class PayloadError(StripeEventsError):
    """The full body of a referenced event cannot be given back."""


class PayloadMissing(PayloadError):
    """The reference points to a body that is not (or no longer) stored."""


class PayloadCorrupt(PayloadError):
    """The stored body is not the one the reference was made for."""


class HandlerFailed(StripeEventsError):
    """One or more handlers raised. Raised again so that Lambda retries the function."""

    def __init__(self, event_id: str, errors: dict[str, str]) -> None:
        listed = "; ".join(f"{name}: {error}" for name, error in errors.items())
        super().__init__(f"event {event_id}: {len(errors)} handler(s) failed: {listed}")
        self.event_id = event_id
        self.errors = errors


class UnreadableEvent(StripeEventsError):
    """The function cannot make a stripe.Event (or notification) of what it received: too
    deeply nested, a shape the SDK refuses. Recorded as each handler's error."""


class RetryLater(StripeEventsError):
    """A handler must wait for another run (not a failure): Lambda runs it again later."""


class ClaimHeld(RetryLater):
    """Another run holds the object's claim: this handler must run again later."""


class HandlerBusy(RetryLater):
    """A handler must wait for another run: the same event's (its idempotency lock), or
    another event's (a claim on the same object). Raised so that Lambda retries later."""
