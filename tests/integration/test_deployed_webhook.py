"""The webhook of a deployed stage, on the moto server: its secret in SSM, its settings
from the stage."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from chalice.test import Client

from stripe_events_local.sqlite import SqliteStore
from tests.helpers import ROOT, RecordingPublisher, deployed_stage_env, load_app, signed_headers
from tests.unit.test_webhook import URL, event_body


@pytest.mark.usefixtures("moto_url")
def test_source_and_bus_come_from_the_settings(tmp_path: Path) -> None:
    env = deployed_stage_env(STRIPE_EVENTS_SOURCE="acme.stripe", STRIPE_EVENTS_BUS="billing")
    module = load_app(env)
    module.events.publisher = publisher = RecordingPublisher()
    module.events.store = SqliteStore(tmp_path / "ledger.sqlite3")
    client = Client(module.app, stage_name="test", project_dir=str(ROOT))
    body = event_body()
    assert client.http.post(URL, headers=signed_headers(body), body=body).status_code == 200
    [entry] = publisher.entries
    assert (entry["Source"], entry["EventBusName"]) == ("acme.stripe", "billing")


@pytest.mark.usefixtures("moto_url")
def test_a_stage_without_its_table_answers_503_not_configured(tmp_path: Path) -> None:
    module = load_app(deployed_stage_env(STRIPE_EVENTS_TABLE=""))
    client = Client(module.app, stage_name="local", project_dir=str(ROOT))
    body = event_body()
    response = client.http.post(URL, headers=signed_headers(body), body=body)
    assert (response.status_code, json.loads(response.body)["error"]) == (503, "not_configured")
