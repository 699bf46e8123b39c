"""A deployed stage's table, bucket and topic on the moto server, made directly.

For tests that need a stage as CloudFormation leaves it, and break a piece of it on
purpose: moto's CloudFormation makes the resources but skips some of their settings (TTL,
point-in-time recovery), and cannot repair what a test deleted. test_infra deploys the
real stack with `infra up`.
"""

from __future__ import annotations

from typing import Any

import boto3

from stripe_events._schema import TTL_ATTRIBUTE
from stripe_events_ops.infra import empty_bucket
from stripe_events_ops.template import Names, table_definition
from tests.conftest import REGION


def client(service: str) -> Any:
    return boto3.client(service, region_name=REGION)


def topic_arn(names: Names) -> str:
    return f"arn:aws:sns:{REGION}:{names.account}:{names.topic}"


def ensure_resources(names: Names) -> None:
    """Create what is missing, and turn back on what a test turned off."""
    dynamodb = client("dynamodb")
    if names.table not in dynamodb.list_tables()["TableNames"]:
        dynamodb.create_table(TableName=names.table, **table_definition())
    dynamodb.update_time_to_live(
        TableName=names.table,
        TimeToLiveSpecification={"AttributeName": TTL_ATTRIBUTE, "Enabled": True},
    )
    dynamodb.update_continuous_backups(
        TableName=names.table,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True},
    )
    client("s3").create_bucket(Bucket=names.bucket)  # the same again is no error in us-east-1
    client("sns").create_topic(Name=names.topic)


def delete_table(names: Names) -> None:
    dynamodb = client("dynamodb")
    if names.table in dynamodb.list_tables()["TableNames"]:
        dynamodb.delete_table(TableName=names.table)


def delete_bucket(names: Names) -> None:
    s3 = client("s3")
    if names.bucket in [b["Name"] for b in s3.list_buckets()["Buckets"]]:
        empty_bucket(s3, names.bucket)
        s3.delete_bucket(Bucket=names.bucket)


def delete_resources(names: Names) -> None:
    delete_table(names)
    delete_bucket(names)
    client("sns").delete_topic(TopicArn=topic_arn(names))
