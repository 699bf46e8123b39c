"""Errors that become an HTTP answer: bad input is a 4xx, our own fault a 503."""

from __future__ import annotations


class Rejected(Exception):
    """Bad input. It changes nothing and is never published; Stripe should not retry it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


class PublishFailed(Exception):
    """EventBridge did not accept the entry. The webhook answers 503 so that Stripe retries."""


class RetryLater(Exception):
    """A handler must wait for another run (not a failure): Lambda runs it again later."""
