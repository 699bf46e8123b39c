"""The billing state read model: GET /billing/customers/{id} and `stripe-events state`."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from chalice.app import IAMAuthorizer
from chalice.test import Client
from click.testing import CliRunner

from chalicelib.resources.billing_state import customer_state
from stripe_events._stores import Store
from stripe_events_ops.cli import main
from tests.helpers import ROOT, load_app, local_stage_env

ROUTE = "/billing/customers/{customer_id}"
ORDER = "0|001760000000|1|000000000|1|evt_1"


def fill(store: Store) -> None:
    """The state the resource modules keep for one customer, in their shared shapes."""
    store.put("customers", "cus_1", {"object": {"id": "cus_1"}, "deleted": False, "version": {}})
    pro = {"price": "price_pro", "product": "prod_pro", "lookup_key": "pro", "quantity": 1}
    children: list[tuple[str, str, dict[str, Any]]] = [
        ("customer_subscriptions", "sub_1", {"id": "sub_1", "status": "active", "items": [pro]}),
        ("customer_invoices", "in_open", {"id": "in_open", "status": "open"}),
        ("customer_invoices", "in_paid", {"id": "in_paid", "status": "paid"}),
        ("customer_disputes", "dp_open", {"id": "dp_open", "status": "needs_response"}),
        ("customer_disputes", "dp_won", {"id": "dp_won", "status": "won"}),
    ]
    for collection, key, item in children:
        store.put_child_if_newer(collection, "cus_1", key, item, ORDER)


@pytest.fixture
def local_app(tmp_path: Path) -> ModuleType:
    module = load_app({**local_stage_env(), "STRIPE_EVENTS_STATE_DIR": str(tmp_path)})
    fill(module.events.store)
    return module


def test_the_state_has_only_what_is_open_and_active(local_app: ModuleType) -> None:
    state = customer_state(local_app.events.store, "cus_1")
    assert state is not None
    assert state["customer"] == {"id": "cus_1"}
    assert [s["id"] for s in state["subscriptions"]] == ["sub_1"]
    assert state["entitlements"] == ["pro"]
    assert [i["id"] for i in state["open_invoices"]] == ["in_open"]
    assert [d["id"] for d in state["open_disputes"]] == ["dp_open"]
    assert customer_state(local_app.events.store, "cus_unknown") is None


def test_the_route_is_open_locally_and_404s_for_unknown_customers(local_app: ModuleType) -> None:
    client = Client(local_app.app, stage_name="local", project_dir=str(ROOT))
    response = client.http.get("/billing/customers/cus_1")
    assert response.status_code == 200
    assert json.loads(response.body)["entitlements"] == ["pro"]
    assert client.http.get("/billing/customers/cus_unknown").status_code == 404
    assert local_app.app.routes[ROUTE]["GET"].authorizer is None


def test_on_aws_the_route_needs_iam(tmp_path: Path) -> None:
    module = load_app({"STRIPE_EVENTS_STAGE": "dev", "STRIPE_EVENTS_TABLE": "t"})
    assert isinstance(module.app.routes[ROUTE]["GET"].authorizer, IAMAuthorizer)


def test_the_state_command_prints_the_same(local_app: ModuleType, tmp_path: Path) -> None:
    runner = CliRunner(env={"STRIPE_EVENTS_STATE_DIR": str(tmp_path)})
    result = runner.invoke(main, ["state", "customer", "cus_1"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output) == customer_state(local_app.events.store, "cus_1")
    missing = runner.invoke(main, ["state", "customer", "cus_unknown"])
    assert missing.exit_code == 1 and "no billing state" in missing.output
