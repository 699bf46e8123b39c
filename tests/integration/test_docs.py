"""The README and the docs site are true: the site builds under --strict, every command
they show runs as written (or, where it needs `make run`, Stripe or AWS, is parsed by the
command itself), and every handler example runs with its test."""

from __future__ import annotations

import inspect
import os
import re
import shlex
import subprocess
import sys
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, fields
from functools import cached_property
from html.parser import HTMLParser
from pathlib import Path
from types import FunctionType
from typing import Any
from urllib.parse import urlsplit

import click
import pytest

import stripe_events
from stripe_events import Context, State
from stripe_events_local.sqlite import SqliteStore
from stripe_events_ops.cli import main
from stripe_events_testing import local_dispatcher, samples
from tests.helpers import ROOT, resource_routers, shell_without_aws
from tests.integration.test_smoke import cli

README = ROOT / "README.md"
DOCS = ROOT / "docs"
PAGES = (README, *sorted(DOCS.glob("*.md")))
README_MAX_LINES = 300
CLI = ".venv/bin/stripe-events"
BIN = Path(sys.executable).parent

# They need `make run`, Stripe or AWS: test_smoke, test_backfill, test_build, test_infra,
# test_endpoint and test_doctor run them. Here click parses each, options and all.
NOT_RUN_HERE = ("run", "send", "backfill", "build", "infra", "endpoint", "doctor")

# Every other kind of command the docs show, and why it does not run here. A kind that
# is not listed fails the tests until someone decides how it is checked.
DOCS_EVENT_ID = "evt_1PgwVBLkdIwHu7ixM9VmzQRp"
NOT_RUN = {
    "curl": "asks make run's server: test_smoke makes the same request",
    "stripe": "the Stripe CLI and an account: test_stripe_cli runs make run with its secret",
    "aws": "changes an AWS account",
    ".venv/bin/chalice": "deploys to AWS; test_package runs chalice package offline",
    ".venv/bin/chalice-local": "deploys to LocalStack, which needs Docker",
    ".venv/bin/pip": "installs from PyPI into this venv",
    ".venv/bin/python": "a benchmark that takes minutes: make bench runs it",
    "pip": "installs or builds packages for another app's venv",
    "echo": "edits another app's requirements.txt",
    ".venv/bin/pytest": "a part of the suite that make test runs whole",
}
SHELL_LANGUAGES = ("sh",)
# Fences that would hide a command from these tests: shell blocks are all tagged `sh`.
OTHER_SHELLS = ("bash", "shell", "console", "zsh", "shell-session")

# (handler block, its test block, the test's name): each runs as written.
HANDLER_EXAMPLES = (
    (
        'Router("early_fraud")',
        "def test_an_early_fraud_warning_flags_its_charge",
        "test_an_early_fraud_warning_flags_its_charge",
    ),
    (
        'Router("unmetered")',
        "def test_unmetered_usage_is_reported",
        "test_unmetered_usage_is_reported",
    ),
)
# The app of "Add it to your own Chalice app": test_pluggable.py builds and runs it.
PLUGGABLE_APP = 'Chalice(app_name="my-shop")'
# Where an excerpt may come from, verbatim.
SOURCES = (ROOT / "app.py", ROOT / "chalicelib", ROOT / "src", ROOT / "ops")


def text(page: Path) -> str:
    return page.read_text(encoding="utf-8")


def name(page: Path) -> str:
    return str(page.relative_to(ROOT))


def fenced(page: Path) -> Iterator[tuple[str, str]]:
    """(language, content) of each fenced block of the page."""
    for match in re.finditer(r"^```([\w-]*)\n(.*?)^```", text(page), flags=re.S | re.M):
        yield match.group(1), match.group(2)


def prose(page: Path) -> str:
    """The page without its fenced blocks."""
    return re.sub(r"^```[\w-]*\n.*?^```", "", text(page), flags=re.S | re.M)


@dataclass(frozen=True)
class Command:
    page: str
    line: str
    words: tuple[str, ...]  # without the leading VAR=value assignments

    @property
    def kind(self) -> str:
        return self.words[0]


def command(page: Path, line: str) -> Command | None:
    words = shlex.split(line, comments=True)
    while words and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*=.*", words[0]):
        words = words[1:]
    return Command(name(page), line, tuple(words)) if words else None


def commands() -> list[Command]:
    """Every shell line of a `sh` block, and every inline `make …` or `.venv/bin/…`."""
    found = []
    for page in PAGES:
        for language, content in fenced(page):
            if language in SHELL_LANGUAGES:
                found += [command(page, line) for line in content.splitlines()]
        for span in re.findall(r"`((?:\.venv/bin/|make )[^`]+)`", prose(page)):
            found.append(command(page, " ".join(span.split())))
    return [c for c in found if c is not None]


