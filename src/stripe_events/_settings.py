"""One frozen Settings object, read from the environment of the stage."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stripe_events._errors import SettingsError

LOCAL_BUS = "local"
# The one stage that runs on a developer's machine: its bus is in-process, its state in
# SQLite, its secrets in plain variables, its read routes open on loopback. Every other
# stage, whatever it is called, is protected.
LOCAL_STAGE = "local"
# Handlers' Stripe calls: retries of connection errors, 409, 5xx (and 429 when Stripe says
# so), as stripe-node does by default; each waits 0.5 s or more, within Lambda's timeout.
DEFAULT_NETWORK_RETRIES = 2
LOCAL_SECRET = "whsec_local_development_only"
DEFAULT_SOURCE = "stripe.webhook"
# Stripe's own EventBridge destination publishes from partner sources named like this.
PARTNER_SOURCE_PREFIX = "aws.partner/stripe.com/"


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a whole number, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value


def _livemode(env: Mapping[str, str]) -> bool | None:
    raw = env.get("STRIPE_LIVEMODE", "").strip().lower()
    if not raw:
        return None
    if raw in ("true", "1", "yes"):
        return True
    if raw in ("false", "0", "no"):
        return False
    raise SettingsError(f"STRIPE_LIVEMODE must be true or false, got {raw!r}")


@dataclass(frozen=True)
class Settings:
    stage: str
    # Several secrets while one is being rolled; a signature matching any of them passes.
    webhook_secrets: tuple[str, ...] = ()
    tolerance_seconds: int = 300
    max_body_bytes: int = 1024 * 1024
    livemode: bool | None = None
    source: str = DEFAULT_SOURCE
    bus: str = "default"
    table: str = ""
    state_dir: Path = Path(".state")
    region: str = "us-east-1"
    # Entries larger than this are published as a reference; the full body is kept aside.
    max_entry_bytes: int = 256 * 1024
    bucket: str = ""
    # Optional: lets modules re-fetch objects, and backfill read the Events API.
    api_key: str = ""
    # Optional: another Stripe-compatible server (stripe-mock, a test server) for the API.
    api_base: str = ""
    topic_arn: str = ""  # the SNS topic of notifications, on AWS
    # SSM SecureString parameters that hold the secrets in a deployed stage.
    webhook_secret_param: str = ""
    api_key_param: str = ""
    stripe_network_retries: int = DEFAULT_NETWORK_RETRIES
    # Set by Lambda in every function it runs: stage `local` never runs there.
    lambda_function: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        secrets = tuple(s.strip() for s in env.get("STRIPE_WEBHOOK_SECRET", "").split(","))
        stage = env.get("STRIPE_EVENTS_STAGE", "").strip() or LOCAL_STAGE
        return cls(
            stage=stage,
            webhook_secrets=tuple(s for s in secrets if s),
            tolerance_seconds=_int(env, "STRIPE_WEBHOOK_TOLERANCE", 300),
            max_body_bytes=_int(env, "STRIPE_WEBHOOK_MAX_BYTES", 1024 * 1024),
            livemode=_livemode(env),
            source=env.get("STRIPE_EVENTS_SOURCE", "").strip() or DEFAULT_SOURCE,
            bus=env.get("STRIPE_EVENTS_BUS", "").strip()
            or (LOCAL_BUS if stage == LOCAL_STAGE else "default"),
            table=env.get("STRIPE_EVENTS_TABLE", "").strip(),
            state_dir=Path(env.get("STRIPE_EVENTS_STATE_DIR", "").strip() or ".state"),
            region=env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or "us-east-1",
            max_entry_bytes=_int(env, "STRIPE_EVENTS_MAX_ENTRY_BYTES", 256 * 1024, minimum=1024),
            bucket=env.get("STRIPE_EVENTS_BUCKET", "").strip(),
            api_key=env.get("STRIPE_API_KEY", "").strip(),
            api_base=env.get("STRIPE_API_BASE", "").strip(),
            topic_arn=env.get("STRIPE_EVENTS_TOPIC_ARN", "").strip(),
            webhook_secret_param=env.get("STRIPE_WEBHOOK_SECRET_PARAM", "").strip(),
            api_key_param=env.get("STRIPE_API_KEY_PARAM", "").strip(),
            stripe_network_retries=_int(
                env, "STRIPE_MAX_NETWORK_RETRIES", DEFAULT_NETWORK_RETRIES, minimum=0
            ),
            lambda_function=env.get("AWS_LAMBDA_FUNCTION_NAME", "").strip(),
        )

    @property
    def protected(self) -> bool:
        """Whether the read routes need IAM and the secrets must come from SSM: in every
        stage but `local`, decided by the stage alone."""
        return self.stage != LOCAL_STAGE

    def check_stage(self) -> Settings:
        """Fail closed: stage `local` runs only on a machine, with the local bus; any other
        stage publishes to EventBridge, and refuses secrets in plain text and the local
        development secret."""
        if not self.protected:
            if self.lambda_function:
                raise SettingsError(
                    f"Lambda function {self.lambda_function} runs with STRIPE_EVENTS_STAGE="
                    f"{LOCAL_STAGE!r} (or none), which has no authorizer and plain-text "
                    "secrets: set STRIPE_EVENTS_STAGE to the deployed stage's name in "
                    ".chalice/config.json."
                )
            if not self.is_local:
                raise SettingsError(
                    f"Stage {LOCAL_STAGE!r} publishes on the local bus, but "
                    f"STRIPE_EVENTS_BUS is {self.bus!r}: remove it, or set "
                    "STRIPE_EVENTS_STAGE to the name of a deployed stage."
                )
            return self
        if self.is_local:
            raise SettingsError(
                f"Stage {self.stage!r} sets STRIPE_EVENTS_BUS={LOCAL_BUS!r}, which only stage "
                f"{LOCAL_STAGE!r} may use (functions in the webhook's process, state in "
                "SQLite, no authorizer): publish to EventBridge with "
                "STRIPE_EVENTS_BUS=default in .chalice/config.json."
            )
        fix = (
            f"Store it in SSM Parameter Store as a SecureString, set {{param}} to the "
            f"parameter's name, and remove {{plain}} from stage {self.stage!r} in "
            ".chalice/config.json (docs/deploy.md, Secrets)."
        )
        if self.webhook_secrets:
            secret_fix = fix.format(
                param="STRIPE_WEBHOOK_SECRET_PARAM", plain="STRIPE_WEBHOOK_SECRET"
            )
            if LOCAL_SECRET in self.webhook_secrets:
                raise SettingsError(
                    f"Stage {self.stage!r} uses the local development signing secret. " + secret_fix
                )
            raise SettingsError(
                f"Stage {self.stage!r} has STRIPE_WEBHOOK_SECRET in plain text. " + secret_fix
            )
        if self.api_key:
            raise SettingsError(
                f"Stage {self.stage!r} has STRIPE_API_KEY in plain text. "
                + fix.format(param="STRIPE_API_KEY_PARAM", plain="STRIPE_API_KEY")
            )
        return self

    @property
    def webhook_secret_setting(self) -> str:
        """Where this stage's signing secret comes from, as messages name it (never its
        value)."""
        return _setting("STRIPE_WEBHOOK_SECRET", self.webhook_secret_param)

    @property
    def api_key_setting(self) -> str:
        """Where this stage's Stripe API key comes from, as messages name it."""
        return _setting("STRIPE_API_KEY", self.api_key_param)

    @property
    def is_local(self) -> bool:
        return self.bus == LOCAL_BUS

    def __repr__(self) -> str:
        # Secrets never reach logs, not even through a repr in a traceback.
        return (
            f"Settings(stage={self.stage!r}, secrets={len(self.webhook_secrets)}, "
            f"bus={self.bus!r}, source={self.source!r}, table={self.table!r}, "
            f"bucket={self.bucket!r}, api_key={'set' if self.api_key else 'unset'})"
        )


def _setting(plain: str, param: str) -> str:
    return f"the SSM parameter {param} ({plain}_PARAM)" if param else plain
