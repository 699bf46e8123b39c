"""One boto3 session for every AWS client, Powertools' included: a client of its own
session loads the endpoint data again on a function's first event. Sessions are not
thread-safe, so making clients takes a lock."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import boto3
    from botocore.config import Config

_lock = threading.Lock()
_session: boto3.session.Session | None = None


def session() -> boto3.session.Session:
    global _session
    with _lock:
        if _session is None:
            import boto3

            _session = boto3.session.Session()
        return _session


def client(service: str, region: str, config: Config | None = None) -> Any:
    """A client of `service` (boto3 honours AWS_ENDPOINT_URL, which is how tests point it
    at a moto server)."""
    shared = session()
    with _lock:
        return shared.client(service, region_name=region, config=config)


def forget() -> None:
    """Drop the session: the next client is made from the environment as it is then. A
    Lambda's environment never changes; a test's does (a moto server starts, an app is
    loaded under another stage), and a session made before resolves credentials from
    what it saw then."""
    global _session
    with _lock:
        _session = None
