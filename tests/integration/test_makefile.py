"""What `make run` and `make test` install on a fresh machine (dry runs, as make plans them)."""

from __future__ import annotations

import subprocess
from pathlib import Path

from tests.helpers import ROOT


def planned(target: str, venv: Path) -> str:
    result = subprocess.run(
        ["make", "-n", target, f"VENV={venv}"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_make_run_installs_what_running_needs_and_no_test_toolchain(tmp_path: Path) -> None:
    plan = planned("run", tmp_path / "venv")
    assert "-m venv" in plan and "--require-hashes -r requirements.txt" in plan
    assert "-e . -e ./ops" in plan
    assert "requirements-dev.txt" not in plan  # pytest, moto, mypy, mkdocs… (about 500 MB)


def test_make_test_adds_the_test_toolchain(tmp_path: Path) -> None:
    plan = planned("test", tmp_path / "venv")
    assert "--require-hashes -r requirements.txt" in plan
    assert "-r requirements-dev.txt" in plan and "requirements-checkov.txt" in plan


def test_make_reset_empties_the_state_it_is_given(tmp_path: Path) -> None:
    state = tmp_path / "state"
    (state / "bodies").mkdir(parents=True)
    (state / "stripe-events.sqlite3").write_text("")
    result = subprocess.run(
        ["make", "reset", f"STATE_DIR={state}"], cwd=ROOT, capture_output=True, text=True
    )
    assert result.returncode == 0, result.stderr
    assert not state.exists()
