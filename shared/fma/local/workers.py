"""Background work of local mode: the SQS -> ingest pump, the async aggregate worker and the
sweeper timer. Each runs the Lambda handler exactly as Lambda would, and stops on an Event."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from fma.local import dispatch
from fma.local.events import s3_event, sqs_event
from fma.services.ports import ObjectEvents

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
    """Receives object-created events (the outbox, or SQS on aws-emulation), hands them to the
    ingest handler as the SQS batch Lambda would get (with each event's receive count, which
    bounds the handler's attempts), acknowledges what succeeded and sends what failed back for a
    retry after a short backoff (1, 2, 4 ... s), not after the whole visibility timeout."""

    def __init__(self, events: ObjectEvents, bucket: str, stop: threading.Event,
                 run: Callable[[dict[str, Any]], dict[str, Any]] = dispatch.run_ingest_event):
        super().__init__(name="fma-ingest-pump", daemon=True)
        self.events, self.bucket, self.stop_event, self.run_ingest = events, bucket, stop, run

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.pump_once(wait_seconds=1)
            except Exception:
                log.exception("ingest pump error")
                self.stop_event.wait(1)

    def pump_once(self, wait_seconds: float = 0) -> int:
        batch = self.events.receive(10, wait_seconds)
        if not batch:
            return 0
        event = sqs_event([json.dumps(s3_event(self.bucket, e.key)) for e in batch])
        for record, created in zip(event["Records"], batch, strict=True):
            record["messageId"] = created.event_id
            record["attributes"]["ApproximateReceiveCount"] = str(created.deliveries)
        result = self.run_ingest(event)
        failed = {f["itemIdentifier"] for f in (result or {}).get("batchItemFailures", [])}
        self.events.acknowledge([e.event_id for e in batch if e.event_id not in failed])
        if failed:
            self.events.retry([e.event_id for e in batch if e.event_id in failed])
        return len(batch)


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
