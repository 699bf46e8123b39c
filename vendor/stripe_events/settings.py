"""One frozen Settings object, read from the environment of the stage."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from stripe_events.errors import SettingsError

LOCAL_BUS = "local"
# Stages whose secrets may sit in plain environment variables: nothing real is at stake.
PLAIN_SECRET_STAGES = ("local", "test")
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

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        secrets = tuple(s.strip() for s in env.get("STRIPE_WEBHOOK_SECRET", "").split(","))
        return cls(
            stage=env.get("STRIPE_EVENTS_STAGE", "local"),
            webhook_secrets=tuple(s for s in secrets if s),
            tolerance_seconds=_int(env, "STRIPE_WEBHOOK_TOLERANCE", 300),
            max_body_bytes=_int(env, "STRIPE_WEBHOOK_MAX_BYTES", 1024 * 1024),
            livemode=_livemode(env),
            source=env.get("STRIPE_EVENTS_SOURCE", "").strip() or DEFAULT_SOURCE,
            bus=env.get("STRIPE_EVENTS_BUS", "").strip() or "default",
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
        )

    def check_secrets(self) -> Settings:
        """A deployed stage refuses secrets in plain text, and the local development secret."""
        if self.stage in PLAIN_SECRET_STAGES:
            return self
        fix = (
            f"Store it in SSM Parameter Store as a SecureString, set {{param}} to the "
            f"parameter's name, and remove {{plain}} from stage {self.stage!r} in "
            ".chalice/config.json (see the README's Deploy section)."
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
