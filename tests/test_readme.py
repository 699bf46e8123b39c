"""The README's commands run as written."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from stripe_events_local.sqlite import SqliteStore
from stripe_events_ops.cli import main
from stripe_events_testing import local_dispatcher, samples
from tests.helpers import ROOT, resource_routers

README = (ROOT / "README.md").read_text()
CLI = ".venv/bin/stripe-events"


NOT_RUN_HERE = ("run", "send", "backfill", "build", "infra", "endpoint", "doctor")


def cli_lines() -> list[list[str]]:
    blocks = re.findall(r"```sh\n(.*?)```", README, flags=re.S)
    lines = [line.split("#")[0].strip() for block in blocks for line in block.splitlines()]
    return [shlex.split(line)[1:] for line in lines if line.startswith(CLI)]


def test_the_readme_shows_the_cli_and_make_targets_that_exist() -> None:
    makefile = (ROOT / "Makefile").read_text()
    for target in re.findall(r"^make (\w+)", README, flags=re.M):
        assert re.search(rf"^{target}:", makefile, flags=re.M), target
    commands = {args[0] for args in cli_lines()}
    assert commands == set(main.commands)


def run_as_written(args: list[str], state_dir: Path) -> subprocess.CompletedProcess[str]:
    """The command in its own process, as a user runs it: from the project, with no AWS
    credentials and no region in the environment."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env["STRIPE_EVENTS_STATE_DIR"] = str(state_dir)
    return subprocess.run(
        [str(Path(sys.executable).parent / "stripe-events"), *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_every_readme_cli_command_runs(tmp_path: Path) -> None:
    # What `send customer.created` leaves behind, for `state customer` to show.
    [customers] = [r for r in resource_routers() if r.name == "customers"]
    store = SqliteStore(tmp_path / "stripe-events.sqlite3")
    local_dispatcher(store, tmp_path).dispatch(customers, samples.sample_event("customer.created"))
    runnable = []
    for args in cli_lines():
        if args[0] in NOT_RUN_HERE:
            # They need `make run`, Stripe or AWS: test_smoke, test_backfill, test_infra,
            # test_endpoint and test_doctor run them.
            assert main.commands[args[0]].make_context(args[0], args[1:])
        else:
            runnable.append(args)
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(lambda args: run_as_written(args, tmp_path), runnable))
    for args, result in zip(runnable, results, strict=True):
        assert result.returncode == 0, (args, result.stdout, result.stderr)
        assert "Traceback" not in result.stderr, (args, result.stderr)


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.S)


def test_the_handler_example_and_its_test_run_as_written(tmp_path: Path) -> None:
    [handler] = [b for b in python_blocks() if 'Router("early_fraud")' in b]
    [test] = [b for b in python_blocks() if "def test_an_early_fraud" in b]
    namespace: dict[str, Any] = {}
    exec(compile(handler, "README:handler", "exec"), namespace)
    exec(compile(test, "README:test", "exec"), namespace)
    namespace["test_an_early_fraud_warning_flags_its_charge"](tmp_path)


def test_the_thin_handler_example_and_its_test_run_as_written(tmp_path: Path) -> None:
    [handler] = [b for b in python_blocks() if 'Router("unmetered")' in b]
    [test] = [b for b in python_blocks() if "def test_unmetered_usage_is_reported" in b]
    namespace: dict[str, Any] = {}
    exec(compile(handler, "README:thin handler", "exec"), namespace)
    exec(compile(test, "README:thin test", "exec"), namespace)
    namespace["test_unmetered_usage_is_reported"](tmp_path)
