"""`stripe-events endpoint sync` against a small Stripe-like webhook endpoints API.

The fake serves what sync uses, as Stripe does: a list, newest first, in pages
(`limit`, `starting_after`, `has_more`); create, which returns the `secret` once; update
(`POST /v1/webhook_endpoints/{id}`), which refuses `api_version` and ignores `secret`;
retrieve and delete. The stage is `dev` of .chalice/config.json, with its SSM parameters
on the moto server; the bucket and topic it leaves to `infra up` get test names.
"""

from __future__ import annotations

import itertools
import json
import re
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import boto3
import pytest
import stripe
from click.testing import CliRunner, Result

import stripe_events._secrets as stage_secrets
from stripe_events_ops import cli, endpoint, endpoint_target, project
from stripe_events_ops.clients import API_BASE_VARIABLE
from stripe_events_ops.endpoint import endpoint_group
from stripe_events_ops.endpoint_target import STAGE_TAG, wanted_event_types
from tests.conftest import REGION
from tests.helpers import ROOT, QuietHandler, loopback_server

# The SDK waits at least 0.5 s before its own retries; these tests need not.
pytestmark = pytest.mark.usefixtures("quick_sdk_retries")

API_KEY = "sk_test_endpoint_sync_only"
URL = "https://abc123.execute-api.us-east-1.amazonaws.com/api/stripe/webhook"
OTHER_URL = "https://hooks.example.com/api/stripe/webhook"
OLD_VERSION = "2024-06-20"
PAGE_CAP = 2  # the fake's largest page: a few endpoints already need several pages


