"""The clients the commands share: Stripe's API and AWS, as every command reaches them."""

from __future__ import annotations

import os
from typing import Any

import stripe

# Points every command at stripe-mock or another Stripe-compatible server.
API_BASE_VARIABLE = "STRIPE_API_BASE"
# The SDK retries network errors and 5xx itself, with backoff.
NETWORK_RETRIES = 3


def stripe_client(api_key: str, api_base: str | None = None) -> stripe.StripeClient:
    """A client of Stripe's API; `api_base` (default: $STRIPE_API_BASE) points it elsewhere."""
    base = api_base or os.environ.get(API_BASE_VARIABLE) or None
    return stripe.StripeClient(
        api_key,
        base_addresses={"api": base} if base else None,
        max_network_retries=NETWORK_RETRIES,
    )


NO_REGION = (
    "no AWS region: set AWS_REGION (or AWS_DEFAULT_REGION), or give your profile a region "
    "(`aws configure`), as for `chalice deploy`"
)
NO_CREDENTIALS = (
    "no AWS credentials: set AWS_PROFILE (or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY), "
    "or run `aws configure` or `aws sso login`, as for `chalice deploy`"
)


def aws_region() -> str | None:
    """The region a command works in: AWS_REGION (which Lambda and most shells set, and
    boto3 ignores), AWS_DEFAULT_REGION, or the profile's."""
    for variable in ("AWS_REGION", "AWS_DEFAULT_REGION"):
        if os.environ.get(variable, "").strip():
            return os.environ[variable].strip()
    import boto3

    region: str | None = boto3.session.Session().region_name
    return region


def aws_problem(error: Exception) -> str | None:
    """One line for an AWS error that the user fixes in their setup, not in the code."""
    from botocore import exceptions

    if isinstance(error, exceptions.NoRegionError):
        return NO_REGION
    if isinstance(error, exceptions.NoCredentialsError | exceptions.PartialCredentialsError):
        return NO_CREDENTIALS
    if isinstance(error, exceptions.TokenRetrievalError | exceptions.SSOTokenLoadError):
        return f"the AWS session has expired ({error}): run `aws sso login` again"
    if isinstance(error, exceptions.EndpointConnectionError):
        return f"cannot reach AWS ({error}): check the network and AWS_ENDPOINT_URL"
    return None


class AwsClients:
    """The boto3 clients of one command, in the stage's region.

    They give up within seconds, where boto3's defaults wait 60 s to connect and to read.
    """

    def __init__(self, region: str) -> None:
        from botocore.config import Config

        self.region = region
        self.config = Config(connect_timeout=5, read_timeout=15, retries={"mode": "standard"})

    def __call__(self, service: str) -> Any:
        import boto3

        return boto3.client(service, region_name=self.region, config=self.config)
