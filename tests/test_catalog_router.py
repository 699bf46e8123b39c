"""The catalog, routers, their EventBridge patterns, and how app.py wires them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import stripe
from chalice.app import CloudWatchEventConfig

from stripe_events import catalog
from stripe_events.context import Context
from stripe_events.errors import UnknownEventType
from stripe_events.router import Router
from stripe_events.settings import Settings
from stripe_events_ops.project import stage_environment
from tests.helpers import ROOT, load_app, local_stage_env, resource_routers

ISSUE_TYPES = [
    "invoice.payment_failed",
    "customer.subscription.updated",
    "checkout.session.completed",
    "charge.dispute.created",
]


def noop(event: object, ctx: Context) -> None:
    """A handler that does nothing."""


def test_the_catalog_is_stripes_own_list() -> None:
    types = catalog.event_types()
    assert len(types) > 200
    assert set(ISSUE_TYPES) <= set(types)
    assert list(types) == sorted(set(types))


def test_the_catalogs_data_file_is_what_the_installed_stripe_package_says() -> None:
    assert json.loads(catalog.DATA.read_text()) == catalog.from_package(), "run `make catalog`"
    assert catalog.installed_stripe_version() == stripe.VERSION
    requirement = (ROOT / "requirements.txt").read_text()
    assert f"stripe=={stripe.VERSION}\n" in requirement  # what the Lambda package holds


def test_with_another_stripe_version_the_catalog_is_read_from_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    older = {"stripe_version": "0.0.1", "snapshot": ["invoice.paid"], "thin": []}
    (tmp_path / "event_types.json").write_text(json.dumps(older))
    monkeypatch.setattr(catalog, "DATA", tmp_path / "event_types.json")
    catalog._catalog.cache_clear()
    try:
        assert catalog._catalog() == catalog.from_package()
        monkeypatch.setattr(catalog, "installed_stripe_version", lambda: "0.0.1")
        catalog._catalog.cache_clear()
        assert catalog._catalog() == older  # the file, when it is of the installed version
    finally:
        catalog._catalog.cache_clear()


def test_the_webhook_function_never_imports_stripe() -> None:
    # Importing stripe costs more than the rest of a cold start, and the webhook never
    # needs it; an event function preloads it during its init. Powertools' idempotency
    # utility is not used at all (dispatch claims its runs itself).
    probe = (
        "import sys, app; "
        "print(sorted(m for m in ('stripe', 'aws_lambda_powertools.utilities.idempotency') "
        "if m in sys.modules))"
    )
    preloaded = "['stripe']"
    for stage in ("local", "prod"):
        for handler, expected in (("app.app", "[]"), ("app.on_customer_event", preloaded)):
            env = {
                **os.environ,
                **stage_environment(stage, ROOT),
                "AWS_DEFAULT_REGION": "us-east-1",
                "_HANDLER": handler,
            }
            result = subprocess.run(
                [sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True
            )
            assert result.returncode == 0, result.stderr
            assert result.stdout.strip() == expected, (stage, handler)


def test_types_are_grouped_by_resource() -> None:
    groups = catalog.by_resource()
    assert "customer.subscription.updated" in groups["customer.subscription"]
    assert "customer.subscription.updated" not in groups["customer"]
    assert "charge.dispute.created" in groups["charge.dispute"]
    assert "v1.billing.meter.no_meter_found" in groups["v1.billing.meter"]
    assert sum(len(v) for v in groups.values()) == len(catalog.all_event_types())


def test_a_typo_fails_at_import_with_the_closest_names() -> None:
    router = Router("invoices")
    with pytest.raises(UnknownEventType) as caught:
        router.on("invoice.payment_faild")
    assert "invoice.payment_failed" in str(caught.value)


def test_an_unknown_wildcard_suggests_a_real_one() -> None:
    with pytest.raises(UnknownEventType) as caught:
        Router("x").on("invoic.*")
    assert "invoice.*" in str(caught.value)


def test_wildcards_expand_to_catalog_types() -> None:
    invoice_types = catalog.expand("invoice.*")
    assert "invoice.payment_failed" in invoice_types
    assert all(t.startswith("invoice.") for t in invoice_types)
    assert "invoiceitem.created" not in invoice_types
    assert "customer.subscription.updated" in catalog.expand("customer.*")
    assert catalog.expand("*") == list(catalog.event_types())


def test_handlers_for_matches_exact_names_and_wildcards() -> None:
    router = Router("billing")
    router.on("invoice.*")(noop)

    def failed(event: object, ctx: Context) -> None:
        """Another handler."""

    router.on("invoice.payment_failed", "charge.failed")(failed)
    assert [h.name for h in router.handlers_for("invoice.payment_failed")] == [
        "billing.noop",
        "billing.failed",
    ]
    assert [h.name for h in router.handlers_for("invoice.paid")] == ["billing.noop"]
    assert [h.name for h in router.handlers_for("charge.failed")] == ["billing.failed"]
    assert router.handlers_for("customer.created") == []


def test_a_handler_registered_twice_is_an_error() -> None:
    router = Router("r")
    router.on("invoice.paid")(noop)
    with pytest.raises(ValueError, match="registered twice"):
        router.on("invoice.created")(noop)


def test_the_pattern_matches_our_source_and_stripes_partner_source() -> None:
    router = Router("billing")
    router.on("invoice.*", "charge.failed")(noop)
    pattern = router.pattern(Settings(stage="t", source="acme.stripe"))
    assert pattern == {
        "source": ["acme.stripe", {"prefix": "aws.partner/stripe.com/"}],
        "detail-type": ["charge.failed", {"prefix": "invoice."}],
    }
    assert router.event_types() == sorted(["charge.failed", *catalog.expand("invoice.*")])


def test_a_catch_all_router_does_not_filter_on_type() -> None:
    router = Router("all")
    router.on("*")(noop)
    assert "detail-type" not in router.pattern(Settings(stage="t"))


def test_a_router_without_handlers_has_no_pattern() -> None:
    with pytest.raises(ValueError, match="no handlers"):
        Router("empty").pattern(Settings(stage="t"))


def test_app_declares_one_function_per_resource_module() -> None:
    module = load_app(local_stage_env())
    functions = {
        source.name: source.event_pattern
        for source in module.app.event_sources
        if isinstance(source, CloudWatchEventConfig)
    }
    routers = resource_routers()
    assert routers, "no resource module found"
    assert functions == {r.name: r.pattern(module.events.settings) for r in routers}
    for name in functions:
        # Lambda function names are {app}-{stage}-{name}, 64 characters at most.
        assert len(f"stripe-events-prod-{name}") <= 64