@dataclass
class FakeStripe:
    endpoints: list[dict[str, Any]] = field(default_factory=list)  # oldest first
    destinations: list[dict[str, Any]] = field(default_factory=list)  # v2, oldest first
    requests: list[tuple[str, str, dict[str, Any]]] = field(default_factory=list)
    secrets: list[str] = field(default_factory=list)  # every endpoint secret create returned
    thin_secrets: list[str] = field(default_factory=list)  # every destination's
    fail_lists: int = 0  # answer this many list requests with a 500
    url: str = ""
    ids: Iterator[int] = field(default_factory=itertools.count)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(
        self,
        url: str = URL,
        enabled_events: list[str] | None = None,
        *,
        stage: str | None = None,
        api_version: str | None = stripe.api_version,
        status: str = "enabled",
        description: str | None = None,
    ) -> dict[str, Any]:
        """An endpoint made elsewhere (the Dashboard, another tool)."""
        endpoint = {
            "id": f"we_{next(self.ids):04d}fake",
            "object": "webhook_endpoint",
            "api_version": api_version,
            "application": None,
            "created": 1_700_000_000,
            "description": description,
            "enabled_events": enabled_events or ["charge.succeeded"],
            "livemode": False,
            "metadata": {STAGE_TAG: stage} if stage else {},
            "status": status,
            "url": url,
        }
        self.endpoints.append(endpoint)
        return endpoint

    def find(self, endpoint_id: str) -> dict[str, Any]:
        [found] = [e for e in self.endpoints if e["id"] == endpoint_id]
        return found

    def tagged(self, stage: str = "dev") -> list[dict[str, Any]]:
        return [e for e in self.endpoints if e["metadata"].get(STAGE_TAG) == stage]

    @property
    def changes(self) -> list[tuple[str, str, dict[str, Any]]]:
        """What was asked of the (v1) webhook endpoints, besides reading them."""
        return [r for r in self.requests if r[0] != "GET" and r[1].startswith("/v1/")]

    @property
    def destination_changes(self) -> list[tuple[str, str, dict[str, Any]]]:
        return [r for r in self.requests if r[0] != "GET" and r[1].startswith("/v2/")]

    def add_destination(
        self, url: str = URL, enabled_events: list[str] | None = None, *, stage: str | None = None
    ) -> dict[str, Any]:
        """A v2 event destination with thin payloads, made elsewhere."""
        destination = {
            "id": f"ed_{next(self.ids):04d}fake",
            "object": "v2.core.event_destination",
            "name": "made elsewhere",
            "description": "",
            "type": "webhook_endpoint",
            "event_payload": "thin",
            "enabled_events": enabled_events or ["v1.billing.meter.no_meter_found"],
            "metadata": {STAGE_TAG: stage} if stage else {},
            "status": "enabled",
            "livemode": False,
            "created": "2026-01-01T00:00:00.000Z",
            "updated": "2026-01-01T00:00:00.000Z",
            "webhook_endpoint": {"url": url, "signing_secret": None},
        }
        self.destinations.append(destination)
        return destination

    def destination_answer(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        """The v2 API's event destinations: JSON in, JSON out, the URL shown when included."""
        if path == "/v2/core/event_destinations" and method == "GET":
            shown = "webhook_endpoint.url" in params.get("include", [])
            page = [d if shown else redacted(d) for d in self.destinations]
            return 200, {"data": page, "next_page_url": None, "previous_page_url": None}
        if path == "/v2/core/event_destinations" and method == "POST":
            created = self.add_destination(
                params["webhook_endpoint"]["url"], list(params["enabled_events"])
            )
            created.update(name=params["name"], description=params.get("description", ""))
            created["metadata"] = dict(params.get("metadata", {}))
            secret = f"whsec_fake_thin_{secrets.token_hex(16)}"
            self.thin_secrets.append(secret)
            return 200, {
                **created,
                "webhook_endpoint": {**created["webhook_endpoint"], "signing_secret": secret},
            }
        match = re.fullmatch(r"/v2/core/event_destinations/(ed_\w+)(/enable)?", path)
        found = [d for d in self.destinations if match and d["id"] == match[1]]
        if not found:
            return 404, error("resource_missing", f"No such event destination: {path}")
        if match and match[2]:
            found[0]["status"] = "enabled"
        elif method == "DELETE":
            self.destinations.remove(found[0])
        else:
            if "enabled_events" in params:
                found[0]["enabled_events"] = list(params["enabled_events"])
            if "webhook_endpoint" in params:
                found[0]["webhook_endpoint"]["url"] = params["webhook_endpoint"]["url"]
        return 200, found[0]

    def answer(self, method: str, path: str, params: dict[str, Any]) -> tuple[int, Any]:
        with self.lock:
            self.requests.append((method, path, params))
            if path.startswith("/v2/core/event_destinations"):
                return self.destination_answer(method, path, params)
            if path == "/v1/webhook_endpoints" and method == "GET":
                if self.fail_lists > 0:
                    self.fail_lists -= 1
                    return 500, error("api_error", "Something went wrong on Stripe's end.")
                return self.list(params)
            if path == "/v1/webhook_endpoints" and method == "POST":
                return self.create(params)
            match = re.fullmatch(r"/v1/webhook_endpoints/(we_\w+)", path)
            found = [e for e in self.endpoints if match and e["id"] == match[1]]
            if not found:
                return 404, error("resource_missing", f"No such webhook endpoint: {path}")
            if method == "GET":
                return 200, found[0]
            if method == "DELETE":
                self.endpoints.remove(found[0])
                return 200, {"id": found[0]["id"], "object": "webhook_endpoint", "deleted": True}
            return self.update(found[0], params)

    def list(self, params: dict[str, Any]) -> tuple[int, Any]:
        newest_first = self.endpoints[::-1]
        ids = [e["id"] for e in newest_first]
        start = ids.index(params["starting_after"]) + 1 if "starting_after" in params else 0
        limit = min(int(params.get("limit", 10)), PAGE_CAP)
        page = newest_first[start : start + limit]
        more = start + limit < len(newest_first)
        return 200, {
            "object": "list",
            "url": "/v1/webhook_endpoints",
            "has_more": more,
            "data": page,
        }

    def create(self, params: dict[str, Any]) -> tuple[int, Any]:
        if "url" not in params or "enabled_events" not in params:
            return 400, error("parameter_missing", "url and enabled_events are required")
        created = self.add(
            params["url"],
            list(params["enabled_events"]),
            api_version=params.get("api_version"),
            description=params.get("description"),
        )
        created["metadata"] = dict(params.get("metadata", {}))
        secret = f"whsec_fake_{secrets.token_hex(16)}"
        self.secrets.append(secret)
        return 200, {**created, "secret": secret}  # only this answer carries it

    def update(self, found: dict[str, Any], params: dict[str, Any]) -> tuple[int, Any]:
        if "api_version" in params:
            return 400, error("parameter_unknown", "Received unknown parameter: api_version")
        for name in ("url", "description"):
            if name in params:
                found[name] = params[name]
        if "enabled_events" in params:
            found["enabled_events"] = list(params["enabled_events"])
        if "disabled" in params:
            found["status"] = "disabled" if params["disabled"] == "true" else "enabled"
        for key, value in params.get("metadata", {}).items():
            if value == "":
                found["metadata"].pop(key, None)  # Stripe: an empty value unsets the key
            else:
                found["metadata"][key] = value
        return 200, found


def redacted(destination: dict[str, Any]) -> dict[str, Any]:
    """What the v2 API shows of a destination unless its URL is asked for."""
    return {**destination, "webhook_endpoint": {"url": None, "signing_secret": None}}


def error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"type": "invalid_request_error", "code": code, "message": message}}


