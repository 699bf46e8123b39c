"""Shared test helpers: load the app under a given environment, sign and post events.

The handler kit users have (`event_of`, `module_context`, …) is the test kit,
stripe_events_testing, whose names the tests import from `stripe_events` as users do.
"""

from __future__ import annotations

import copy
import importlib
import json
import os
import pkgutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
import stripe

from stripe_events._bus import Publisher
from stripe_events._envelope import Entry
from stripe_events._errors import PublishFailed
from stripe_events._router import HandlerFunc, Router
from stripe_events_ops.project import import_app, stage_environment
from stripe_events_ops.template import table_definition
from stripe_events_testing import samples

ROOT = Path(__file__).resolve().parents[1]
SECRET = "whsec_test_secret_one"


def local_stage_env() -> dict[str, str]:
    """The environment Chalice gives stage `local`, as .chalice/config.json defines it."""
    return stage_environment("local", ROOT)


def secure_parameter(value: str) -> str:
    """An SSM SecureString on the moto server holding `value`; its name is new each time,
    as Powertools caches parameters by name. The test must use the `moto_url` fixture."""
    endpoint = os.environ.get("AWS_ENDPOINT_URL", "")
    assert endpoint.startswith("http://127.0.0.1:"), "secure_parameter needs the moto server"
    name = f"/stripe-events/test/{uuid.uuid4().hex[:12]}"
    boto3.client("ssm").put_parameter(Name=name, Value=value, Type="SecureString")
    return name


def shell_without_aws(**variables: str) -> dict[str, str]:
    """This shell's environment as a user without AWS set up has it: no AWS variable, and
    no lookup of instance metadata (nothing may reach beyond loopback)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {**env, "AWS_EC2_METADATA_DISABLED": "true", **variables}


def deployed_stage_env(secret: str = SECRET, **env: str) -> dict[str, str]:
    """A deployed stage's environment, as a test on the moto server runs it: stage `test`
    publishes to EventBridge and reads its signing secret from SSM, as every stage but
    `local` must."""
    return {
        "STRIPE_EVENTS_STAGE": "test",
        "STRIPE_EVENTS_BUS": "default",
        "STRIPE_WEBHOOK_SECRET_PARAM": secure_parameter(secret),
        **env,
    }


def load_app(env: dict[str, str]) -> ModuleType:
    """Import a fresh app.py with `env` in the environment (settings are read at import)."""
    return import_app(env, ROOT)


def resource_routers() -> list[Router]:
    """The `router` of every module in chalicelib/resources, the project's business logic."""
    package = importlib.import_module("chalicelib.resources")
    modules = (
        importlib.import_module(f"chalicelib.resources.{info.name}")
        for info in pkgutil.iter_modules(package.__path__)
    )
    return [m.router for m in modules if isinstance(getattr(m, "router", None), Router)]


def sign(body: bytes, secret: str = SECRET, timestamp: int | None = None) -> str:
    """A Stripe-Signature header, made by the stripe library itself."""
    t = int(time.time()) if timestamp is None else timestamp
    header: str = stripe.WebhookSignature.generate_signature_header(body.decode(), secret, t)
    return header


def signed_headers(body: bytes, secret: str = SECRET, **kwargs: Any) -> dict[str, str]:
    return {"Content-Type": "application/json", "Stripe-Signature": sign(body, secret, **kwargs)}


def swap_handler(
    monkeypatch: pytest.MonkeyPatch, router: Router, event_type: str, func: HandlerFunc
) -> Callable[[], None]:
    """Replace the router's handler of `event_type` by `func`; return a function that undoes it."""
    handlers = list(router.handlers)
    index = next(i for i, h in enumerate(handlers) if h.matches(event_type))
    original = handlers[index]
    handlers[index] = replace(original, func=func)
    monkeypatch.setattr(router, "handlers", handlers)
    restored = [*handlers[:index], original, *handlers[index + 1 :]]
    return lambda: monkeypatch.setattr(router, "handlers", restored)


