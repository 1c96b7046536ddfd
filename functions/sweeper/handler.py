"""Sweeper function, on an EventBridge schedule (every minute)."""

from __future__ import annotations

import dataclasses
import functools

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from fma.adapters.factory import build_deps
from fma.adapters.settings import Settings
from fma.services.deps import Deps
from fma.services.sweeper import sweep

logger = Logger()
metrics = Metrics()


@functools.cache
def deps() -> Deps:
    return build_deps(Settings.from_env())


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    report = dataclasses.asdict(sweep(deps()))
    if any(report.values()):
        logger.info("sweep", extra=report)
    if report["failed"]:
        logger.error("rounds failed", extra={"rounds": report["failed"]})
        metrics.add_metric("RoundsFailed", MetricUnit.Count, len(report["failed"]))
    if report["reconciled"]:
        metrics.add_metric("UpdatesReconciled", MetricUnit.Count, len(report["reconciled"]))
    return report
