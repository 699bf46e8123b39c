"""The catalog, routers, their EventBridge patterns, and how app.py wires them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from importlib.machinery import ModuleSpec
from pathlib import Path

import pytest
import stripe
from chalice.app import CloudWatchEventConfig

import stripe_events._catalog as catalog
from stripe_events._context import Context
from stripe_events._errors import UnknownEventType
from stripe_events._router import Router
from stripe_events._settings import Settings
from stripe_events_ops.project import stage_environment
from tests.contract.test_lock import locked_versions
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
    # What the Lambda package holds.
    assert locked_versions((ROOT / "requirements.txt").read_text())["stripe"] == stripe.VERSION


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


def test_an_unknown_name_says_the_stripe_version_and_at_most_five_close_names() -> None:
    with pytest.raises(UnknownEventType) as caught:
        Router("invoices").on("invoice.payment_faild")
    head, _, rest = str(caught.value).partition(" Did you mean: ")
    assert head == (
        f"'invoice.payment_faild' is not an event type Stripe documents (stripe {stripe.VERSION})."
    )
    names, _, tail = rest.partition("? ")
    assert names.split(", ")[0] == "invoice.payment_failed"
    assert len(names.split(", ")) == 5
    assert tail == "Run `stripe-events catalog` for the full list."
    with pytest.raises(UnknownEventType) as nothing_close:
        Router("invoices").on("nothing_like_it")
    assert str(nothing_close.value) == (
        f"'nothing_like_it' is not an event type Stripe documents (stripe {stripe.VERSION}). "
        "Run `stripe-events catalog` for the full list."
    )


def test_make_catalog_writes_the_data_file_as_it_is_committed(tmp_path: Path) -> None:
    written = tmp_path / "event_types.json"
    catalog.write_data(written)
    assert written.read_text(encoding="utf-8") == catalog.DATA.read_text(encoding="utf-8")


def test_an_unknown_wildcard_suggests_a_real_one() -> None:
    with pytest.raises(UnknownEventType) as caught:
        Router("x").on("invoic.*")
    names = str(caught.value).partition("Did you mean: ")[2].partition("?")[0].split(", ")
    assert names[0] == "invoice.*" and len(names) == 5
    # Five at most, though more are close.
    with pytest.raises(UnknownEventType) as many:
        Router("x").on("custome.*")
    assert str(many.value).partition("Did you mean: ")[2].partition("?")[0].count(", ") == 4


def fake_stripe_package(folder: Path, version_file: str) -> ModuleSpec:
    (folder / "_version.py").write_text(version_file, encoding="utf-8")
    return ModuleSpec("stripe", None, origin=str(folder / "__init__.py"))


@pytest.mark.parametrize(
    ("version_file", "version"),
    [
        ('"""The version."""\nVERSION = "1.2.3"\n', "1.2.3"),  # not on the first line
        ("VERSION = '16.1.0'\n", "16.1.0"),
        ("# no version here\n", ""),
    ],
)
def test_the_installed_version_is_read_from_the_packages_version_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version_file: str, version: str
) -> None:
    spec = fake_stripe_package(tmp_path, version_file)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: spec)
    assert catalog.installed_stripe_version() == version


@pytest.mark.parametrize("origin", ["none", "no spec"])
def test_without_the_stripe_package_the_catalog_says_so(
    monkeypatch: pytest.MonkeyPatch, origin: str
) -> None:
    spec = None if origin == "no spec" else ModuleSpec("stripe", None, origin=None)
    monkeypatch.setattr("importlib.util.find_spec", lambda name: spec)
    with pytest.raises(ModuleNotFoundError, match=r"^the stripe package is not installed$"):
        catalog.installed_stripe_version()


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


def test_on_needs_an_event_type_and_gives_the_function_back_unchanged() -> None:
    router = Router("invoices")
    with pytest.raises(TypeError, match=r"^Router\.on\(\) needs at least one event type$"):
        router.on()

    def mark_paid(event: stripe.Event, ctx: Context) -> None:
        pass

    # The module keeps its function: it can be called and tested as written.
    assert router.on("invoice.paid")(mark_paid) is mark_paid
    assert [h.name for h in router.handlers] == ["invoices.mark_paid"]


def test_the_pattern_knows_its_router_for_the_tooling() -> None:
    router = Router("invoices")
    router.on("invoice.paid")(lambda event, ctx: None)
    assert router.pattern(Settings(stage="test")).router is router


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
