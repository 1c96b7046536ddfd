"""Aggregate function, invoked asynchronously with {"experiment_id", "round"} (the single plan),
or by the fanout state machine with {"task": "start" | "reduce" | "fail", ...} (services/fanout.py).

Lambda retries a failed run and then sends it to the on-failure destination; the lease and the
publish transaction make every retry safe.
"""

from __future__ import annotations

import functools

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

from aggregate.settings import load_settings
from fma.adapters.factory import build_deps
from fma.services import fanout
from fma.services.aggregation import aggregate_round
from fma.services.deps import Deps

logger = Logger()
metrics = Metrics()


@functools.cache
def deps() -> Deps:
    return build_deps(load_settings())


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    experiment_id, n = event.get("experiment_id"), event.get("round")
    if not isinstance(experiment_id, str) or isinstance(n, bool) or not isinstance(n, int):
        logger.error("bad aggregate event", extra={"event": str(event)[:500]})
        return {"status": "ignored", "reason": "event needs experiment_id (str) and round (int)"}
    logger.append_keys(experiment_id=experiment_id, round=n)
    task = event.get("task")
    result = fanout.run_task(deps(), event) if task is not None else aggregate_round(deps(), experiment_id, n)
    logger.info("aggregate finished", extra={"task": task or "single", **result})
    if result["status"] == "published":
        metrics.add_metric("RoundsPublished", MetricUnit.Count, 1)
        metrics.add_metric("AggregationSeconds", MetricUnit.Seconds, result["seconds"])
        metrics.add_metric("RoundSeconds", MetricUnit.Seconds, result["round_seconds"])
        metrics.add_metric("ModelBytes", MetricUnit.Bytes, result["bytes"])
    return result
