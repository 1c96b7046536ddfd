"""Ingest function: S3 ObjectCreated through SQS (infra wires nothing else) -> validate, accept, count, seal.

SQS batches report partial failures: a record failing for a reason that is not the client's
comes back within seconds (visibility backoff, fma.services.failures), never holding up the
others, and after FMA_MAX_INGEST_ATTEMPTS its update is FAILED and the message acknowledged.
Throttled or conflicted writes are retried first in the invocation, while time is left (time_budget).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from fma.adapters.factory import build_deps
from fma.adapters.sqs_visibility import SqsVisibility
from fma.services.deps import Deps
from fma.services.failures import describe, ingest_failed
from fma.services.ingest import IngestOutcome, ingest_object
from ingest.settings import load_settings
from ingest.time_budget import TimeBudget

logger = Logger()
metrics = Metrics()
# A batch whose every record failed is still a partial-failure report (not a raised error):
# each record carries its own backoff, and Lambda's error alarm stays for real faults.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


_visibility: list[SqsVisibility] = []
budget = TimeBudget()


@functools.cache
def deps() -> Deps:
    _visibility.clear()  # rebuilt with the adapters (tests and local mode reset them together)
    return build_deps(load_settings())


def visibility() -> SqsVisibility:
    """The SQS adapter, built once per cold start next to the other adapters."""
    if deps() and not _visibility:
        _visibility.append(SqsVisibility(region=load_settings().region, enabled=load_settings().sqs_reachable))
    return _visibility[0]


def s3_keys(s3_event: Any) -> list[str]:
    """Object keys of ObjectCreated records (URL-decoded); s3:TestEvent and others yield none."""
    records = s3_event.get("Records", []) if isinstance(s3_event, dict) else []
    return [unquote_plus(r["s3"]["object"]["key"]) for r in records if isinstance(r, dict)
            and str(r.get("eventName", "")).startswith("ObjectCreated") and "s3" in r]


def ingest_key(key: str) -> IngestOutcome:
    outcome = ingest_object(deps(), key)
    logger.info("ingested", extra={"key": key, "outcome": outcome.status, "experiment_id": outcome.experiment_id,
                                   "round": outcome.round, "client_id": outcome.client_id, "reason": outcome.reason,
                                   "sealed": outcome.sealed})
    if outcome.status in ("accepted", "rejected", "late"):
        metrics.add_metric(f"Updates{outcome.status.title()}", MetricUnit.Count, 1)
    return outcome


def record_handler(record: SQSRecord, lambda_context: Any = None) -> None:
    budget.check(lambda_context, lambda s: visibility().delay(record.event_source_arn, record.receipt_handle, s))
    try:
        body = json.loads(record.body)
    except ValueError:
        logger.warning("ignored a message that is not an S3 event", extra={"message_id": record.message_id})
        return
    for key in s3_keys(body):
        try:
            ingest_key(key)
        except Exception as exc:
            retry_or_fail(record, key, exc)


def retry_or_fail(record: SQSRecord, key: str, exc: Exception) -> None:
    """Acknowledge once the update is FAILED; else shorten the message's visibility and re-raise."""
    deliveries = int(record.attributes.approximate_receive_count or 1)
    verdict = ingest_failed(deps(), key, exc, deliveries)
    if verdict.give_up:
        logger.error("ingest gave up", extra={"key": key, "attempts": verdict.attempts, "error": describe(exc)})
        metrics.add_metric("UpdatesFailed", MetricUnit.Count, 1)
        return
    logger.warning("ingest failed; retrying", extra={"key": key, "retry_in": verdict.retry_in, "error": describe(exc)})
    visibility().delay(record.event_source_arn, record.receipt_handle, verdict.retry_in)
    raise exc


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: Any) -> dict:
    budget.start(context)
    return process_partial_response(event=event, record_handler=record_handler, processor=processor, context=context)
