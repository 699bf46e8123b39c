"""The runtime's surface: a handler imports from one place, and little is public."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import stripe_events
import stripe_events_testing
from tests.helpers import ROOT

RUNTIME = ROOT / "src" / "stripe_events"


def test_about_ten_public_names_each_of_them_real() -> None:
    assert len(stripe_events.__all__) <= 12
    for name in stripe_events.__all__:
        assert getattr(stripe_events, name) is not None, name
    # The test kit's names are the kit's own objects.
    assert stripe_events.event_of is stripe_events_testing.event_of


def test_every_module_of_the_runtime_but_its_entry_is_internal() -> None:
    modules = [str(p.relative_to(RUNTIME)) for p in RUNTIME.rglob("*.py")]
    assert [m for m in modules if not m.startswith("_")] == []
    assert [m for m in modules if m.startswith("__")] == ["__init__.py"]


def imported_modules(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = {alias.name for n in ast.walk(tree) if isinstance(n, ast.Import) for alias in n.names}
    return found | {
        n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and not n.level
    }


def test_resource_modules_import_the_runtime_from_one_place() -> None:
    for path in (ROOT / "chalicelib").rglob("*.py"):
        ours = {m for m in imported_modules(path) if m.split(".")[0].startswith("stripe_events")}
        assert ours <= {"stripe_events"}, (path, ours)
    assert {m for m in imported_modules(ROOT / "app.py") if m.startswith("stripe_events")} == {
        "stripe_events"
    }


def test_the_runtime_imports_no_private_module_of_the_stripe_sdk() -> None:
    for path in RUNTIME.rglob("*.py"):
        private = {m for m in imported_modules(path) if m.startswith("stripe._")}
        assert not private, (path, private)


def test_an_unknown_name_says_so() -> None:
    result = subprocess.run(
        [sys.executable, "-c", "import stripe_events; stripe_events.nothing"],
        capture_output=True,
        text=True,
    )
    assert "module 'stripe_events' has no attribute 'nothing'" in result.stderr


DEVELOPMENT_ONLY = ("stripe_events_testing", "stripe_events_local", "stripe_events_ops")


def test_a_deployed_stage_loads_without_the_development_packages() -> None:
    """As in Lambda, whose package has none of them: app.py imports, and only a test
    kit name, asked for, says what is missing."""
    blocked = "".join(f"sys.modules[{name!r}] = None\n" for name in DEVELOPMENT_ONLY)
    script = (
        f"import sys\n{blocked}"
        "import app\n"
        "try:\n"
        "    from stripe_events import event_of\n"
        "except ImportError:\n"
        "    print('no test kit')\n"
    )
    env = {
        "PATH": "/usr/bin:/bin",
        "STRIPE_EVENTS_STAGE": "prod",
        "STRIPE_EVENTS_TABLE": "stripe-events-prod",
        "STRIPE_WEBHOOK_SECRET_PARAM": "/stripe-events-prod/webhook-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, env=env
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "no test kit"
