"""A moto server on loopback that serves one request at a time, for tests and benchmarks.

moto's `ThreadedMotoServer` serves each request on a thread of its own, and moto's
backends are not written for that: DynamoDB's PutItem and UpdateItem read the item,
check the ConditionExpression, and then store the new item, with no lock between
(moto/dynamodb/models/table.py, `Table.put_item`; moto/dynamodb/models/__init__.py,
`DynamoDBBackend.update_item`). Two conditional writes of one key can both pass, which
DynamoDB never allows, and a test that races the product's writes then fails for moto's
sake. Here every request runs under one lock. The server still accepts connections
and reads requests concurrently, so the requests of several processes still interleave
in any order: the product's races, which live between requests, stay testable.

`python -m tests.contract.test_moto_atomicity` races conditional writes against both kinds of
server and prints how often more than one passed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from moto.moto_server.werkzeug_app import (
    DomainDispatcherApplication,
    MotoRequestHandler,
    create_backend_app,
)
from werkzeug.serving import make_server

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class SerializedApp:
    """A WSGI application that runs the wrapped one for one request at a time."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if _waits_for_others(environ):
            # A long poll waits for a message that another request sends; under the lock
            # it would wait out its whole timeout and hold every other request back.
            return self._app(environ, start_response)
        with self._lock:
            body = self._app(environ, start_response)
            try:
                # A WSGI body may be computed as it is iterated: all of it, under the lock.
                return [b"".join(body)]
            finally:
                close = getattr(body, "close", None)
                if close is not None:
                    close()


def _waits_for_others(environ: WSGIEnvironment) -> bool:
    """SQS ReceiveMessage, in boto3's JSON protocol or the older query protocol."""
    if environ.get("HTTP_X_AMZ_TARGET") == "AmazonSQS.ReceiveMessage":
        return True
    return "Action=ReceiveMessage" in str(environ.get("QUERY_STRING", ""))


class MotoServer:
    """moto's server on a free 127.0.0.1 port, on a daemon thread, as ThreadedMotoServer
    runs it; `serialized=False` gives moto's own behaviour (for the atomicity check)."""

    def __init__(self, *, serialized: bool = True) -> None:
        app: WSGIApplication = DomainDispatcherApplication(create_backend_app)
        if serialized:
            app = SerializedApp(app)
        # threaded=True still: a boto3 client keeps its connection open between calls,
        # and a single-threaded server would serve no other client meanwhile.
        self._server = make_server(
            "127.0.0.1", 0, app, threaded=True, request_handler=MotoRequestHandler
        )
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join()
        self._server.server_close()


@contextmanager
def moto_server(*, serialized: bool = True) -> Iterator[str]:
    """A started `MotoServer`, stopped on exit; its URL."""
    server = MotoServer(serialized=serialized)
    server.start()
    try:
        yield server.url
    finally:
        server.stop()
