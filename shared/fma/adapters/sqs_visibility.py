"""Returns a failed SQS message for retry within seconds instead of after the queue's
visibility timeout (six times the ingest timeout: 12 minutes by default)."""

from __future__ import annotations

import logging
from typing import Any

import boto3
from botocore.config import Config

log = logging.getLogger(__name__)


def queue_url(event_source_arn: str) -> str | None:
    """arn:aws:sqs:{region}:{account}:{name} -> the queue's URL (SQS's documented form)."""
    parts = event_source_arn.split(":")
    if len(parts) != 6 or parts[:3] != ["arn", parts[1], "sqs"]:
        return None
    _, partition, _, region, account, name = parts
    suffix = "amazonaws.com.cn" if partition == "aws-cn" else "amazonaws.com"
    return f"https://sqs.{region}.{suffix}/{account}/{name}"


class SqsVisibility:
    """`delay` makes one received message visible again after `seconds`; the client is injectable."""

    def __init__(self, client: Any | None = None, region: str | None = None, endpoint_url: str | None = None,
                 enabled: bool = True):
        self._client = client
        self._region, self._endpoint, self.enabled = region, endpoint_url, enabled

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = boto3.client("sqs", region_name=self._region, endpoint_url=self._endpoint,
                                        config=Config(retries={"max_attempts": 3, "mode": "standard"}))
        return self._client

    def delay(self, event_source_arn: str, receipt_handle: str, seconds: int) -> bool:
        """Best effort: if it fails, the message still returns after the visibility timeout."""
        url = queue_url(event_source_arn)
        if url is None or not self.enabled:
            return False
        try:
            self.client.change_message_visibility(QueueUrl=url, ReceiptHandle=receipt_handle,
                                                  VisibilityTimeout=max(0, min(int(seconds), 43200)))
            return True
        except Exception as exc:
            log.warning("could not change the visibility of a message of %s: %s", url, type(exc).__name__)
            return False
