"""Ingest function: S3 ObjectCreated (directly or through SQS) -> validate, accept, count, seal.

SQS batches report partial failures so only failed records are retried (then the DLQ).
"""

from __future__ import annotations

import functools
import json
from typing import Any
from urllib.parse import unquote_plus

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import BatchProcessor, EventType, process_partial_response

from fma.adapters.factory import build_deps
from fma.adapters.settings import Settings
from fma.services.deps import Deps
from fma.services.ingest import IngestOutcome, ingest_object

logger = Logger()
metrics = Metrics()
processor = BatchProcessor(event_type=EventType.SQS)


@functools.cache
def deps() -> Deps:
    return build_deps(Settings.from_env())


def s3_keys(s3_event: dict[str, Any]) -> list[str]:
    """Object keys of ObjectCreated records (URL-decoded); s3:TestEvent and others yield none."""
    return [unquote_plus(r["s3"]["object"]["key"]) for r in s3_event.get("Records", [])
            if str(r.get("eventName", "")).startswith("ObjectCreated") and "s3" in r]


def ingest_key(key: str) -> IngestOutcome:
    outcome = ingest_object(deps(), key)
    logger.info("ingested", extra={"key": key, "outcome": outcome.status, "experiment_id": outcome.experiment_id,
                                   "round": outcome.round, "client_id": outcome.client_id, "reason": outcome.reason,
                                   "sealed": outcome.sealed})
    if outcome.status == "accepted":
        metrics.add_metric("UpdatesAccepted", MetricUnit.Count, 1)
    elif outcome.status == "rejected":
        metrics.add_metric("UpdatesRejected", MetricUnit.Count, 1)
    elif outcome.status == "late":
        metrics.add_metric("UpdatesLate", MetricUnit.Count, 1)
    return outcome


def record_handler(record: Any) -> None:
    for key in s3_keys(json.loads(record.body)):
        ingest_key(key)


@metrics.log_metrics
@logger.inject_lambda_context
def handler(event: dict, context: object) -> dict:
    records = event.get("Records", [])
    if records and records[0].get("eventSource") == "aws:sqs":
        return process_partial_response(event=event, record_handler=record_handler, processor=processor,
                                        context=context)
    return {"outcomes": [ingest_key(k).status for k in s3_keys(event)]}