def cli_command(args: list[str]) -> tuple[tuple[str, ...], click.Command, list[str]]:
    """(the command's path, such as ("infra", "up"), the command, its own arguments)."""
    path: list[str] = []
    current: click.Command = main
    while isinstance(current, click.Group):
        assert args, f"stripe-events {' '.join(path)} needs a command"
        current = current.commands[args[0]]
        path, args = [*path, args[0]], args[1:]
    return tuple(path), current, args


def leaf_commands(group: click.Group, path: tuple[str, ...] = ()) -> set[tuple[str, ...]]:
    found: set[tuple[str, ...]] = set()
    for sub_name, sub in group.commands.items():
        if isinstance(sub, click.Group):
            found |= leaf_commands(sub, (*path, sub_name))
        else:
            found.add((*path, sub_name))
    return found


def test_every_shell_block_is_tagged_sh() -> None:
    untagged = [
        (name(page), language)
        for page in PAGES
        for language, _ in fenced(page)
        if language in OTHER_SHELLS
    ]
    assert not untagged, "tag shell blocks `sh`, so that these tests see their commands"


def test_every_command_kind_is_run_parsed_or_excused() -> None:
    undecided = {
        (c.page, c.line)
        for c in commands()
        if c.kind not in (CLI, "make") and c.kind not in NOT_RUN
    }
    assert not undecided, "say in NOT_RUN why these are not run, or run them"


def test_the_make_targets_shown_exist() -> None:
    makefile = (ROOT / "Makefile").read_text(encoding="utf-8")
    shown = {
        (c.page, next(w for w in c.words[1:] if "=" not in w))
        for c in commands()
        if c.kind == "make"
    }
    assert shown
    missing = {
        (page, target)
        for page, target in shown
        if not re.search(rf"^{re.escape(target)}:", makefile, flags=re.M)
    }
    assert not missing


def test_the_docs_show_every_command_of_the_cli() -> None:
    shown = {cli_command(list(c.words[1:]))[0] for c in commands() if c.kind == CLI}
    assert shown == leaf_commands(main)


def run_as_written(args: list[str], state_dir: Path) -> subprocess.CompletedProcess[str]:
    """The command in its own process, as a user runs it: from the project, with no AWS
    credentials and no region in the environment."""
    return cli(*args, env=shell_without_aws(STRIPE_EVENTS_STATE_DIR=str(state_dir)))


def test_every_cli_command_runs_as_written(tmp_path: Path) -> None:
    # What `send customer.created` leaves behind, for `state customer` and `ledger EVENT_ID`
    # to show (the docs' example id).
    [customers] = [r for r in resource_routers() if r.name == "customers"]
    store = SqliteStore(tmp_path / "stripe-events.sqlite3")
    event = {**samples.sample_event("customer.created"), "id": DOCS_EVENT_ID}
    local_dispatcher(store, tmp_path).dispatch(customers, event)
    runnable: list[list[str]] = []
    for shown in (c for c in commands() if c.kind == CLI):
        args = list(shown.words[1:])
        path, cli, own = cli_command(args)
        # Options, arguments and their types, as click reads them when the command runs.
        assert cli.make_context(" ".join(path), own), (shown.page, shown.line)
        if path[0] not in NOT_RUN_HERE and args not in runnable:
            runnable.append(args)
    assert runnable
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda args: run_as_written(args, tmp_path), runnable))
    for args, result in zip(runnable, results, strict=True):
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


def python_blocks() -> list[tuple[str, str]]:
    """(page, content) of every python block of the README and the docs."""
    return [
        (name(page), content)
        for page in PAGES
        for language, content in fenced(page)
        if language == "python"
    ]


def python_block(marker: str) -> str:
    """The block that contains `marker`: it may be shown on several pages, the same each
    time."""
    versions = {content for _, content in python_blocks() if marker in content}
    assert len(versions) == 1, f"{marker}: {len(versions)} different blocks"
    return versions.pop()


@pytest.mark.parametrize(
    ("handler", "test", "function"), HANDLER_EXAMPLES, ids=[e[2] for e in HANDLER_EXAMPLES]
)
def test_each_handler_example_and_its_test_run_as_written(
    handler: str, test: str, function: str, tmp_path: Path
) -> None:
    namespace: dict[str, Any] = {}
    exec(compile(python_block(handler), f"docs:{handler}", "exec"), namespace)
    exec(compile(python_block(test), f"docs:{function}", "exec"), namespace)
    namespace[function](tmp_path)


def test_every_other_python_block_is_an_excerpt_of_real_code() -> None:
    runs = [PLUGGABLE_APP, *(marker for example in HANDLER_EXAMPLES for marker in example[:2])]
    run_here = [content for _, content in python_blocks() if any(m in content for m in runs)]
    sources = "\n".join(
        path.read_text(encoding="utf-8")
        for root in SOURCES
        for path in ([root] if root.is_file() else sorted(root.rglob("*.py")))
    )
    excerpts = [(page, content) for page, content in python_blocks() if content not in run_here]
    assert excerpts
    for page, excerpt in excerpts:
        compile(excerpt, page, "exec")
        assert excerpt in sources or any(excerpt in block for block in run_here), (page, excerpt)


