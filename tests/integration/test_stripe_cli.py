"""The Stripe CLI on a laptop: `make run` accepts the secret `stripe listen` prints, from the
shell or a git-ignored .env, besides the stage's own, with no edit to a tracked file."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from stripe_events._settings import LOCAL_SECRET
from stripe_events_ops.listen_secret import NotASigningSecret, added_secrets
from stripe_events_testing import samples
from tests.helpers import ROOT, signed_headers
from tests.integration.test_smoke import BIN, free_port, serving

LISTEN_SECRET = "whsec_from_stripe_listen_0123456789abcdef"
STAGE_ENV = {"STRIPE_WEBHOOK_SECRET": LOCAL_SECRET}


def test_the_shells_secret_is_added_to_the_stages_own(tmp_path: Path) -> None:
    added = added_secrets(tmp_path, STAGE_ENV, {"STRIPE_WEBHOOK_SECRET": LISTEN_SECRET})
    assert added is not None
    assert added.value == f"{LOCAL_SECRET},{LISTEN_SECRET}"
    assert (added.origin, added.count) == ("the shell", 1)


def test_a_dotenv_file_gives_it_when_the_shell_does_not(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(f"# from stripe listen\nSTRIPE_WEBHOOK_SECRET={LISTEN_SECRET}\n")
    added = added_secrets(tmp_path, STAGE_ENV, {})
    assert added is not None and added.value == f"{LOCAL_SECRET},{LISTEN_SECRET}"
    assert added.origin == str(tmp_path / ".env")
    # The shell wins, as it does for every other tool that reads .env.
    shell = added_secrets(tmp_path, STAGE_ENV, {"STRIPE_WEBHOOK_SECRET": "whsec_shell"})
    assert shell is not None and shell.value == f"{LOCAL_SECRET},whsec_shell"


def test_nothing_is_added_without_a_secret_or_to_a_stage_that_reads_ssm(tmp_path: Path) -> None:
    assert added_secrets(tmp_path, STAGE_ENV, {}) is None
    ssm_stage = {"STRIPE_WEBHOOK_SECRET_PARAM": "/stripe-events-dev/webhook-secret"}
    assert added_secrets(tmp_path, ssm_stage, {"STRIPE_WEBHOOK_SECRET": LISTEN_SECRET}) is None
    same = added_secrets(tmp_path, STAGE_ENV, {"STRIPE_WEBHOOK_SECRET": LOCAL_SECRET})
    assert same is not None and (same.value, same.count) == (LOCAL_SECRET, 0)


def test_what_is_not_a_signing_secret_is_refused_without_showing_it(tmp_path: Path) -> None:
    with pytest.raises(NotASigningSecret) as refused:
        added_secrets(tmp_path, STAGE_ENV, {"STRIPE_WEBHOOK_SECRET": "sk_test_oops"})
    assert "start with whsec_" in str(refused.value) and "sk_test_oops" not in str(refused.value)


def post(port: int, secret: str) -> int:
    body = samples.encode(samples.sample_event("customer.subscription.created"))
    request = urllib.request.Request(
        f"http://127.0.0.1:{port}/stripe/webhook",
        data=body,
        method="POST",
        headers=signed_headers(body, secret),
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code


def shell_without_secret(state_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "STRIPE_WEBHOOK_SECRET"}
    return {**env, "STRIPE_EVENTS_STATE_DIR": str(state_dir)}


def test_make_run_accepts_the_secret_given_in_the_shell(tmp_path: Path) -> None:
    port = free_port()
    env = {**shell_without_secret(tmp_path), "STRIPE_WEBHOOK_SECRET": LISTEN_SECRET}
    with serving(["make", "run", f"PORT={port}"], ROOT, env, port) as printed:
        assert post(port, LISTEN_SECRET) == 200  # what `stripe listen` forwards
        assert post(port, LOCAL_SECRET) == 200  # what `stripe-events send` signs with
        assert post(port, "whsec_someone_else") == 400
    [output] = printed
    assert "and 1 from STRIPE_WEBHOOK_SECRET in the shell (`stripe listen`)" in output
    assert LISTEN_SECRET not in output


def test_run_accepts_the_secret_of_a_dotenv_file_and_send_still_works(tmp_path: Path) -> None:
    project = tmp_path / "project"
    (project / ".chalice").mkdir(parents=True)
    for name in ("app.py", "chalicelib"):
        (project / name).symlink_to(ROOT / name)
    (project / ".chalice" / "config.json").write_text(
        (ROOT / ".chalice" / "config.json").read_text()
    )
    (project / ".env").write_text(f"STRIPE_WEBHOOK_SECRET={LISTEN_SECRET}\n")
    port = free_port()
    env = shell_without_secret(tmp_path / "state")
    command = [str(BIN / "stripe-events"), "run", "--port", str(port)]
    url = f"http://127.0.0.1:{port}/stripe/webhook"
    with serving(command, project, env, port) as printed:
        assert post(port, LISTEN_SECRET) == 200
        sent = subprocess.run(
            [str(BIN / "stripe-events"), "send", "invoice.paid", "--url", url],
            cwd=project,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert sent.returncode == 0, sent.stdout + sent.stderr
        assert post(port, "whsec_someone_else") == 400
    [output] = printed
    assert f"in {project / '.env'}" in output
