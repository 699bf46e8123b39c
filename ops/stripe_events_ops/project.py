"""The project the command works on: its stages as Chalice merges them, its app, its routes.

The project is the folder with `.chalice/config.json`: the current directory or the
nearest one above it, or the one `--project` names. Nothing here depends on where this
package is installed, so the command works the same from a checkout or from a wheel.
"""

from __future__ import annotations

import importlib
import json
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

import stripe_events._catalog as catalog
from stripe_events._errors import SettingsError
from stripe_events._pattern import matches
from stripe_events._router import RulePattern
from stripe_events._settings import LOCAL_STAGE
from stripe_events_ops.clients import NO_REGION, aws_region

if TYPE_CHECKING:
    from types import ModuleType

    from stripe_events._core import StripeEvents

CONFIG = Path(".chalice") / "config.json"


def find_project(start: Path | None = None) -> Path:
    """The nearest folder at or above `start` (default: the current one) with a Chalice config."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / CONFIG).is_file():
            return folder
    raise SettingsError(
        f"no Chalice project here: neither {here} nor a folder above it has {CONFIG}. "
        "Run the command in your project, or name it with --project."
    )


def current_project() -> Path:
    """The project of the running command: its --project, else the one around the cwd."""
    context = click.get_current_context(silent=True)
    chosen = context.find_root().obj if context is not None else None
    return Path(chosen) if chosen else find_project()


def stage_environment(stage: str, project: Path) -> dict[str, str]:
    """The environment variables Chalice gives `stage`: the top level, then the stage's own."""
    path = project / CONFIG
    config = json.loads(path.read_text(encoding="utf-8"))
    stages = config.get("stages", {})
    if stage not in stages:
        raise SettingsError(f"{path} has no stage {stage!r}; it has: {', '.join(stages)}")
    env: dict[str, str] = dict(config.get("environment_variables", {}))
    env.update(stages[stage].get("environment_variables", {}))
    # Chalice tells a function nothing of its stage: this variable is how the runtime
    # knows whether to protect it (every stage but `local`), so it must say the truth.
    named = env.get("STRIPE_EVENTS_STAGE", "").strip()
    if named != stage:
        raise SettingsError(
            f"stage {stage!r} of {path} sets STRIPE_EVENTS_STAGE to {named!r}; set it to "
            f'"{stage}" in its environment_variables: the runtime decides by it whether the '
            "stage is protected."
        )
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


def import_app(env: dict[str, str], project: Path) -> ModuleType:
    """A fresh import of the project's app.py with `env` set: its settings are read at import."""
    with patched_environ(env):
        sys.modules.pop("app", None)
        if str(project) not in sys.path:
            sys.path.insert(0, str(project))
        return importlib.import_module("app")


def load_app(stage: str, project: Path) -> ModuleType:
    """The project's app.py as `stage` configures it.

    As in `chalice local`, the stage's variables win over the shell's; a relative state
    directory is taken from the project, wherever the command runs.
    """
    env = {**os.environ, **stage_environment(stage, project)}
    if stage != LOCAL_STAGE:
        region = aws_region()
        if not region:
            raise click.ClickException(NO_REGION)
        env["AWS_REGION"] = region
    state_dir = Path(env.get("STRIPE_EVENTS_STATE_DIR") or ".state")
    env["STRIPE_EVENTS_STATE_DIR"] = str(project / state_dir)  # no-op when absolute
    return import_app(env, project)


def load_events(stage: str, project: Path) -> StripeEvents:
    """The app's StripeEvents as `stage` configures it: its settings, store and publisher."""
    events: StripeEvents = load_app(stage, project).events
    return events


def routing_app(project: Path) -> Any:
    """The project's Chalice app, loaded to read its functions and their rules.

    Those are the same in every stage, so it loads under `local` when the project has
    that stage (it needs no secret store), else under its first stage.
    """
    stages = list(read_config(project).get("stages", {})) or ["dev"]
    stage = "local" if "local" in stages else stages[0]
    return load_app(stage, project).app


def subscribers(app: Any) -> dict[str, list[str]]:
    """Event type -> the app's functions that EventBridge would run for it.

    Read from the app's own rules (its `on_cw_event` patterns), as the local bus matches
    them: whatever module a router lives in, the app says what it handles.
    """
    from chalice.app import CloudWatchEventConfig

    result: dict[str, list[str]] = {}
    sources = [s for s in app.event_sources if isinstance(s, CloudWatchEventConfig)]
    for event_type in catalog.all_event_types():
        for source in sources:
            types = {k: v for k, v in source.event_pattern.items() if k == "detail-type"}
            # A rule without detail-type (a router of "*") brings every type, but "*"
            # names the snapshot types: no handler takes the thin ones it also brings.
            if not types and catalog.is_thin(event_type):
                continue
            if matches(types, {"detail-type": event_type}):
                result.setdefault(event_type, []).append(source.name)
    return result


@dataclass(frozen=True)
class Stage:
    """A stage of .chalice/config.json, with the environment Chalice gives its functions."""

    app: str
    name: str
    env: dict[str, str]

    @property
    def prefix(self) -> str:
        return f"{self.app}-{self.name}"

    @property
    def deployed(self) -> bool:
        return self.name != LOCAL_STAGE

    @property
    def webhook_secret_param(self) -> str:
        return self.env.get("STRIPE_WEBHOOK_SECRET_PARAM", "").strip()

    @property
    def api_key_param(self) -> str:
        return self.env.get("STRIPE_API_KEY_PARAM", "").strip()


def read_config(project: Path) -> dict[str, Any]:
    config: dict[str, Any] = json.loads((project / CONFIG).read_text(encoding="utf-8"))
    return config


def load_stage(name: str, project: Path) -> Stage:
    app = read_config(project)["app_name"]
    return Stage(app, name, stage_environment(name, project))


def deployed_stages(project: Path) -> list[Stage]:
    """The stages that run on AWS: all but `local`."""
    stages = [load_stage(name, project) for name in read_config(project)["stages"]]
    return [stage for stage in stages if stage.deployed]


def event_functions(project: Path) -> list[str]:
    """The names of app.py's @app.on_cw_event functions: one per resource module."""
    return list(function_handlers(project))


def function_handlers(project: Path) -> dict[str, list[str]]:
    """Each @app.on_cw_event function of app.py -> the handlers it runs (`<router>.<name>`).

    A function whose rule was not made by `Router.pattern` runs no handler of ours.
    """
    from chalice.app import CloudWatchEventConfig

    return {
        source.name: (
            [h.name for h in source.event_pattern.router.handlers]
            if isinstance(source.event_pattern, RulePattern)
            else []
        )
        for source in routing_app(project).event_sources
        if isinstance(source, CloudWatchEventConfig)
    }


RESOURCES = Path("chalicelib") / "resources"


def unwired_routers(project: Path) -> list[str]:
    """The modules of chalicelib/resources whose `router` no function of app.py
    dispatches: their handlers would never run."""
    from stripe_events._router import Router

    app = routing_app(project)  # puts the project on sys.path, as Lambda has it
    wired = {
        id(source.event_pattern.router)
        for source in app.event_sources
        if isinstance(getattr(source, "event_pattern", None), RulePattern)
    }
    unwired = []
    for path in sorted((project / RESOURCES).glob("*.py")):
        module = importlib.import_module(".".join((*RESOURCES.parts, path.stem)))
        router = getattr(module, "router", None)
        if isinstance(router, Router) and id(router) not in wired:
            unwired.append(str(RESOURCES / path.name))
    return unwired
