"""Handlers' Stripe client retries as stripe-python does, as many times as the settings say.

Against a Stripe-like server on loopback that answers a script: a handler that fetches
a customer succeeds after a 500, a 409, a dropped connection, and a 429 that carries
`Stripe-Should-Retry: true`; a bare 429 (a rate limit: retrying makes it worse) and
`Stripe-Should-Retry: false` are not retried; and the count of retries is the setting's.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import stripe

from stripe_events._context import Context
from stripe_events._dispatch import Dispatcher, StripeApi
from stripe_events._errors import HandlerFailed, SettingsError
from stripe_events._router import Router
from stripe_events._settings import DEFAULT_NETWORK_RETRIES, Settings
from stripe_events_local.payloads import LocalPayloadStore
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import samples
from tests.helpers import QuietHandler, answer_json, load_app, local_stage_env, loopback_server

CUSTOMER = {"id": "cus_retry", "object": "customer", "email": "a@example.com"}
DROP = 0  # in a script: close the connection without an answer

# (status, headers) answered in turn; once the script is spent, 200 and the customer.
Script = list[tuple[int, dict[str, str]]]


@dataclass
class ScriptedStripe:
    url: str = ""
    script: Script = field(default_factory=list)
    requests: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


@contextmanager
def scripted_stripe() -> Iterator[ScriptedStripe]:
    state = ScriptedStripe()

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            with state.lock:
                state.requests += 1
                status, headers = state.script.pop(0) if state.script else (200, {})
            if status == DROP:
                self.close_connection = True
                self.connection.close()
                return
            body = CUSTOMER if status == 200 else {"error": {"type": "api_error", "message": "x"}}
            answer_json(self, status, body, headers)

    with loopback_server(Handler) as url:
        state.url = url
        yield state


def fetching_router() -> Router:
    router = Router("crm")

    @router.on("customer.updated")
    def refetch(event: stripe.Event, ctx: Context) -> None:
        assert ctx.stripe is not None
        customer = ctx.stripe.v1.customers.retrieve(event.data.object.id)
        ctx.store.put("fetched", customer.id, {"email": customer.email})

    return router


def dispatch_against(
    fake: ScriptedStripe, tmp_path: Path, script: Script, retries: int = DEFAULT_NETWORK_RETRIES
) -> str:
    """The handler's outcome status after the script, the same event each time."""
    fake.script, fake.requests = list(script), 0
    api = StripeApi(lambda: "sk_test_retries", fake.url, max_network_retries=retries)
    store = SqliteStore(tmp_path / f"ledger-{len(list(tmp_path.iterdir()))}.sqlite3")
    dispatcher = Dispatcher(store, lambda: LocalPayloadStore(tmp_path), stripe_api=api)
    event = samples.sample_event("customer.updated", changes={"id": CUSTOMER["id"]})
    try:
        return dispatcher.dispatch(fetching_router(), event)["crm.refetch"].status
    except HandlerFailed:
        return "error"


@pytest.fixture
def fake() -> Iterator[ScriptedStripe]:
    with scripted_stripe() as server:
        yield server


SHOULD_RETRY = {"Stripe-Should-Retry": "true"}
SHOULD_NOT = {"Stripe-Should-Retry": "false"}


@pytest.mark.parametrize(
    ("script", "status", "requests"),
    [
        ([(500, {})], "ok", 2),
        ([(503, {}), (502, {})], "ok", 3),
        ([(409, {})], "ok", 2),
        ([(DROP, {})], "ok", 2),
        ([(429, SHOULD_RETRY)], "ok", 2),
        ([(429, {})], "error", 1),
        ([(500, SHOULD_NOT)], "error", 1),
        ([(404, {})], "error", 1),
        ([(500, {})] * 3, "error", 3),  # the first try and two retries
    ],
    ids=[
        "500",
        "503-then-502",
        "409",
        "dropped-connection",
        "429-should-retry",
        "429-rate-limited",
        "500-should-not-retry",
        "404",
        "500-every-time",
    ],
)
@pytest.mark.usefixtures("quick_sdk_retries")
def test_a_handlers_fetch_retries_what_stripe_python_retries(
    fake: ScriptedStripe, tmp_path: Path, script: Script, status: str, requests: int
) -> None:
    assert dispatch_against(fake, tmp_path, script) == status
    assert fake.requests == requests


@pytest.mark.usefixtures("quick_sdk_retries")
def test_the_number_of_retries_is_the_settings(fake: ScriptedStripe, tmp_path: Path) -> None:
    assert dispatch_against(fake, tmp_path, [(500, {})], retries=0) == "error"
    assert fake.requests == 1
    assert dispatch_against(fake, tmp_path, [(500, {})] * 4, retries=4) == "ok"
    assert fake.requests == 5


def test_the_count_comes_from_stripe_max_network_retries(tmp_path: Path) -> None:
    assert Settings.from_env({}).stripe_network_retries == DEFAULT_NETWORK_RETRIES == 2
    env = {**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(tmp_path)}
    module = load_app({**env, "STRIPE_MAX_NETWORK_RETRIES": "5"})
    assert module.events.dispatcher.stripe_api.max_network_retries == 5
    assert Settings.from_env({"STRIPE_MAX_NETWORK_RETRIES": "0"}).stripe_network_retries == 0
    with pytest.raises(SettingsError, match="STRIPE_MAX_NETWORK_RETRIES must be at least 0"):
        Settings.from_env({"STRIPE_MAX_NETWORK_RETRIES": "-1"})
