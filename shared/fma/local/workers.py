"""Background work of local mode: the SQS -> ingest pump, the async aggregate worker and the
sweeper timer. Each runs the Lambda handler exactly as Lambda would, and stops on an Event."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3

from fma.local import dispatch
from fma.local.events import sqs_event

log = logging.getLogger("fma.local")


class ThreadInvoker:
    """Stands in for Lambda's asynchronous invoke: one worker, failures retried twice."""

    def __init__(self, retries: int = 2):
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="fma-aggregate")
        self.retries = retries

    def invoke_async(self, payload: Mapping[str, Any]) -> None:
        self.executor.submit(self._run, dict(payload))

    def _run(self, payload: dict[str, Any]) -> None:
        for attempt in range(self.retries + 1):
            try:
                result = dispatch.run_aggregate(payload)
                log.info("aggregate %s -> %s", payload, result.get("status"))
                return
            except Exception:
                log.exception("aggregate attempt %d failed for %s", attempt + 1, payload)

    def shutdown(self) -> None:
        self.executor.shutdown(wait=True, cancel_futures=False)


class IngestPump(threading.Thread):
    """Long-polls the queue, hands batches to the ingest handler, deletes what succeeded."""

    def __init__(self, endpoint: str, queue_url: str, stop: threading.Event):
        super().__init__(name="fma-ingest-pump", daemon=True)
        self.sqs = boto3.client("sqs", endpoint_url=endpoint)
        self.queue_url, self.stop_event = queue_url, stop

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.pump_once(wait_seconds=1)
            except Exception:
                log.exception("ingest pump error")
                self.stop_event.wait(1)

    def pump_once(self, wait_seconds: int = 0) -> int:
        resp = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=10,
                                        WaitTimeSeconds=wait_seconds, VisibilityTimeout=60)
        messages = resp.get("Messages", [])
        if not messages:
            return 0
        event = sqs_event([m["Body"] for m in messages])
        for record, message in zip(event["Records"], messages, strict=True):
            record["messageId"] = message["MessageId"]
        result = dispatch.run_ingest_event(event)
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        for message in messages:
            if message["MessageId"] not in failed:
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
        return len(messages)


class Timer(threading.Thread):
    """Calls `fn` every `interval` seconds (the EventBridge schedule of the sweeper)."""

    def __init__(self, interval: float, fn, stop: threading.Event, name: str):
        super().__init__(name=name, daemon=True)
        self.interval, self.fn, self.stop_event = interval, fn, stop

    def run(self) -> None:
        while not self.stop_event.wait(self.interval):
            try:
                self.fn()
            except Exception:
                log.exception("%s failed", self.name)