def decode(pairs: list[tuple[str, str]]) -> dict[str, Any]:
    """Stripe's form encoding: `enabled_events[0]=…` is a list, `metadata[key]=…` a dict."""
    result: dict[str, Any] = {}
    for key, value in pairs:
        match = re.fullmatch(r"(\w+)\[(\w*)\]", key)
        if match is None:
            result[key] = value
        elif match[2].isdigit() or not match[2]:
            result.setdefault(match[1], []).append(value)
        else:
            result.setdefault(match[1], {})[match[2]] = value
    return result


@contextmanager
def running_fake_stripe() -> Iterator[FakeStripe]:
    state = FakeStripe()

    class Handler(QuietHandler):
        def handle_any(self) -> None:
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            form = self.rfile.read(length).decode() if length else ""
            pairs = parse_qsl(url.query, keep_blank_values=True)
            if self.headers.get("Content-Type") == "application/json":  # the v2 API's
                params = {**decode(pairs), **json.loads(form or "{}")}
            else:
                params = decode(pairs + parse_qsl(form, keep_blank_values=True))
            if self.headers.get("Authorization") != f"Bearer {API_KEY}":
                status, body = 401, error("api_key_invalid", "Invalid API Key provided")
            else:
                status, body = state.answer(self.command, url.path, params)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_DELETE = handle_any

    with loopback_server(Handler) as url:
        state.url = url
        yield state


@dataclass
class DevStage:
    """Stage dev as .chalice/config.json defines it, on moto; tests may change `env`."""

    env: dict[str, str]
    account: str

    @property
    def secret_param(self) -> str:
        return self.env["STRIPE_WEBHOOK_SECRET_PARAM"]

    @property
    def api_key_param(self) -> str:
        return self.env["STRIPE_API_KEY_PARAM"]

    def stored_secret(self) -> tuple[str, str] | None:
        """(type, value) of the signing secret's parameter, or None."""
        ssm = boto3.client("ssm", region_name=REGION)
        try:
            found = ssm.get_parameter(Name=self.secret_param, WithDecryption=True)["Parameter"]
        except ssm.exceptions.ParameterNotFound:
            return None
        return found["Type"], found["Value"]

    def put_secret(self, value: str, kind: str = "SecureString") -> None:
        boto3.client("ssm", region_name=REGION).put_parameter(
            Name=self.secret_param, Value=value, Type=kind, Overwrite=True
        )


def delete_parameters(*names: str) -> None:
    ssm = boto3.client("ssm", region_name=REGION)
    for name in names:
        with suppress(ssm.exceptions.ParameterNotFound):
            ssm.delete_parameter(Name=name)


def forget_cached_parameters() -> None:
    """Parameters are cached by name, across tests; the app would read them afresh."""
    stage_secrets.forget()


@contextmanager
def dev_stage(monkeypatch: pytest.MonkeyPatch, fake: FakeStripe) -> Iterator[DevStage]:
    """Stage dev with its API key in SSM and no signing secret yet; Stripe is the fake.

    `infra up` writes the bucket and topic into the stage; the tests set them here, so the
    commands see a complete stage. Everything is removed afterwards: the moto server is
    shared by the whole session, and other tests create the same names.
    """
    original = project.stage_environment
    account = boto3.client("sts", region_name=REGION).get_caller_identity()["Account"]
    stage = DevStage(original("dev", ROOT), account)
    prefix = "stripe-events-dev"
    stage.env["STRIPE_EVENTS_BUCKET"] = f"{prefix}-bodies-{account}"
    stage.env["STRIPE_EVENTS_TOPIC_ARN"] = f"arn:aws:sns:{REGION}:{account}:{prefix}-notifications"

    def patched(name: str, project_dir: Path) -> dict[str, str]:
        return dict(stage.env) if name == "dev" else original(name, project_dir)

    monkeypatch.setattr(project, "stage_environment", patched)
    monkeypatch.setenv(API_BASE_VARIABLE, fake.url)
    delete_parameters(stage.secret_param)
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=stage.api_key_param, Value=API_KEY, Type="SecureString", Overwrite=True
    )
    forget_cached_parameters()
    try:
        yield stage
    finally:
        delete_parameters(stage.secret_param, stage.api_key_param)
        forget_cached_parameters()


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with running_fake_stripe() as state:
        yield state


