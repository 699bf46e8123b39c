"""Session fixtures: a moto server on a free loopback port, started by the tests."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import boto3
import pytest
from stripe._http_client import HTTPClient

import stripe_events._aws as aws
import stripe_events._secrets as secrets
from stripe_events._observability import ROOT_LOGGER
from stripe_events_ops.project import patched_environ
from tests.helpers import FakeStripe, fake_stripe_server
from tests.moto_server import moto_server

REGION = "us-east-1"


@pytest.fixture(scope="session")
def moto_url() -> Iterator[str]:
    """A moto server for the whole session, and boto3 pointed at it through the environment.

    It runs one request at a time: moto's conditional writes are not atomic otherwise
    (tests/moto_server.py), and the races under test are between requests."""
    with moto_server() as url, patched_environ(_aws_environment(url)):
        yield url


def _aws_environment(url: str) -> dict[str, str]:
    return {
        "AWS_ENDPOINT_URL": url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
    }


@pytest.fixture(scope="session")
def s3_bucket(moto_url: str) -> str:
    """A bucket on the moto server, as the one that keeps oversized bodies."""
    name = f"stripe-events-bodies-{uuid.uuid4().hex[:12]}"
    boto3.client("s3", region_name=REGION).create_bucket(Bucket=name)
    return name


@pytest.fixture
def fake_stripe() -> Iterator[FakeStripe]:
    """A Stripe-like API on a free loopback port, serving the objects a test puts in it."""
    with fake_stripe_server() as server:
        yield server


@pytest.fixture
def quick_sdk_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Stripe SDK waits at least 0.5 s before its own retries; tests need not."""
    monkeypatch.setattr(HTTPClient, "INITIAL_DELAY", 0.01)
    monkeypatch.setattr(HTTPClient, "MAX_DELAY", 0.02)


@pytest.fixture(autouse=True)
def fresh_aws_session() -> Iterator[None]:
    """Each test makes its AWS clients from its own environment, whatever ran before it
    (the tests run in random order)."""
    yield
    aws.forget()
    secrets.forget()  # its SSM providers hold clients of the session


@pytest.fixture(autouse=True)
def plain_logging() -> Iterator[None]:
    """Undo the JSON logging a deployed stage's app sets up, so that caplog sees records."""
    yield
    logger = logging.getLogger(ROOT_LOGGER)
    logger.handlers.clear()
    logger.propagate = True