def write_figures(request: pytest.FixtureRequest, text: str) -> None:
    """Print a test module's figures after its tests, past pytest's output capture."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    if reporter is not None and capture is not None:
        with capture.global_and_fixture_disabled():
            reporter.write("\n" + text + "\n")


def figures_after(summary: Callable[[], str]) -> Any:
    """A module's autouse fixture that prints `summary()` once its tests have run:
    `figures = figures_after(TALLY.summary)` at the module's top level."""

    @pytest.fixture(scope="module", autouse=True)
    def figures(request: pytest.FixtureRequest) -> Iterator[None]:
        yield
        write_figures(request, summary())

    return figures


def invoice_with_lines(count: int) -> dict[str, Any]:
    """An `invoice.paid` event whose invoice has `count` lines (about 2 KB each)."""
    line = samples.example_objects()["line_item"]
    lines = []
    for n in range(count):
        item = copy.deepcopy(line)
        item["id"] = f"il_{n:024d}"
        # Multibyte text, as real descriptions have: the limit counts bytes, not characters.
        item["description"] = f"Größe {n}: 東京オフィス座席"
        item["metadata"] = {"seat": str(n), "cost_center": f"CC-{n % 17:03d}"}
        lines.append(item)
    invoice = samples.example_objects()["invoice"]
    changes = {"lines": {**invoice["lines"], "data": lines, "has_more": False}}
    return samples.sample_event("invoice.paid", created=1_700_000_000, changes=changes)


class QuietHandler(BaseHTTPRequestHandler):
    """A request handler that keeps the test's output free of access log lines."""

    def log_message(self, format: str, *args: Any) -> None:
        pass


def answer_json(
    handler: BaseHTTPRequestHandler,
    status: int,
    body: dict[str, Any],
    headers: dict[str, str] | None = None,
) -> None:
    """Answer the request `handler` serves with `body` as JSON, as Stripe's API answers."""
    data = json.dumps(body).encode()
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(data)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(data)


@contextmanager
def loopback_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """Serve `handler` on a free 127.0.0.1 port for the block; yield its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, args=(0.01,), daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@dataclass
class FakeStripe:
    """A tiny stand-in for api.stripe.com: GET <path> answers `objects[path]` (status, body),
    such as "/v1/customers/cus_1" or "/v2/core/events/evt_1"; anything else is a 404. As
    Stripe does, it answers 401 to a request without an API key."""

    url: str
    objects: dict[str, tuple[int, dict[str, Any]]] = field(default_factory=dict)
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    def client(self) -> stripe.StripeClient:
        return stripe.StripeClient(
            "sk_test_fake", base_addresses={"api": self.url}, max_network_retries=0
        )


@contextmanager
def fake_stripe_server() -> Iterator[FakeStripe]:
    state = FakeStripe("")

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, dict(self.headers)))
            path = self.path.split("?")[0]
            status, body = state.objects.get(path, (404, not_found(path)))
            if not self.headers.get("Authorization", "").removeprefix("Bearer ").strip():
                status, body = 401, NO_API_KEY
            answer_json(self, status, body)

    with loopback_server(Handler) as url:
        state.url = url
        yield state


NO_API_KEY = {
    "error": {
        "type": "invalid_request_error",
        "message": "You did not provide an API key.",
    }
}


def not_found(resource: str) -> dict[str, Any]:
    return {
        "error": {
            "type": "invalid_request_error",
            "code": "resource_missing",
            "message": f"No such object: '{resource}'",
            "param": "id",
        }
    }


def create_table(table: str, region: str) -> None:
    """Create the ledger's table on the moto server, as the template defines it (on demand)."""
    client = boto3.client("dynamodb", region_name=region)
    client.create_table(TableName=table, **table_definition())
    client.get_waiter("table_exists").wait(TableName=table)


@dataclass
class RecordingPublisher(Publisher):
    """A bus that keeps what it is given (or fails, as EventBridge throttling would)."""

    entries: list[Entry] = field(default_factory=list)
    fail: bool = False

    def publish(self, entry: Entry) -> None:
        if self.fail:
            raise PublishFailed("EventBridge did not accept the event: ThrottlingException")
        self.entries.append(entry)
