"""Asynchronous invocation of the aggregate function."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import boto3


class LambdaInvoker:
    """InvocationType=Event: Lambda queues it, retries on error and sends failures to the DLQ."""

    def __init__(self, function_name: str, client: Any | None = None):
        self.function_name = function_name
        self.client = client or boto3.client("lambda")

    def invoke_async(self, payload: Mapping[str, Any]) -> None:
        self.client.invoke(FunctionName=self.function_name, InvocationType="Event",
                           Payload=json.dumps(dict(payload)).encode())


class RecordingInvoker:
    """Collects payloads; tests and local mode drain it."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    def invoke_async(self, payload: Mapping[str, Any]) -> None:
        self.calls.append(dict(payload))
