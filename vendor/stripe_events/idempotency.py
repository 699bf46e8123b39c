"""Exactly once per (event id, handler), with Powertools' idempotency utility.

A handler's run takes an in-progress lock whose expiry follows the Lambda's remaining
time, so a run that crashed or timed out does not block the retry for long. Completed
records are kept for `Settings.idempotency_days` (35 by default): Stripe retries for
3 days, and its Events API, which backfill and replay read, lists 30.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.persistence.base import BasePersistenceLayer

from stripe_events.settings import Settings
from stripe_events.stores.schema import (
    IDEMPOTENCY_PARTITION,
    PARTITION_KEY,
    SORT_KEY,
    TTL_ATTRIBUTE,
)

# A stable key prefix: the default one includes the Lambda function's name, and then a
# replay from the CLI would not recognise what the function had already done.
KEY_PREFIX = "stripe-events"


class LocalLambdaContext:
    """Outside Lambda (local bus, CLI, tests): the lock expires as a Lambda's would."""

    def __init__(self, timeout_seconds: float = 60.0) -> None:
        self.deadline = time.monotonic() + timeout_seconds

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self.deadline - time.monotonic()) * 1000))


def open_idempotency(settings: Settings) -> BasePersistenceLayer:
    if settings.is_local:
        from stripe_events.idempotency_sqlite import SqlitePersistenceLayer

        return SqlitePersistenceLayer(settings.state_dir / "idempotency.sqlite3")
    from aws_lambda_powertools.utilities.idempotency import DynamoDBPersistenceLayer

    import stripe_events.aws as aws
    from stripe_events.stores.dynamodb import FAIL_FAST

    # The ledger's table: records live under one partition, keyed by the hashed key.
    return DynamoDBPersistenceLayer(
        table_name=settings.table,
        key_attr=PARTITION_KEY,
        sort_key_attr=SORT_KEY,
        expiry_attr=TTL_ATTRIBUTE,
        static_pk_value=IDEMPOTENCY_PARTITION,
        boto_config=FAIL_FAST,
        boto3_session=aws.session(),
    )


def run_once(
    persistence: BasePersistenceLayer,
    key: dict[str, str],
    run: Callable[[], dict[str, Any]],
    *,
    retention_days: int,
    lambda_context: Any = None,
) -> Any:
    """Run `run` unless a run for `key` completed; raise while another run holds the lock.

    Raises IdempotencyAlreadyInProgressError when another run holds the lock, and
    IdempotencyPersistenceLayerError when the store is unavailable.
    """
    config = IdempotencyConfig(
        expires_after_seconds=retention_days * 24 * 3600, raise_on_no_idempotency_key=True
    )
    # Powertools only calls get_remaining_time_in_millis on it.
    config.register_lambda_context(lambda_context or LocalLambdaContext())  # type: ignore[arg-type]

    def once(key: dict[str, str]) -> dict[str, Any]:
        return run()

    guarded: Callable[..., Any] = idempotent_function(
        once,
        data_keyword_argument="key",
        persistence_store=persistence,
        config=config,
        key_prefix=KEY_PREFIX,
    )
    return guarded(key=key)
