"""Stage `prod` on a moto server on loopback, and the events Lambda gives its functions.

The resources are the ones the functions' environment names: the table (as the
template defines it), the bucket, the topic, and the two SecureString parameters, with a
signing secret and a test API key of the benchmark's own. The events are built from
Stripe's example objects: each one a new event about a new object, so that no handler
finds its work already done.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import boto3
from lambda_sandbox import ACCOUNT, REGION, LambdaFunction

from stripe_events._errors import SettingsError
from stripe_events._webhook import PATH as WEBHOOK_PATH
from stripe_events_ops.template import table_definition
from stripe_events_testing import samples
from tests.helpers import signed_headers
from tests.moto_server import moto_server as serialized_moto_server

# A deployed stage refuses the local development secret; this one is the benchmark's.
WEBHOOK_SECRET = "whsec_bench_package_only"
API_KEY = "sk_test_bench_package_only"


@contextmanager
def moto_server() -> Iterator[str]:
    """A moto server on a free 127.0.0.1 port, as tests/conftest.py starts one; its URL."""
    # Its web server logs every request; the probes make thousands.
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    with serialized_moto_server() as url:
        yield url


def create_stage(moto_url: str, functions: Sequence[LambdaFunction]) -> None:
    """Everything the functions' settings name, on the moto server."""

    def client(service: str) -> Any:
        return boto3.client(
            service,
            region_name=REGION,
            endpoint_url=moto_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )

    tables: set[str] = set()
    buckets: set[str] = set()
    topics: set[str] = set()
    parameters: dict[str, str] = {}
    for function in functions:
        try:
            settings = function.settings.check_stage()
        except SettingsError as error:
            raise SystemExit(f"stage settings of {function.name}: {error}") from None
        tables.add(settings.table)
        buckets.add(settings.bucket)
        topics.add(settings.topic_arn)
        if settings.webhook_secret_param:
            parameters[settings.webhook_secret_param] = WEBHOOK_SECRET
        if settings.api_key_param:
            parameters[settings.api_key_param] = API_KEY
    dynamodb = client("dynamodb")
    for table in tables:
        dynamodb.create_table(TableName=table, **table_definition())
        dynamodb.get_waiter("table_exists").wait(TableName=table)
    for bucket in buckets:
        client("s3").create_bucket(Bucket=bucket)
    for arn in topics:
        made = client("sns").create_topic(Name=arn.rpartition(":")[2])["TopicArn"]
        if made != arn:
            raise SystemExit(f"moto made the topic {made}, not {arn}")
    for name, value in parameters.items():
        client("ssm").put_parameter(Name=name, Value=value, Type="SecureString", Overwrite=True)


def new_events(event_type: str, count: int, livemode: bool) -> list[dict[str, Any]]:
    """`count` Stripe events of `event_type`, each with its own id and its own object."""
    events = []
    for _ in range(count):
        event = samples.sample_event(event_type, livemode=livemode)
        obj = event["data"]["object"]
        # The example's id prefix (cus_, in_, ...), then the event's own random part.
        obj["id"] = f"{str(obj['id']).partition('_')[0]}_{event['id'].removeprefix('evt_')}"
        events.append(event)
    return events


def webhook_request(event: dict[str, Any], api_stage: str) -> dict[str, Any]:
    """API Gateway's REST proxy event for a signed delivery of `event` by Stripe."""
    body = samples.encode(event)
    headers = {
        **signed_headers(body, WEBHOOK_SECRET),
        "Host": "abcdef1234.execute-api.us-east-1.amazonaws.com",
        "User-Agent": "Stripe/1.0 (+https://stripe.com/docs/webhooks)",
        "X-Forwarded-For": "3.18.12.63",
        "X-Forwarded-Port": "443",
        "X-Forwarded-Proto": "https",
    }
    return {
        "resource": WEBHOOK_PATH,
        "path": WEBHOOK_PATH,
        "httpMethod": "POST",
        "headers": headers,
        "multiValueHeaders": {name: [value] for name, value in headers.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourceId": "abc123",
            "resourcePath": WEBHOOK_PATH,
            "httpMethod": "POST",
            "path": f"/{api_stage}{WEBHOOK_PATH}",
            "stage": api_stage,
            "requestId": str(uuid.uuid4()),
            "accountId": ACCOUNT,
            "apiId": "abcdef1234",
            "protocol": "HTTP/1.1",
            "domainName": headers["Host"],
            "identity": {
                "sourceIp": headers["X-Forwarded-For"],
                "userAgent": headers["User-Agent"],
            },
        },
        "body": body.decode(),
        "isBase64Encoded": False,
    }
