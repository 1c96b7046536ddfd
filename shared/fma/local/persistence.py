"""Local mode keeps its data across restarts and crashes.

moto's request recorder appends every request to `<state-dir>/moto-recording.jsonl` *before*
moto handles it, so nothing acknowledged is ever missing from the log. On start, the writes of
the log are replayed against the fresh server (reads are skipped: they change nothing), which
rebuilds the same buckets, objects, items and queues. Replayed S3 uploads re-send their
notifications; ingest treats them as the duplicates they are.
"""

from __future__ import annotations

import base64
import functools
import json
import threading
from pathlib import Path
from urllib.parse import urlsplit

import requests

RECORDING = "moto-recording.jsonl"
READ_TARGETS = ("GetItem", "Query", "Scan", "DescribeTable", "BatchGetItem", "TransactGetItems",
                "DescribeTimeToLive", "ListTables", "ReceiveMessage", "GetQueueAttributes", "GetQueueUrl",
                "ListQueues", "DeleteMessage", "DeleteMessageBatch", "ChangeMessageVisibility")
SKIP_HEADERS = {"host", "content-length", "transfer-encoding", "connection"}


def _is_read(entry: dict) -> bool:
    if entry.get("method") in ("GET", "HEAD", "OPTIONS"):
        return True
    headers = {k.lower(): v for k, v in (entry.get("headers") or {}).items()}
    target = headers.get("x-amz-target", "")
    if target and target.rsplit(".", 1)[-1] in READ_TARGETS:
        return True
    body = entry.get("body") or ""
    return not entry.get("body_encoded") and any(f"Action={a}" in body for a in READ_TARGETS)


def replay(recording: Path, endpoint: str) -> int:
    """Re-send the recorded writes to `endpoint`; returns how many were replayed."""
    count = 0
    base = urlsplit(endpoint)
    with requests.Session() as session, recording.open() as lines:
        for line in lines:
            try:
                entry = json.loads(line)
            except ValueError:  # a torn last line after a crash: the request never completed
                continue
            if _is_read(entry):
                continue
            body = entry.get("body") or b""
            if entry.get("body_encoded"):
                body = base64.b64decode(body)
            url = urlsplit(entry["url"])
            target = f"{base.scheme}://{base.netloc}{url.path}" + (f"?{url.query}" if url.query else "")
            headers = {k: v for k, v in (entry.get("headers") or {}).items() if k.lower() not in SKIP_HEADERS}
            session.request(entry["method"], target, headers=headers, data=body, timeout=60)
            count += 1
    return count


def start_recording(recording: Path) -> None:
    """Append every request moto receives to `recording` (one JSON line each, under a lock)."""
    from moto.moto_api import recorder

    recorder._location = str(recording)
    if not getattr(recorder._record_request, "_fma_locked", False):
        lock = threading.Lock()
        original = recorder._record_request

        @functools.wraps(original)
        def locked(*args, **kwargs):
            with lock:
                return original(*args, **kwargs)

        locked._fma_locked = True  # type: ignore[attr-defined]
        recorder._record_request = locked
    recorder.start_recording()


def stop_recording() -> None:
    from moto.moto_api import recorder

    recorder.stop_recording()
