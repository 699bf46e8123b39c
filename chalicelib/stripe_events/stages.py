"""A stage's settings as the CLI sees them: .chalice/config.json, as Chalice merges it."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

from chalicelib.stripe_events.settings import Settings, SettingsError

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


def stage_settings(stage: str, project_dir: Path = PROJECT_DIR) -> Settings:
    # As in `chalice local`, the stage's variables win over the shell's.
    settings = Settings.from_env({**os.environ, **stage_environment(stage, project_dir)})
    if settings.state_dir.is_absolute():
        return settings
    return replace(settings, state_dir=project_dir / settings.state_dir)
