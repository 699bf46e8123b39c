"""`stripe-events doctor`: one line per check, one "✗ problem — fix" line per problem.

Stage dev of .chalice/config.json, with its table, bucket, topic and parameters on the
moto server, and its endpoint on the Stripe-like server of test_endpoint.py. Each test
starts from a complete setup and breaks one thing (or several).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
import stripe
from click.testing import CliRunner, Result

from stripe_events._settings import LOCAL_SECRET
from stripe_events_ops import doctor
from stripe_events_ops.doctor import doctor_command
from stripe_events_ops.endpoint_target import STAGE_TAG, wanted_event_types
from stripe_events_ops.project import unwired_routers
from stripe_events_ops.template import Names
from tests import stage_resources
from tests.conftest import REGION
from tests.helpers import ROOT
from tests.integration.test_endpoint import (
    OLD_VERSION,
    URL,
    DevStage,
    FakeStripe,
    dev_stage,
    running_fake_stripe,
    sync,
)
from tests.stage_resources import topic_arn

# The SDK waits at least 0.5 s before its own retries; these tests need not.
pytestmark = pytest.mark.usefixtures("quick_sdk_retries")

SECRET = "whsec_doctor_test_secret"
PREFIX = "stripe-events-dev"


@dataclass
class Setup:
    stage: DevStage
    fake: FakeStripe
    endpoint: dict[str, Any]
    destination: dict[str, Any]  # the thin event destination

    @property
    def table(self) -> str:
        return self.stage.env["STRIPE_EVENTS_TABLE"]

    @property
    def bucket(self) -> str:
        return self.stage.env["STRIPE_EVENTS_BUCKET"]

    @property
    def topic_arn(self) -> str:
        return self.stage.env["STRIPE_EVENTS_TOPIC_ARN"]


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


@pytest.fixture
def fake() -> Iterator[FakeStripe]:
    with running_fake_stripe() as state:
        yield state


@pytest.fixture(scope="module")
def names(moto_url: str) -> Iterator[Names]:
    """Stage dev's table, bucket and topic, for this module; removed at its end.

    The moto server serves the whole session, and test_infra expects to create them.
    """
    account = client("sts").get_caller_identity()["Account"]
    names = Names(PREFIX, account)
    try:
        yield names
    finally:
        stage_resources.delete_resources(names)


@pytest.fixture
def setup(names: Names, monkeypatch: pytest.MonkeyPatch, fake: FakeStripe) -> Iterator[Setup]:
    """A complete stage dev: what `infra up` and `endpoint sync` leave behind."""
    with dev_stage(monkeypatch, fake) as stage:
        assert stage.env["STRIPE_EVENTS_TABLE"] == names.table
        assert stage.env["STRIPE_EVENTS_BUCKET"] == names.bucket
        assert stage.env["STRIPE_EVENTS_TOPIC_ARN"] == topic_arn(names)
        # Create, or repair what the previous test broke: TTL on `expiration`,
        # point-in-time recovery, a deleted table, bucket or topic.
        stage_resources.ensure_resources(names)
        stage.put_secret(SECRET)
        endpoint = fake.add(URL, list(wanted_event_types()), stage="dev")
        destination = fake.add_destination(URL, list(wanted_event_types(thin=True)), stage="dev")
        yield Setup(stage, fake, endpoint, destination)


def run(*args: str) -> Result:
    return CliRunner().invoke(doctor_command, ["--stage", "dev", *args])


def problems(result: Result) -> list[str]:
    return [line for line in result.output.splitlines() if line.startswith("✗ ")]


def test_a_complete_stage_passes_every_check(setup: Setup) -> None:
    result = run("--url", URL)
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    checks = [line for line in lines if line]
    assert checks[-1].startswith("All ") and checks[-1].endswith(
        "checks passed: stage dev is ready for Stripe's events."
    )
    assert all(line.startswith("✓ ") for line in checks[:-1]), result.output
    endpoint_id = setup.endpoint["id"]
    for expected in [
        "✓ no secret in plain text: the stage reads them from SSM",
        "✓ app.py loads with stage dev's settings",
        f"✓ AWS credentials: account {setup.stage.account}, region {REGION}",
        f"✓ parameter {setup.stage.secret_param} (the signing secret) is a SecureString",
        f"✓ parameter {setup.stage.api_key_param} (the Stripe API key) is a SecureString",
        "✓ event bus default exists",
        f"✓ table {setup.table} exists (ACTIVE)",
        f"✓ table {setup.table} expires the claims of dead runs by expiration (TTL)",
        f"✓ table {setup.table} has point-in-time recovery",
        f"✓ bucket {setup.bucket} exists",
        f"✓ topic {setup.topic_arn} exists",
        f"✓ Stripe endpoint {endpoint_id} (test mode) sends to {URL}",
        f"✓ endpoint {endpoint_id} is enabled",
        f"✓ endpoint {endpoint_id} sends every type the routers handle "
        f"({len(wanted_event_types())})",
        f"✓ endpoint {endpoint_id} sends no type that no handler uses",
        f"✓ endpoint {endpoint_id} uses API version {stripe.api_version}, as the stripe package",
        f"✓ thin event destination {setup.destination['id']} is enabled",
        f"✓ thin event destination {setup.destination['id']} sends exactly the 2 thin type(s) "
        "the routers handle",
    ]:
        assert expected in lines
    assert SECRET not in result.output


def test_what_endpoint_sync_makes_passes(setup: Setup) -> None:
    setup.fake.endpoints.clear()
    setup.fake.destinations.clear()
    created = sync("--yes")
    assert created.exit_code == 0, created.output
    result = run()
    assert result.exit_code == 0, result.output
    assert problems(result) == []
    assert setup.fake.secrets[0] not in result.output


SYNC = f"run `stripe-events endpoint sync --stage dev --url {URL}`"
INFRA = "run `stripe-events infra up --stage dev`, or deploy with infra/merge.json"


def _types(setup: Setup, change: Callable[[list[str]], list[str]]) -> None:
    setup.endpoint["enabled_events"] = change(list(setup.endpoint["enabled_events"]))


# name -> (break one thing, the one problem line it must give)
BREAKS: dict[str, tuple[Callable[[Setup], object], str]] = {
    "missing table": (
        lambda s: stage_resources.delete_table(Names(PREFIX, s.stage.account)),
        f"✗ table {PREFIX} does not exist — {INFRA}",
    ),
    "no TTL": (
        lambda s: client("dynamodb").update_time_to_live(
            TableName=s.table,
            TimeToLiveSpecification={"AttributeName": "expiration", "Enabled": False},
        ),
        f"✗ table {PREFIX} has no TTL on expiration: the claims of dead runs are kept — {INFRA}",
    ),
    "no point-in-time recovery": (
        lambda s: client("dynamodb").update_continuous_backups(
            TableName=s.table,
            PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False},
        ),
        f"✗ table {PREFIX} has no point-in-time recovery: a lost ledger could not be "
        f"restored — {INFRA}",
    ),
    "missing bucket": (
        lambda s: stage_resources.delete_bucket(Names(PREFIX, s.stage.account)),
        f"✗ bucket {PREFIX}-bodies-123456789012 does not exist — {INFRA}",
    ),
    "missing topic": (
        lambda s: client("sns").delete_topic(TopicArn=s.topic_arn),
        f"✗ topic arn:aws:sns:{REGION}:123456789012:{PREFIX}-notifications does not exist "
        f"— {INFRA}",
    ),
    "unnamed bucket": (
        lambda s: s.stage.env.update(STRIPE_EVENTS_BUCKET=""),
        f"✗ stage dev sets no STRIPE_EVENTS_BUCKET — {INFRA}",
    ),
    "missing parameter": (
        lambda s: client("ssm").delete_parameter(Name=s.stage.secret_param),
        f"✗ parameter /{PREFIX}/webhook-secret (the signing secret) does not exist — run "
        "`stripe-events endpoint sync --stage dev --url <URL>` to create the endpoint and "
        "store its secret; for an endpoint that exists, reveal its secret in the Dashboard",
    ),
    "parameter in plain text": (
        lambda s: s.stage.put_secret(SECRET, kind="String"),
        f"✗ parameter /{PREFIX}/webhook-secret (the signing secret) is a String, so it is "
        "stored unencrypted — store it again as a SecureString: aws ssm put-parameter --name "
        f"/{PREFIX}/webhook-secret --type SecureString --overwrite --value …",
    ),
    "secret in plain text": (
        lambda s: s.stage.env.update(STRIPE_WEBHOOK_SECRET=SECRET),
        "✗ Stage 'dev' has STRIPE_WEBHOOK_SECRET in plain text. Store it in SSM Parameter "
        "Store as a SecureString, set STRIPE_WEBHOOK_SECRET_PARAM",
    ),
    "local secret in the parameter": (
        lambda s: s.stage.put_secret(LOCAL_SECRET),
        f"✗ parameter /{PREFIX}/webhook-secret holds the local development secret — store the "
        "signing secret of the stage's Stripe endpoint there",
    ),
    "endpoint missing": (
        lambda s: s.fake.endpoints.clear(),
        "✗ no Stripe endpoint (test mode) has metadata stripe_events_stage=dev — run "
        "`stripe-events endpoint sync --stage dev --url <URL>`",
    ),
    "endpoint misses types": (
        lambda s: _types(s, lambda t: [x for x in t if x not in ("invoice.paid", "payout.paid")]),
        "✗ endpoint we_0000fake does not send 2 type(s) the routers handle: invoice.paid, "
        f"payout.paid — {SYNC}",
    ),
    "endpoint sends unused types": (
        lambda s: _types(s, lambda t: [*t, "account.updated"]),
        "✗ endpoint we_0000fake sends 1 type(s) no handler uses: account.updated — "
        f"{SYNC} (each would cost",
    ),
    "endpoint sends everything": (
        lambda s: _types(s, lambda t: ["*"]),
        "✗ endpoint we_0000fake sends every event type ('*'), most to no handler — "
        f"{SYNC} to enable only the {len(wanted_event_types())} types the routers handle",
    ),
    "thin destination missing": (
        lambda s: s.fake.destinations.clear(),
        "✗ no thin event destination has metadata stripe_events_stage=dev: the 2 thin type(s) "
        f"the routers handle never arrive — {SYNC.replace(URL, '<URL>')}",
    ),
    "thin destination disabled": (
        lambda s: s.destination.update(status="disabled"),
        f"✗ thin event destination {'ed_0001fake'} is disabled — {SYNC.replace(URL, '<URL>')}",
    ),
    "thin destination misses a type": (
        lambda s: s.destination.update(enabled_events=["v1.billing.meter.no_meter_found"]),
        "✗ thin event destination ed_0001fake differs: missing "
        "v1.billing.meter.error_report_triggered, unused none",
    ),
    "endpoint disabled": (
        lambda s: s.endpoint.update(status="disabled"),
        "✗ endpoint we_0000fake is disabled: Stripe sends it nothing — see why in the "
        f"Dashboard (its failed deliveries), {SYNC} to enable it, then `stripe-events "
        "backfill --stage dev --since <when it stopped>`",
    ),
    "endpoint on another API version": (
        lambda s: s.endpoint.update(api_version=OLD_VERSION),
        f"✗ endpoint we_0000fake sends events in API version {OLD_VERSION}, the stripe "
        f"package expects {stripe.api_version} — `stripe-events endpoint sync --stage dev "
        f"--url {URL} --recreate` creates a new endpoint",
    ),
    "test key on a live stage": (
        lambda s: s.stage.env.update(STRIPE_LIVEMODE="true"),
        f"✗ parameter /{PREFIX}/api-key holds a test mode key, but stage dev accepts live "
        "mode events only (STRIPE_LIVEMODE) — store a key of the stage's mode",
    ),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_each_problem_gets_one_line_with_its_fix(setup: Setup, name: str) -> None:
    brake, expected = BREAKS[name]
    brake(setup)
    result = run()
    assert result.exit_code == 1, result.output
    [line] = problems(result)
    assert line.startswith(expected), f"\n{line}\n{expected}"
    assert result.output.rstrip().endswith("1 problem(s) to fix; " + line_count(result))
    assert SECRET not in result.output


def line_count(result: Result) -> str:
    passed = sum(line.startswith("✓ ") for line in result.output.splitlines())
    return f"{passed} check(s) passed."


def test_the_checks_do_not_hide_each_other(setup: Setup, monkeypatch: pytest.MonkeyPatch) -> None:
    stage_resources.delete_table(Names(PREFIX, setup.stage.account))
    client("ssm").delete_parameter(Name=setup.stage.secret_param)
    setup.endpoint.update(status="disabled")

    def broken(self: doctor.Doctor, s3: Any, name: str) -> None:
        raise RuntimeError("the bucket check itself failed")

    monkeypatch.setattr(doctor.Doctor, "bucket", broken)
    result = run()
    assert result.exit_code == 1
    found = problems(result)
    assert len(found) == 4, result.output
    assert found[0].startswith(f"✗ parameter {setup.stage.secret_param} (the signing secret) ")
    assert found[1].startswith(f"✗ table {PREFIX} does not exist")
    assert found[2] == (
        f"✗ could not check the bucket {setup.bucket}: RuntimeError: the bucket check itself "
        "failed — check the AWS credentials and their permissions"
    )
    assert found[3].startswith("✗ endpoint we_0000fake is disabled")
    # What still works is still checked, after each failure.
    assert f"✓ topic {setup.topic_arn} exists" in result.output
    assert "✓ endpoint we_0000fake sends no type that no handler uses" in result.output


def test_without_aws_credentials_one_line_says_so(setup: Setup) -> None:
    # Its own MonkeyPatch: the fixtures' teardown needs the credentials back.
    with pytest.MonkeyPatch.context() as patch:
        for name in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"):
            patch.delenv(name, raising=False)
        patch.delenv("AWS_PROFILE", raising=False)
        patch.setenv("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent/credentials")
        patch.setenv("AWS_CONFIG_FILE", "/nonexistent/config")
        patch.setenv("AWS_EC2_METADATA_DISABLED", "true")  # no instance metadata lookups
        # boto3's default session keeps the credentials it found first; a command starts afresh.
        patch.setattr(boto3, "DEFAULT_SESSION", None)
        result = run()
    assert result.exit_code == 1
    assert problems(result) == [
        "✗ no usable AWS credentials (NoCredentialsError: Unable to locate credentials) — "
        "configure them as for `chalice deploy` (AWS_PROFILE, or `aws configure`)"
    ]
    assert (
        "- AWS resources and the Stripe endpoint not checked: no AWS credentials" in result.output
    )


def test_stripe_failing_is_the_endpoint_checks_problem(setup: Setup) -> None:
    setup.fake.fail_lists = 10  # more than the SDK's retries
    result = run()
    assert result.exit_code == 1
    [line] = problems(result)
    assert line.startswith("✗ could not check the Stripe endpoint: ")
    assert line.endswith(f"check the network, and the API key in {setup.stage.api_key_param}")
    assert f"✓ table {setup.table} exists (ACTIVE)" in result.output


def test_the_url_finds_an_untagged_endpoint_and_must_match(setup: Setup) -> None:
    setup.endpoint["metadata"].pop(STAGE_TAG)
    without_url = run()
    assert problems(without_url)[0].startswith("✗ no Stripe endpoint (test mode)")
    assert run("--url", URL).exit_code == 0

    setup.endpoint["metadata"][STAGE_TAG] = "dev"
    other = "https://moved.example.com/api/stripe/webhook"
    moved = run("--url", other)
    assert problems(moved) == [
        f"✗ endpoint we_0000fake sends to {URL}, not to {other} — run `stripe-events endpoint "
        f"sync --stage dev --url {other}`"
    ]


def test_the_local_stage_has_nothing_to_check() -> None:
    result = CliRunner().invoke(doctor_command, ["--stage", "local"])
    assert result.exit_code == 2
    assert "runs on the local bus" in result.output
    unknown = CliRunner().invoke(doctor_command, ["--stage", "staging"])
    assert unknown.exit_code == 2
    assert "no stage 'staging'" in unknown.output


def test_a_resource_module_that_no_function_runs_is_found(tmp_path: Path) -> None:
    """Its handlers would never run: doctor names the module, and the project's own
    modules are all wired (and their generated files fresh, test_infra checks)."""
    assert unwired_routers(ROOT) == []
    project = tmp_path / "project"
    for part in ("app.py", "chalicelib", ".chalice/config.json"):
        if (ROOT / part).is_dir():
            shutil.copytree(
                ROOT / part, project / part, ignore=shutil.ignore_patterns("__pycache__")
            )
        else:
            (project / part).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(ROOT / part, project / part)
    (project / "chalicelib" / "resources" / "refunds.py").write_text(
        "from stripe_events import Router\n\nrouter = Router('refunds')\n\n\n"
        "@router.on('charge.refunded')\ndef note(event, ctx):\n    pass\n"
    )
    code = (
        "import json, sys; from pathlib import Path\n"
        "from stripe_events_ops.project import unwired_routers\n"
        "print(json.dumps(unwired_routers(Path(sys.argv[1]))))\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(project)], capture_output=True, text=True, cwd=project
    )
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == ["chalicelib/resources/refunds.py"]
