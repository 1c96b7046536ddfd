"""Sweeper function, on an EventBridge schedule (every minute)."""

from __future__ import annotations

import dataclasses
import functools

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from fma.adapters.factory import build_deps
from fma.services.deps import Deps
from fma.services.sweeper import sweep
from sweeper.settings import load_settings

logger = Logger()
metrics = Metrics()


@functools.cache
def deps() -> Deps:
    return build_deps(load_settings())


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    report = dataclasses.asdict(sweep(deps()))
    if any(report.values()):
        logger.info("sweep", extra=report)
    if report["failed"]:
        logger.error("rounds failed", extra={"rounds": report["failed"]})
        metrics.add_metric("RoundsFailed", MetricUnit.Count, len(report["failed"]))
    if report["errors"]:
        logger.error("sweep items failed (pushed back or FAILED)", extra={"errors": report["errors"]})
        metrics.add_metric("SweepErrors", MetricUnit.Count, len(report["errors"]))
    if report["failed_updates"]:
        metrics.add_metric("UpdatesFailed", MetricUnit.Count, len(report["failed_updates"]))
    if report["reconciled"]:
        metrics.add_metric("UpdatesReconciled", MetricUnit.Count, len(report["reconciled"]))
    return report
