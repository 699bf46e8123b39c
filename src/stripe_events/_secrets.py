"""A deployed stage's secrets, from SSM SecureString parameters through Powertools,
cached MAX_AGE_SECONDS: a rolled secret is picked up within minutes, without a deploy.
Stage `local` takes them from STRIPE_WEBHOOK_SECRET and STRIPE_API_KEY."""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING

from stripe_events._errors import SettingsError
from stripe_events._settings import LOCAL_SECRET, Settings

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.parameters import SSMProvider

MAX_AGE_SECONDS = 300


@cache
def _provider(region: str) -> SSMProvider:
    """One provider per process, so that its cache lives as long as the container."""
    from aws_lambda_powertools.utilities.parameters import SSMProvider

    import stripe_events._aws as aws

    return SSMProvider(boto3_client=aws.client("ssm", region))


def _parameter(name: str, region: str, *, optional: bool = False) -> str:
    from aws_lambda_powertools.utilities import parameters

    try:
        value = _provider(region).get(name, decrypt=True, max_age=MAX_AGE_SECONDS)
    except parameters.exceptions.GetParameterError as error:
        if optional and "ParameterNotFound" in str(error):
            return ""
        # The message names the parameter, never its value.
        raise SettingsError(f"cannot read the SSM parameter {name}: {error}") from None
    return str(value).strip()


def webhook_secrets(settings: Settings) -> tuple[str, ...]:
    """The signing secrets to verify with: several while one is rolled."""
    if not settings.webhook_secret_param:
        return settings.webhook_secrets
    value = _parameter(settings.webhook_secret_param, settings.region)
    secrets = tuple(s.strip() for s in value.split(",") if s.strip())
    if LOCAL_SECRET in secrets:
        raise SettingsError(
            f"{settings.webhook_secret_param} holds the local development secret; put the "
            "signing secret of this stage's Stripe endpoint there."
        )
    return secrets


def api_key(settings: Settings) -> str:
    """The Stripe API key, or "" when the stage has none (its parameter may not exist)."""
    if not settings.api_key_param:
        return settings.api_key
    return _parameter(settings.api_key_param, settings.region, optional=True)


def forget() -> None:
    """Read every parameter afresh next time (the CLI, after it changed one; tests)."""
    _provider.cache_clear()
