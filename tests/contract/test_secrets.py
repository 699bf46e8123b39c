"""Secrets: SSM SecureString parameters in deployed stages; plain text refused there."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chalice.test import Client

from stripe_events._errors import SettingsError
from stripe_events._settings import LOCAL_SECRET, Settings
from stripe_events_local.sqlite import SqliteStore
from stripe_events_testing import samples
from tests.helpers import ROOT, RecordingPublisher, load_app, secure_parameter, signed_headers
from tests.sqs_poller import unique


def test_a_deployed_stage_refuses_secrets_in_plain_text() -> None:
    with pytest.raises(SettingsError, match="STRIPE_WEBHOOK_SECRET_PARAM") as caught:
        Settings.from_env(
            {"STRIPE_EVENTS_STAGE": "prod", "STRIPE_WEBHOOK_SECRET": "whsec_x"}
        ).check_stage()
    assert "whsec_x" not in str(caught.value)
    assert "SecureString" in str(caught.value)
    with pytest.raises(SettingsError, match="local development"):
        Settings.from_env(
            {"STRIPE_EVENTS_STAGE": "dev", "STRIPE_WEBHOOK_SECRET": LOCAL_SECRET}
        ).check_stage()
    with pytest.raises(SettingsError, match="STRIPE_API_KEY_PARAM"):
        Settings.from_env(
            {"STRIPE_EVENTS_STAGE": "dev", "STRIPE_API_KEY": "sk_test_x"}
        ).check_stage()
    # Only stage `local` takes them: a stage called `test` is a deployed stage too.
    env = {"STRIPE_EVENTS_STAGE": "local", "STRIPE_WEBHOOK_SECRET": "whsec_x"}
    assert Settings.from_env(env).check_stage().webhook_secrets == ("whsec_x",)
    with pytest.raises(SettingsError, match="STRIPE_WEBHOOK_SECRET_PARAM"):
        Settings.from_env({**env, "STRIPE_EVENTS_STAGE": "test"}).check_stage()


def test_protection_is_decided_by_the_stage_alone() -> None:
    with pytest.raises(SettingsError, match="only stage 'local' may use"):
        Settings.from_env(
            {"STRIPE_EVENTS_STAGE": "test", "STRIPE_EVENTS_BUS": "local"}
        ).check_stage()
    with pytest.raises(SettingsError, match="STRIPE_EVENTS_BUS is 'default'"):
        Settings.from_env(
            {"STRIPE_EVENTS_STAGE": "local", "STRIPE_EVENTS_BUS": "default"}
        ).check_stage()
    # Lambda never runs stage `local`, nor a function whose config names no stage.
    for env in ({"STRIPE_EVENTS_STAGE": "local"}, {}):
        with pytest.raises(SettingsError, match="stripe-events-dev-customers"):
            Settings.from_env(
                {**env, "AWS_LAMBDA_FUNCTION_NAME": "stripe-events-dev-customers"}
            ).check_stage()
    local = Settings.from_env({}).check_stage()
    assert (local.stage, local.bus, local.protected) == ("local", "local", False)
    for stage in ("test", "dev", "qa"):
        deployed = Settings.from_env({"STRIPE_EVENTS_STAGE": stage}).check_stage()
        assert (deployed.bus, deployed.protected) == ("default", True)


def test_the_app_does_not_even_load_so_chalice_deploy_stops() -> None:
    with pytest.raises(SettingsError, match="plain text"):
        load_app({"STRIPE_EVENTS_STAGE": "prod", "STRIPE_WEBHOOK_SECRET": "whsec_live_x"})


def deployed_app(tmp_path: Path, **env: str) -> tuple[Client, RecordingPublisher]:
    module = load_app(
        {
            "STRIPE_EVENTS_STAGE": "prod",
            "STRIPE_EVENTS_BUS": "default",
            "STRIPE_EVENTS_TABLE": "unused",
            "STRIPE_WEBHOOK_SECRET": "",
            **env,
        }
    )
    publisher = RecordingPublisher()
    module.events.publisher = publisher
    module.events.store = SqliteStore(tmp_path / "ledger.sqlite3")
    return Client(module.app, stage_name="prod", project_dir=str(ROOT)), publisher


def post(client: Client, secret: str) -> tuple[int, dict[str, object]]:
    body = samples.encode(samples.sample_event("customer.created"))
    response = client.http.post("/stripe/webhook", headers=signed_headers(body, secret), body=body)
    return response.status_code, json.loads(response.body)


def test_the_webhook_verifies_with_the_secrets_in_ssm(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    name = secure_parameter("whsec_old_one, whsec_new_one")
    client, publisher = deployed_app(tmp_path, STRIPE_WEBHOOK_SECRET_PARAM=name)
    assert post(client, "whsec_old_one")[0] == 200
    assert post(client, "whsec_new_one")[0] == 200
    status, answer = post(client, "whsec_other")
    assert (status, answer["error"]) == (400, "signature_mismatch")
    # The setting that applies in this stage: the parameter, not STRIPE_WEBHOOK_SECRET.
    assert f"Check that the SSM parameter {name} (STRIPE_WEBHOOK_SECRET_PARAM) holds" in str(
        answer["message"]
    )
    assert "whsec_" not in str(answer["message"])
    assert len(publisher.entries) == 2
    logs = capsys.readouterr().out  # a deployed stage logs JSON lines to stdout
    assert "signature_mismatch" in logs
    assert "whsec_old_one" not in logs and "whsec_new_one" not in logs


@pytest.mark.parametrize("problem", ["missing", "local secret"])
def test_an_unusable_parameter_answers_503_not_configured(
    moto_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], problem: str
) -> None:
    if problem == "missing":
        name = f"/stripe-events/test/{unique('missing')}"
    else:
        name = secure_parameter(LOCAL_SECRET)
    client, publisher = deployed_app(tmp_path, STRIPE_WEBHOOK_SECRET_PARAM=name)
    status, answer = post(client, LOCAL_SECRET)
    assert (status, answer["error"]) == (503, "not_configured")
    assert publisher.entries == []
    logs = capsys.readouterr().out  # a deployed stage logs JSON lines to stdout
    assert name in logs  # the log names the parameter to fix
    assert LOCAL_SECRET not in logs


def test_the_api_key_comes_from_ssm(moto_url: str, tmp_path: Path) -> None:
    name = secure_parameter("rk_test_from_ssm")
    module = load_app(
        {
            "STRIPE_EVENTS_STAGE": "prod",
            "STRIPE_EVENTS_BUS": "default",
            "STRIPE_API_KEY_PARAM": name,
            "STRIPE_EVENTS_TABLE": "unused",
        }
    )
    assert module.events.api_key == "rk_test_from_ssm"
    assert "rk_test_from_ssm" not in repr(module.events.settings)
    # What a handler's message names when it has no key of an event's mode.
    stripe_api = module.events.dispatcher.stripe_api
    assert stripe_api.setting == f"the SSM parameter {name} (STRIPE_API_KEY_PARAM)"


def test_the_api_key_is_optional_even_when_its_parameter_is_named(moto_url: str) -> None:
    env = {"STRIPE_EVENTS_STAGE": "prod", "STRIPE_EVENTS_BUS": "default"}
    missing = f"/stripe-events/test/{unique('no-key')}"
    assert load_app({**env, "STRIPE_API_KEY_PARAM": missing}).events.api_key == ""