@pytest.fixture
def dev(moto_url: str, monkeypatch: pytest.MonkeyPatch, fake: FakeStripe) -> Iterator[DevStage]:
    with dev_stage(monkeypatch, fake) as stage:
        yield stage


def sync(*args: str, url: str = URL, input: str | None = None) -> Result:
    return CliRunner().invoke(
        endpoint_group, ["sync", "--stage", "dev", "--url", url, *args], input=input
    )


def assert_no_secret(result: Result, fake: FakeStripe, caplog: pytest.LogCaptureFixture) -> None:
    assert fake.secrets or result.exit_code != 0
    for secret in fake.secrets:
        assert secret not in result.output
        assert secret not in caplog.text


def test_the_commands_are_registered() -> None:
    assert cli.main.commands["endpoint"] is endpoint_group
    assert "sync" in endpoint_group.commands
    assert "doctor" in cli.main.commands


def test_create_stores_the_secret_in_ssm_and_a_second_sync_changes_nothing(
    dev: DevStage, fake: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    for n in range(5):  # other endpoints of the account, on earlier pages than ours
        fake.add(f"https://other{n}.example.com/hook", stage=f"other{n}")
    created = sync("--yes")
    assert created.exit_code == 0, created.output
    assert f"Create an endpoint for stage dev (test mode):\n  url: {URL}\n" in created.output
    assert f"  api_version: {stripe.api_version}\n" in created.output
    assert "    + invoice.payment_failed\n" in created.output
    lists = [r for r in fake.requests if r[:2] == ("GET", "/v1/webhook_endpoints")]
    assert len(lists) == 3  # 5 endpoints, 2 per page: auto-pagination read them all

    [ours] = fake.tagged()
    assert ours["url"] == URL
    # The same list `stripe-events enabled-events` prints.
    enabled = CliRunner().invoke(cli.main, ["enabled-events"]).stdout.splitlines()
    assert ours["enabled_events"] == enabled == list(wanted_event_types())
    assert ours["api_version"] == stripe.api_version
    assert ours["status"] == "enabled"
    assert "stage dev" in ours["description"]
    # Thin types go to an event destination of their own, at the same URL, whose secret
    # the parameter holds beside the endpoint's: the webhook verifies both.
    [destination] = fake.destinations
    thin = CliRunner().invoke(cli.main, ["enabled-events", "--thin"]).stdout.splitlines()
    assert (destination["event_payload"], destination["type"]) == ("thin", "webhook_endpoint")
    assert destination["enabled_events"] == thin == list(wanted_event_types(thin=True))
    assert destination["webhook_endpoint"]["url"] == URL
    assert destination["metadata"] == {STAGE_TAG: "dev"}
    [secret], [thin_secret] = fake.secrets, fake.thin_secrets
    assert dev.stored_secret() == ("SecureString", f"{secret},{thin_secret}")
    assert f"Created endpoint {ours['id']}. Its signing secret is in {dev.secret_param}" in (
        created.output
    )
    assert f"Created thin event destination {destination['id']}." in created.output
    assert_no_secret(created, fake, caplog)
    assert thin_secret not in created.output

    again = sync()  # no --yes: with nothing to change, it asks nothing
    assert again.exit_code == 0, again.output
    assert f"Endpoint {ours['id']} is up to date: {URL}, {len(enabled)} event types" in (
        again.output
    )
    assert f"Thin event destination {destination['id']} is up to date: 2 event types" in (
        again.output
    )
    assert "!" not in again.output
    assert len(fake.changes) == 1  # the create
    assert len(fake.destination_changes) == 1
    assert dev.stored_secret() == ("SecureString", f"{secret},{thin_secret}")


def test_nothing_is_created_when_the_answer_is_no(dev: DevStage, fake: FakeStripe) -> None:
    declined = sync(input="n\n")
    assert declined.exit_code == 1
    assert "Create it? [y/N]: n\nAborted!" in declined.output
    dry = sync("--dry-run")
    assert dry.exit_code == 0, dry.output
    assert dry.output.endswith("Dry run: nothing changed.\n")
    assert (fake.endpoints, fake.changes) == ([], [])
    assert dev.stored_secret() is None


def changed_subscribers(app: Any) -> dict[str, list[str]]:
    """The app's functions without payouts, and one more that handles account.updated."""
    kept = {t: f for t, f in original_subscribers(app).items() if f != ["payouts"]}
    return {**kept, "account.updated": ["accounts"]}


original_subscribers = project.subscribers


def test_a_router_change_is_shown_then_applied_only_when_confirmed(
    dev: DevStage, fake: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert sync("--yes").exit_code == 0
    [ours] = fake.tagged()
    before = list(ours["enabled_events"])
    secret = dev.stored_secret()
    monkeypatch.setattr(endpoint_target, "subscribers", changed_subscribers)

    declined = sync(input="n\n")
    assert declined.exit_code == 1
    assert declined.output.splitlines() == [
        f"Endpoint {ours['id']} (stage dev, test mode) differs:",
        "  enabled_events: 1 to add, 2 to remove",
        "    + account.updated",
        "    - payout.failed",
        "    - payout.paid",
        f"Update endpoint {ours['id']}? [y/N]: n",
        "Aborted!",
    ]
    dry = sync("--dry-run")
    assert dry.exit_code == 0
    assert "    + account.updated\n" in dry.output
    assert ours["enabled_events"] == before
    assert len(fake.changes) == 1  # still only the create

    applied = sync("--yes")
    assert applied.exit_code == 0, applied.output
    assert f"Updated endpoint {ours['id']}." in applied.output
    assert ours["enabled_events"] == list(wanted_event_types())
    assert "account.updated" in ours["enabled_events"]
    method, path, params = fake.changes[-1]
    assert (method, path) == ("POST", f"/v1/webhook_endpoints/{ours['id']}")
    assert set(params) == {"enabled_events"}  # only what the diff showed
    assert dev.stored_secret() == secret  # an update returns no secret and keeps ours
    assert "is up to date" in sync().output


def test_the_tag_finds_the_endpoint_after_the_url_changed(dev: DevStage, fake: FakeStripe) -> None:
    assert sync("--yes").exit_code == 0
    [ours] = fake.tagged()
    secret = dev.stored_secret()
    fake.add(OTHER_URL)  # someone else's endpoint at the new URL, untagged
    moved = sync("--yes", url=OTHER_URL)
    assert moved.exit_code == 0, moved.output
    assert f"  url: {URL} → {OTHER_URL}\n" in moved.output
    assert fake.tagged() == [ours] and ours["url"] == OTHER_URL
    # The thin destination moves with it, and keeps its secret.
    [destination] = fake.destinations
    assert destination["webhook_endpoint"]["url"] == OTHER_URL
    assert f"Updated thin event destination {destination['id']}." in moved.output
    assert len(fake.endpoints) == 2 and len(fake.secrets) == 1
    assert dev.stored_secret() == secret


def test_a_dashboard_endpoint_is_adopted_and_what_sync_cannot_fix_is_explained(
    dev: DevStage, fake: FakeStripe, caplog: pytest.LogCaptureFixture
) -> None:
    made = fake.add(
        URL,
        ["charge.succeeded", "account.updated"],
        api_version=OLD_VERSION,
        status="disabled",
        description="made by hand",
    )
    adopted = sync("--yes")
    assert adopted.exit_code == 0, adopted.output
    out = adopted.output
    assert "  status: disabled → enabled\n" in out
    assert "    - account.updated\n" in out and "    + invoice.paid\n" in out
    assert "  description: 'made by hand' → 'stripe-events, stage dev" in out
    assert f"  metadata {STAGE_TAG}: (unset) → dev\n" in out
    assert (
        f"! api_version: the endpoint sends events in {OLD_VERSION}, the stripe package "
        f"expects {stripe.api_version}. Stripe sets an endpoint's version only when it "
        f"creates it: `stripe-events endpoint sync --stage dev --url {URL} --recreate`"
    ) in out
    assert f"! {dev.secret_param} does not exist" in out
    assert (
        "reveal or roll it in the Dashboard" in out and "or run this command with --recreate" in out
    )
    assert "run `stripe-events backfill --stage dev --since <when it stopped>`" in out
    assert fake.tagged() == [made]
    assert made["status"] == "enabled" and made["api_version"] == OLD_VERSION
    # Stripe gave no secret for the endpoint: the parameter holds the new thin one's only.
    assert dev.stored_secret() == ("SecureString", fake.thin_secrets[0])

    # --recreate: a new endpoint with the pinned version; both secrets verify meanwhile.
    dev.put_secret("whsec_the_old_endpoints")
    recreated = sync("--recreate", "--yes")
    assert recreated.exit_code == 0, recreated.output
    [new] = fake.tagged()
    assert new["id"] != made["id"] and new["api_version"] == stripe.api_version
    assert made["metadata"] == {} and made["status"] == "enabled"
    assert f"replaced by {new['id']}" in made["description"]
    [secret] = fake.secrets
    assert dev.stored_secret() == ("SecureString", f"{secret},whsec_the_old_endpoints")
    assert f"The old endpoint {made['id']} still delivers" in recreated.output
    assert "whsec_the_old_endpoints" not in recreated.output
    assert_no_secret(recreated, fake, caplog)
    final = sync()
    assert "is up to date" in final.output and "!" not in final.output


def test_an_unstorable_secret_undoes_the_create(
    dev: DevStage,
    fake: FakeStripe,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    def refuse(target: endpoint_target.Target, values: list[str]) -> None:
        # An error that repeats what it was given must not print the secret either.
        raise RuntimeError(f"AccessDeniedException: not allowed to store {values[0]}")

    monkeypatch.setattr(endpoint, "store_secrets", refuse)
    failed = sync("--yes")
    assert failed.exit_code == 1
    assert f"could not store the signing secret in {dev.secret_param}" in failed.output
    assert "deleted the new endpoint we_" in failed.output and "nothing changed" in failed.output
    assert "not allowed to store whsec_…" in failed.output
    assert fake.endpoints == [] and dev.stored_secret() is None
    assert_no_secret(failed, fake, caplog)


def test_several_tagged_endpoints_are_refused(dev: DevStage, fake: FakeStripe) -> None:
    first, second = fake.add(stage="dev"), fake.add(OTHER_URL, stage="dev")
    refused = sync("--yes")
    assert refused.exit_code == 1
    assert f"several endpoints have metadata {STAGE_TAG}=dev: {second['id']}, {first['id']}" in (
        refused.output
    )
    assert fake.changes == []


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://abc.example.com/api/stripe/webhook", "Stripe sends webhooks to https:// URLs"),
        (
            "https://abc.example.com/api/",
            "did you mean https://abc.example.com/api/stripe/webhook?",
        ),
    ],
)
def test_a_wrong_url_is_refused_before_anything_is_read(url: str, message: str) -> None:
    result = sync(url=url)
    assert result.exit_code == 2
    assert message in result.output


def test_a_stage_that_cannot_have_an_endpoint_is_refused(dev: DevStage, fake: FakeStripe) -> None:
    local = CliRunner().invoke(endpoint_group, ["sync", "--stage", "local", "--url", URL])
    assert local.exit_code == 2
    assert "stripe listen --forward-to 127.0.0.1:8000/stripe/webhook" in local.output

    dev.env["STRIPE_LIVEMODE"] = "true"  # a live-mode stage with a test-mode key
    mixed = sync("--yes")
    assert mixed.exit_code == 2
    assert "accepts live mode events only" in mixed.output
    assert "its API key is a test mode key" in mixed.output

    dev.env["STRIPE_LIVEMODE"] = "false"
    boto3.client("ssm", region_name=REGION).put_parameter(
        Name=dev.api_key_param, Value="sk_test_revoked", Type="SecureString", Overwrite=True
    )
    forget_cached_parameters()
    revoked = sync("--yes")
    assert revoked.exit_code == 1
    assert f"Stripe refused the API key of stage dev (in {dev.api_key_param})" in revoked.output
    assert "sk_test_revoked" not in revoked.output
    assert fake.changes == []


def test_recreate_without_the_old_secret_says_the_old_endpoint_is_refused(
    dev: DevStage, fake: FakeStripe
) -> None:
    old = fake.add(stage="dev", api_version=OLD_VERSION)
    recreated = sync("--recreate", "--yes")
    assert recreated.exit_code == 0, recreated.output
    assert f"its secret was not in {dev.secret_param}, so the webhook refuses" in recreated.output
    [secret], [thin] = fake.secrets, fake.thin_secrets
    assert dev.stored_secret() == ("SecureString", f"{secret},{thin}")
    assert old["metadata"] == {} and fake.tagged() != [old]
