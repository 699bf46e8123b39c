"""The runtime in someone else's Chalice app: the README's lines, in a project of their own.

The app runs in a subprocess, from a folder that has nothing of this project but what
the README tells a user to write: its own app.py, its own chalicelib with the handler
module, its own .chalice/config.json. It imports `stripe_events` as installed.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

from stripe_events_testing.samples import example_objects
from tests.helpers import ROOT

README = (ROOT / "README.md").read_text()
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


def python_block(marker: str) -> str:
    blocks: list[str] = re.findall(r"```python\n(.*?)```", README, flags=re.S)
    [block] = [b for b in blocks if marker in b]
    return block


def test_the_readmes_lines_plug_it_into_another_chalice_app(tmp_path: Path) -> None:
    project = tmp_path / "my-shop"
    (project / ".chalice").mkdir(parents=True)
    (project / "chalicelib").mkdir()
    (project / "chalicelib" / "__init__.py").write_text("")
    (project / "chalicelib" / "early_fraud.py").write_text(python_block('Router("early_fraud")'))
    (project / "app.py").write_text(python_block('Chalice(app_name="my-shop")'))
    local = {
        "STRIPE_EVENTS_BUS": "local",
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
