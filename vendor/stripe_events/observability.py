"""Structured JSON logs and CloudWatch metrics (embedded metric format), with Powertools.

Logs: every `stripe_events.*` logger writes JSON lines with Powertools' formatter; the
keys passed as `extra` (event_id, event_type, handler, outcome, reason, duration_ms)
become fields to search on. Metrics, in namespace "StripeEvents": EventsReceived,
EventsPublished, EventsDuplicate, EventsRejected (by reason), HandlerOk and HandlerError
(by handler), HandlerDuration (by handler, in milliseconds). Stage `local` keeps plain
log lines and prints no metrics: they would only clutter `make run`.
"""

from __future__ import annotations

import logging
import sys

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import Metrics, MetricUnit, single_metric

from stripe_events.settings import Settings

NAMESPACE = "StripeEvents"
SERVICE = "stripe-events"
ROOT_LOGGER = "stripe_events"

metrics = Metrics(namespace=NAMESPACE, service=SERVICE)
_metrics_on = False


def configure(settings: Settings) -> None:
    """JSON logs and metrics on AWS. Idempotent: importing the app twice adds nothing twice."""
    global _metrics_on
    _metrics_on = not settings.is_local
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(logging.INFO)
    if settings.is_local or any(getattr(h, "stripe_events", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LambdaPowertoolsFormatter(service=SERVICE))
    handler.stripe_events = True  # type: ignore[attr-defined]
    logger.addHandler(handler)
    # Lambda's own root handler would print each record again, without the JSON.
    logger.propagate = False


def count(name: str, value: float = 1, **dimensions: str) -> None:
    if not _metrics_on:
        return
    if not dimensions:
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=value)
        return
    _single(name, MetricUnit.Count, value, dimensions)


def milliseconds(name: str, value: float, **dimensions: str) -> None:
    if _metrics_on:
        _single(name, MetricUnit.Milliseconds, value, dimensions)


def _single(name: str, unit: MetricUnit, value: float, dimensions: dict[str, str]) -> None:
    # A metric with its own dimensions (a reason, a handler) is written on its own line.
    with single_metric(name=name, unit=unit, value=value, namespace=NAMESPACE) as metric:
        metric.add_dimension(name="service", value=SERVICE)
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def flush() -> None:
    """Write the metrics gathered for this invocation (as one EMF line on stdout)."""
    if metrics.metric_set:
        metrics.flush_metrics()