@pytest.fixture(scope="module")
def site(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The site as `make docs` serves it, built with --strict: a broken link or anchor, a
    page missing from the nav or a CLI reference that fails to generate stops it."""
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [str(BIN / "mkdocs"), "build", "--strict", "--config-file", "mkdocs.yml", "-d", out],
        cwd=ROOT,
        # Material's notice about MkDocs 2.0 is no warning of ours.
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return out


def test_the_site_builds_with_a_page_per_nav_entry(site: Path) -> None:
    for page in DOCS.glob("*.md"):
        built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
        assert built.is_file(), page


def test_the_cli_reference_is_generated_from_the_commands(site: Path) -> None:
    reference = (site / "reference" / "index.html").read_text(encoding="utf-8")
    for path in leaf_commands(main):
        _, cli, _ = cli_command(list(path))
        assert f'id="{path[-1]}"' in reference, path
        for option in (o for p in cli.params for o in p.opts if o.startswith("--")):
            assert option in reference, (path, option)


class Anchors(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.ids |= {value for key, value in attrs if key == "id" and value}


def anchors(html: Path) -> set[str]:
    parser = Anchors()
    parser.feed(html.read_text(encoding="utf-8"))
    return parser.ids


def github_anchor(heading: str) -> str:
    """The anchor GitHub gives a heading of the README."""
    plain = re.sub(r"[^\w\- ]", "", heading.strip().lower())
    return plain.replace(" ", "-")


def test_the_readme_links_to_pages_and_anchors_that_exist(site: Path) -> None:
    readme = text(README)
    headings = {github_anchor(h) for h in re.findall(r"^#+ (.*)$", prose(README), flags=re.M)}
    links = re.findall(r"\]\(([^)\s]+)\)", readme)
    assert any(link.startswith("docs/") for link in links)
    for link in links:
        target = urlsplit(link)
        if target.scheme:
            continue
        if not target.path:
            assert target.fragment in headings, link
            continue
        page = ROOT / target.path
        assert page.is_file(), link
        if target.fragment:
            assert page.parent == DOCS, link
            built = site / ("index.html" if page.stem == "index" else f"{page.stem}/index.html")
            assert target.fragment in anchors(built), link


def test_the_readme_is_a_landing_page() -> None:
    assert len(text(README).splitlines()) <= README_MAX_LINES


def section(page: Path, heading: str) -> str:
    """The text under `## heading`, up to the next heading of that level."""
    return text(page).split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]


def first_column(table: str) -> list[str]:
    return re.findall(r"^\| (.*?) \|", table, flags=re.M)[2:]  # past the header's two rows


def plain_signature(function: Callable[..., Any]) -> str:
    """A method's parameters as the docs show them: `(kind, subject, message, customer=None)`."""
    shown: list[str] = []
    for parameter in inspect.signature(function).parameters.values():
        if parameter.name == "self":
            continue
        if parameter.kind is parameter.KEYWORD_ONLY and "*" not in shown:
            shown.append("*")
        default = parameter.default
        shown.append(
            parameter.name if default is parameter.empty else f"{parameter.name}={default!r}"
        )
    return f"({', '.join(shown)})"


def test_the_context_table_is_what_a_handler_gets() -> None:
    shown = {
        attribute: signature
        for cell in first_column(section(DOCS / "handlers.md", "The context"))
        for attribute, signature in re.findall(r"`ctx\.(\w+)(\(.*?\))?`", cell)
    }
    wiring = {f.name for f in fields(Context)}
    methods = {
        attribute
        for attribute, value in vars(Context).items()
        if not attribute.startswith("_")
        and attribute not in wiring
        and isinstance(value, FunctionType | staticmethod | cached_property)
    }
    assert methods <= set(shown), methods - set(shown)
    assert set(shown) <= methods | wiring, set(shown) - methods - wiring
    for attribute, signature in shown.items():
        if signature:
            assert signature == plain_signature(getattr(Context, attribute)), attribute
    # ctx.store's row shows the State's methods, each with its parameters.
    [store_row] = re.findall(r"^\| `ctx\.store` \| (.*) \|$", text(DOCS / "handlers.md"), re.M)
    methods_shown = dict(re.findall(r"`(\w+)(\(.*?\))`", store_row))
    state = {m for m in dir(State) if not m.startswith("_") and callable(getattr(State, m))}
    assert set(methods_shown) == state
    for method, signature in methods_shown.items():
        assert signature == plain_signature(getattr(State, method)), method


def test_the_public_api_table_is_the_public_api() -> None:
    shown = {
        public
        for cell in first_column(section(DOCS / "design.md", "The public API"))
        for public in re.findall(r"`(\w+)`", cell)
    }
    assert shown == set(stripe_events.__all__)
