"""The runtime in someone else's Chalice app: the lines of the docs' "Add it to your own
Chalice app", in a project of their own.

The app runs in a subprocess, from a folder that has nothing of this project but what
the docs tell a user to write: its own app.py, its own chalicelib with the handler
module, its own .chalice/config.json. It imports `stripe_events` as installed.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from stripe_events_testing.samples import example_objects
from tests.integration.test_docs import PLUGGABLE_APP, python_block

SECRET = "whsec_my_shop_local"

CHECK = """
import json, time
from chalice.test import Client
import stripe
from stripe_events_testing import sample_event
from app import app, events

event = sample_event("radar.early_fraud_warning.created", changes={"charge": "ch_mine"})
body = json.dumps(event).encode()
header = stripe.WebhookSignature.generate_signature_header(body.decode(), SECRET, int(time.time()))
with Client(app, stage_name="local") as client:
    answer = client.http.post(
        "/stripe/webhook", headers={"Stripe-Signature": header}, body=body
    )
print(json.dumps({
    "status": answer.status_code,
    "flagged": events.store.get("flagged_charges", "ch_mine"),
    "handlers": {n: o.status for n, o in events.store.outcomes(event["id"]).items()},
    "notified": [n.kind for n in events.notifier.sent()],
}))
"""


def test_the_docs_lines_plug_it_into_another_chalice_app(tmp_path: Path) -> None:
    project = tmp_path / "my-shop"
    (project / ".chalice").mkdir(parents=True)
    (project / "chalicelib").mkdir()
    (project / "chalicelib" / "__init__.py").write_text("")
    (project / "chalicelib" / "early_fraud.py").write_text(python_block('Router("early_fraud")'))
    (project / "app.py").write_text(python_block(PLUGGABLE_APP))
    # The stage the docs give it for a laptop; the state stays in the test's folder.
    local = {
        "STRIPE_EVENTS_STAGE": "local",
        "STRIPE_WEBHOOK_SECRET": SECRET,
        "STRIPE_EVENTS_STATE_DIR": str(project / ".state"),
    }
    config = {
        "version": "2.0",
        "app_name": "my-shop",
        "stages": {"local": {"environment_variables": local}},
    }
    (project / ".chalice" / "config.json").write_text(json.dumps(config))
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    result = subprocess.run(
        [sys.executable, "-c", f"SECRET = {SECRET!r}\n{CHECK}"],
        cwd=project,
        env={**env, **local},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    outcome = json.loads(result.stdout.strip().splitlines()[-1])
    assert outcome == {
        "status": 200,
        "flagged": {"reason": example_objects()["radar.early_fraud_warning"]["fraud_type"]},
        "handlers": {"early_fraud.flag_the_charge": "ok"},
        "notified": ["fraud_warning"],
    }
    # Nothing of this project's own code was there to use: its app and resources differ.
    assert not (project / "chalicelib" / "resources").exists()
    # The command works on the project around the current directory, this one too.
    ledger = subprocess.run(
        [str(Path(sys.executable).parent / "stripe-events"), "ledger", "--json"],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert ledger.returncode == 0, ledger.stderr
    [entry] = json.loads(ledger.stdout)
    assert entry["handlers"] == {"early_fraud.flag_the_charge": "ok"}
