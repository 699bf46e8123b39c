"""Thin event notifications: the catalog, routers, dispatch, fetching, and billing meters."""

from __future__ import annotations

import json
import typing
from pathlib import Path
from typing import Any

import pytest
import stripe
from chalice.test import Client
from stripe.events import (
    ALL_EVENT_NOTIFICATIONS,
    V1BillingMeterErrorReportTriggeredEventNotification,
)
from stripe.events._event_classes import get_v2_event_notification_class

import stripe_events._catalog as catalog
from chalicelib.resources import billing_meters
from stripe_events._context import Context
from stripe_events._dispatch import Dispatcher, StripeApi
from stripe_events._envelope import parse_event, to_entry
from stripe_events._errors import HandlerFailed, UnknownEventType
from stripe_events._notifier import Notification
from stripe_events._router import Router
from stripe_events._settings import Settings
from stripe_events_local.bus import LocalBus
from stripe_events_local.outbox import OutboxNotifier
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import (
    InProcessStripe,
    local_dispatcher,
    module_context,
    outbox,
    run_handlers,
    samples,
)
from tests.helpers import ROOT, FakeStripe, load_app, local_stage_env, signed_headers

ERRORS = "v1.billing.meter.error_report_triggered"
NO_METER = "v1.billing.meter.no_meter_found"


def test_the_thin_catalog_is_the_packages_notification_classes() -> None:
    # The catalog reads the package's lookup table; the library's own answer is its Union.
    names = [ref.__forward_arg__ for ref in typing.get_args(ALL_EVENT_NOTIFICATIONS)]
    classes = {getattr(stripe.events, name) for name in names if name != "UnknownEventNotification"}
    assert {c.LOOKUP_TYPE for c in classes} == set(catalog.thin_event_types())
    for event_type in catalog.thin_event_types():
        assert event_type == get_v2_event_notification_class(event_type).LOOKUP_TYPE
    assert len(catalog.thin_event_types()) >= 300  # stripe 16.1.0: 326


def test_a_thin_typo_fails_at_import_with_the_closest_names() -> None:
    router = Router("meters")
    with pytest.raises(UnknownEventType, match=r"v1\.billing\.meter\.no_meter_found"):
        router.on("v1.billing.meter.no_meter_fund")


def test_a_handler_takes_one_kind_of_event() -> None:
    with pytest.raises(TypeError) as caught:
        Router("mixed").on("invoice.paid", NO_METER)
    assert str(caught.value) == (
        f"Router.on{('invoice.paid', NO_METER)!r} mixes snapshot and thin event types: their "
        "handlers receive different objects (a stripe.Event, an EventNotification); use two"
    )


def test_thin_types_are_not_snapshot_types_and_the_reverse() -> None:
    router = Router("both")

    def snapshot(event: Any, ctx: Context) -> None:
        pass

    def thin(notification: Any, ctx: Context) -> None:
        pass

    router.on("*")(snapshot)
    router.on("v1.billing.meter.*")(thin)
    assert [h.thin for h in router.handlers_for(NO_METER)] == [True]
    assert [h.thin for h in router.handlers_for("invoice.paid")] == [False]
    assert catalog.expand("*") == list(catalog.event_types())


# Dispatch ---------------------------------------------------------------------------------


def error_report(**fields: Any) -> dict[str, Any]:
    notification = samples.sample_event(ERRORS, created=1_769_860_805)
    return {**notification, **fields}


def serve(fake: FakeStripe, notification: dict[str, Any]) -> None:
    """The fake Stripe serves the event, as the Events API would return it."""
    path = f"/v2/core/events/{notification['id']}"
    fake.objects[path] = (200, samples.thin_event(notification))


def dispatcher(tmp_path: Path, fake: FakeStripe, key: str = "sk_test_thin") -> Dispatcher:
    base = local_dispatcher(SqliteStore(tmp_path / "state.sqlite3"), tmp_path)
    base.stripe_api = StripeApi(lambda: key, fake.url)
    return base


