"""A stage as the CLI sees it: .chalice/config.json as Chalice merges it, and the app under it."""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from stripe_events.settings import SettingsError

if TYPE_CHECKING:
    from types import ModuleType

    from stripe_events.core import StripeEvents

PROJECT_DIR = Path(__file__).resolve().parents[2]


def stage_environment(stage: str, project_dir: Path = PROJECT_DIR) -> dict[str, str]:
    """The environment variables Chalice gives `stage`: the top level, then the stage's own."""
    path = project_dir / ".chalice" / "config.json"
    config = json.loads(path.read_text(encoding="utf-8"))
    stages = config.get("stages", {})
    if stage not in stages:
        raise SettingsError(f"{path} has no stage {stage!r}; it has: {', '.join(stages)}")
    env: dict[str, str] = dict(config.get("environment_variables", {}))
    env.update(stages[stage].get("environment_variables", {}))
    return env


@contextmanager
def patched_environ(values: dict[str, str]) -> Iterator[None]:
    saved = dict(os.environ)
    os.environ.update(values)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)


def import_app(env: dict[str, str]) -> ModuleType:
    """A fresh import of the project's app.py with `env` set: its settings are read at import."""
    with patched_environ(env):
        sys.modules.pop("app", None)
        if str(PROJECT_DIR) not in sys.path:
            sys.path.insert(0, str(PROJECT_DIR))
        return importlib.import_module("app")


def load_events(stage: str) -> StripeEvents:
    """The app's StripeEvents as `stage` configures it: its settings, store and publisher.

    As in `chalice local`, the stage's variables win over the shell's; a relative state
    directory is taken from the project, wherever the command runs.
    """
    env = {**os.environ, **stage_environment(stage)}
    state_dir = Path(env.get("STRIPE_EVENTS_STATE_DIR") or ".state")
    env["STRIPE_EVENTS_STATE_DIR"] = str(PROJECT_DIR / state_dir)  # no-op when absolute
    events: StripeEvents = import_app(env).events
    return events
