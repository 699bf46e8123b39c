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