def test_a_thin_handler_gets_the_typed_notification_bound_to_its_account(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    seen: list[Any] = []
    router = Router("meters")

    @router.on(ERRORS)
    def fetch(notification: Any, ctx: Context) -> None:
        seen.append((notification, notification.fetch_event(), ctx.stripe))

    notification = error_report(context="acct_1Nv0FGQ9RKHgCVdK")
    serve(fake_stripe, notification)
    hub = dispatcher(tmp_path, fake_stripe)
    dispatcher_client = hub.stripe_api.for_mode(livemode=False)
    outcomes = hub.dispatch(router, notification)
    assert {n: o.status for n, o in outcomes.items()} == {"meters.fetch": "ok"}
    [(typed, event, client)] = seen
    assert isinstance(typed, V1BillingMeterErrorReportTriggeredEventNotification)
    assert typed.related_object.id == notification["related_object"]["id"]
    assert event.data.reason.error_types[0].code == "meter_event_customer_not_found"
    [(path, headers)] = fake_stripe.requests
    assert path == f"/v2/core/events/{notification['id']}"
    assert headers["Stripe-Context"] == "acct_1Nv0FGQ9RKHgCVdK"  # the connected account's
    assert headers["Authorization"] == "Bearer sk_test_thin"  # with the stage's key
    # The handler's own client calls Stripe in the connected account too.
    assert client is not None and client is not dispatcher_client


def test_thin_events_are_run_once_and_kept_in_the_ledger(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    runs: list[str] = []
    router = Router("meters")
    router.on(ERRORS)(lambda notification, ctx: runs.append(notification.id))
    notification = error_report()
    hub = dispatcher(tmp_path, fake_stripe)
    hub.dispatch(router, json.dumps(notification))
    hub.dispatch(router, notification)  # EventBridge delivers it again
    assert runs == [notification["id"]]
    entry = hub.store.event(notification["id"])
    assert entry is not None
    assert (entry.type, entry.created) == (ERRORS, 1_769_860_805)
    assert json.loads(entry.body or "") == notification  # replay publishes it as it came


def test_a_failing_thin_handler_is_recorded_for_failures_and_replay(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    router = Router("meters")
    router.on(ERRORS)(lambda notification, ctx: notification.fetch_event())
    notification = error_report()  # the fake Stripe does not know it: a 404
    hub = dispatcher(tmp_path, fake_stripe)
    with pytest.raises(HandlerFailed):
        hub.dispatch(router, notification)
    [failing] = hub.store.failures()
    assert failing.id == notification["id"]
    assert failing.failing["meters.<lambda>"].error_type == "InvalidRequestError"
    serve(fake_stripe, notification)
    assert hub.dispatch(router, notification)["meters.<lambda>"].status == "ok"


# Billing meters ---------------------------------------------------------------------------


def outbox_of(hub: Dispatcher) -> list[Notification]:
    assert hub.notifier is not None
    notifier = hub.notifier()
    assert isinstance(notifier, OutboxNotifier)
    return notifier.sent()


@pytest.mark.parametrize("event_type", [ERRORS, NO_METER])
def test_refused_usage_is_notified_once_with_its_errors(
    tmp_path: Path, fake_stripe: FakeStripe, event_type: str
) -> None:
    notification = samples.sample_event(event_type)
    serve(fake_stripe, notification)
    hub = dispatcher(tmp_path, fake_stripe)
    hub.dispatch(billing_meters.router, notification)
    hub.dispatch(billing_meters.router, notification)
    [sent] = outbox_of(hub)
    meter = (notification.get("related_object") or {}).get("id")
    data = samples.THIN_EVENT_DATA[event_type]
    [error_type] = data["reason"]["error_types"]
    [sample] = error_type["sample_errors"]
    assert sent.kind == "meter_errors"
    assert (
        sent.subject == f"Usage refused ({f'meter {meter}' if meter else 'no meter'}): {event_type}"
    )
    assert sent.message == {
        "event": notification["id"],
        "type": event_type,
        "meter": meter,
        "summary": data["developer_message_summary"],
        "window": [data["validation_start"], data["validation_end"]],
        "errors": [
            {
                "code": error_type["code"],
                "count": error_type["error_count"],
                "samples": [
                    {"message": sample["error_message"], "request": sample["request"]["identifier"]}
                ],
            }
        ],
    }


def test_with_a_key_of_the_other_mode_a_fetch_is_refused_without_the_key(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    failures: list[Exception] = []
    router = Router("meters")

    @router.on(ERRORS)
    def fetch(notification: Any, ctx: Context) -> None:
        try:
            notification.fetch_event()
        except stripe.AuthenticationError as error:
            failures.append(error)

    notification = error_report()
    serve(fake_stripe, notification)
    # A live key for a test-mode event: its objects are not that key's to see, so the
    # fetch goes without a key, and Stripe refuses it.
    dispatcher(tmp_path, fake_stripe, key="sk_live_thin").dispatch(router, notification)
    assert len(failures) == 1
    [(_, headers)] = fake_stripe.requests
    assert "sk_live_thin" not in str(headers)


def test_without_an_api_key_the_notice_says_how_to_get_the_errors(tmp_path: Path) -> None:
    hub = local_dispatcher(SqliteStore(tmp_path / "state.sqlite3"), tmp_path)
    notification = samples.sample_event(ERRORS)
    hub.dispatch(billing_meters.router, notification)
    [sent] = outbox_of(hub)
    assert sent.message["errors"] is None
    assert "STRIPE_API_KEY" in sent.message["summary"]


def test_in_a_deployed_stage_the_notice_names_the_keys_parameter(tmp_path: Path) -> None:
    hub = local_dispatcher(SqliteStore(tmp_path / "state.sqlite3"), tmp_path)
    setting = Settings(stage="prod", api_key_param="/stripe-events-prod/api-key").api_key_setting
    hub.stripe_api = StripeApi(str, "", setting)  # no key of this event's mode
    hub.dispatch(billing_meters.router, samples.sample_event(ERRORS))
    [sent] = outbox_of(hub)
    assert sent.message["summary"] == (
        "no Stripe API key of this event's mode in the SSM parameter "
        "/stripe-events-prod/api-key (STRIPE_API_KEY_PARAM): see the event in the Dashboard"
    )


# The test kit: InProcessStripe ------------------------------------------------------------


def test_the_kit_makes_every_thin_types_notification_and_serves_its_fetches() -> None:
    api = InProcessStripe()
    unbuildable = set()
    for event_type in catalog.thin_event_types():
        notification = api.notification(event_type)
        assert type(notification) is get_v2_event_notification_class(event_type)
        assert notification.fetch_event().id == notification.id
        related = getattr(notification, "related_object", None)
        if related is None:
            continue
        try:
            fetched = notification.fetch_related_object()  # type: ignore[attr-defined]
        except AttributeError:
            unbuildable.add(event_type)
            continue
        assert fetched.object == related.type
    # stripe 16.1.0 cannot build Stripe's own example of balance_settings: a null where
    # it expects a map of objects (`automatic_transfer_rules_by_currency`).
    assert unbuildable == {"v1.balance_settings.updated"}
    assert all(method == "GET" for method, _, _ in api.requests)
    assert not any(path.startswith("/v1/events") for _, path, _ in api.requests)


def test_the_kit_answers_what_it_does_not_hold_as_stripe_does() -> None:
    api = InProcessStripe()
    with pytest.raises(stripe.InvalidRequestError, match="No such object") as missing:
        api.client.v1.customers.retrieve("cus_unknown")
    assert (missing.value.http_status, missing.value.code) == (404, "resource_missing")
    api.objects["/v1/customers/cus_1"] = {"id": "cus_1", "object": "customer"}
    assert api.client.v1.customers.retrieve("cus_1").id == "cus_1"
    with pytest.raises(stripe.InvalidRequestError):  # it serves reads only
        api.client.v1.customers.update("cus_1", {"name": "x"})


def test_the_kit_runs_the_billing_meters_module_in_the_events_account(tmp_path: Path) -> None:
    api = InProcessStripe()
    notification = api.notification(ERRORS, context="acct_1Nv0FGQ9RKHgCVdK")
    ctx = module_context(tmp_path, client=api.client)
    run_handlers(billing_meters.router, notification, ctx)
    [sent] = outbox(ctx)
    assert sent.message["errors"][0]["code"] == "meter_event_customer_not_found"
    # As in Lambda, the handler's calls go to the account the event happened in.
    [(_, path, headers)] = api.requests
    assert (path, headers["Stripe-Context"]) == (
        f"/v2/core/events/{notification.id}",
        "acct_1Nv0FGQ9RKHgCVdK",
    )


# End to end, locally: the webhook, the local bus, the function ------------------------------


@pytest.fixture
def local_app(tmp_path: Path, fake_stripe: FakeStripe) -> Any:
    """The app in stage `local`, with an API key, fetching from the fake Stripe."""
    env = {
        **local_stage_env(),
        "STRIPE_EVENTS_STATE_DIR": str(tmp_path),
        "STRIPE_API_KEY": "sk_test_local",
        "STRIPE_API_BASE": fake_stripe.url,
    }
    return load_app(env)


def test_a_thin_event_through_the_local_app(local_app: Any, fake_stripe: FakeStripe) -> None:
    module = local_app
    notification = samples.sample_event(ERRORS)
    serve(fake_stripe, notification)
    body = samples.encode(notification)
    client = Client(module.app, stage_name="local", project_dir=str(ROOT))
    headers = signed_headers(body, module.events.settings.webhook_secrets[0])
    assert client.http.post("/stripe/webhook", headers=headers, body=body).status_code == 200
    outcomes = module.events.store.outcomes(notification["id"])
    assert {n: o.status for n, o in outcomes.items()} == {"billing_meters.alert_meter_errors": "ok"}
    [sent] = module.events.notifier.sent()
    assert sent.message["errors"][0]["code"] == "meter_event_customer_not_found"


def test_stripes_eventbridge_destination_with_thin_payloads(
    local_app: Any, fake_stripe: FakeStripe
) -> None:
    module = local_app
    notification = samples.sample_event(NO_METER)
    serve(fake_stripe, notification)
    text = json.dumps(notification)
    entry = to_entry(text, parse_event(text, None), module.events.settings)
    entry["Source"] = "aws.partner/stripe.com/ed_61Thin"
    LocalBus(lambda: module.app, "us-east-1").publish(entry)
    outcomes = module.events.store.outcomes(notification["id"])
    assert {n: o.status for n, o in outcomes.items()} == {"billing_meters.alert_meter_errors": "ok"}


def test_a_thin_handlers_own_calls_go_to_the_events_account(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    router = Router("meters")

    @router.on(ERRORS)
    def look(notification: Any, ctx: Context) -> None:
        assert ctx.stripe is not None
        ctx.stripe.v1.customers.retrieve("cus_A")

    fake_stripe.objects["/v1/customers/cus_A"] = (200, {"id": "cus_A", "object": "customer"})
    dispatcher(tmp_path, fake_stripe).dispatch(router, error_report(context="acct_9"))
    [(path, headers)] = fake_stripe.requests
    assert (path, headers["Stripe-Context"]) == ("/v1/customers/cus_A", "acct_9")


def test_without_a_key_a_thin_handler_in_an_account_gets_no_client(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    seen: list[Any] = []
    router = Router("meters")

    @router.on(ERRORS)
    def look(notification: Any, ctx: Context) -> None:
        seen.append(ctx.stripe)

    outcomes = dispatcher(tmp_path, fake_stripe, key="").dispatch(
        router, error_report(context="acct_9")
    )
    assert seen == [None] and outcomes["meters.look"].status == "ok"
