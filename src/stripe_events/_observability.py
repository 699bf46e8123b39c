"""JSON logs and CloudWatch metrics (embedded metric format) with Powertools, in
namespace "StripeEvents", with the stage's stack name as `service` (POWERTOOLS_SERVICE_NAME)
so that one stage's alarms never count another's. Stage `local` logs plain lines."""

from __future__ import annotations

import logging
import os
import sys
import warnings

from aws_lambda_powertools.logging.formatter import LambdaPowertoolsFormatter
from aws_lambda_powertools.metrics import Metrics, MetricUnit, single_metric

from stripe_events._settings import Settings

NAMESPACE = "StripeEvents"
SERVICE_VARIABLE = "POWERTOOLS_SERVICE_NAME"
DEFAULT_SERVICE = "stripe-events"
ROOT_LOGGER = "stripe_events"

metrics = Metrics(namespace=NAMESPACE)
_metrics_on = False
_service = DEFAULT_SERVICE


def service_name() -> str:
    return os.environ.get(SERVICE_VARIABLE, "").strip() or DEFAULT_SERVICE


def configure(settings: Settings) -> None:
    """JSON logs and metrics on AWS. Idempotent: importing the app twice adds nothing twice."""
    global _metrics_on, _service
    _metrics_on = not settings.is_local
    _service = service_name()
    if metrics.default_dimensions.get("service") != _service:
        # Only a process that loads the app under another service (the tests) sets it
        # again; Powertools then warns that it replaces the value, which is the intent.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            metrics.set_default_dimensions(service=_service)
    logger = logging.getLogger(ROOT_LOGGER)
    logger.setLevel(logging.INFO)
    if settings.is_local or any(getattr(h, "stripe_events", False) for h in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(LambdaPowertoolsFormatter(service=_service))
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
        metric.add_dimension(name="service", value=_service)
        for key, dimension in dimensions.items():
            metric.add_dimension(name=key, value=dimension)


def flush() -> None:
    """Write the metrics gathered for this invocation (as one EMF line on stdout)."""
    if metrics.metric_set:
        metrics.flush_metrics()
