"""Object-created events of the aws connector, as the ingest function receives them on AWS:
S3 notifications into an SQS queue (local mode's aws-emulation backend and the contract suite)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote_plus

import boto3

from fma.domain.backoff import jittered_backoff
from fma.services.ports import EVENT_RETRY_BASE_SECONDS, EVENT_RETRY_CAP_SECONDS, ObjectCreated

REGION = "us-east-1"


def route_created_events(endpoint: str | None, bucket: str, queue_name: str) -> str:
    """A queue receiving the bucket's ObjectCreated notifications for updates/ and models/; idempotent."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name=REGION)
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    queue_url = sqs.create_queue(QueueName=queue_name)["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    rules = [{"QueueArn": arn, "Events": ["s3:ObjectCreated:*"],
              "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": prefix},
                                                 {"Name": "suffix", "Value": ".safetensors"}]}}}
             for prefix in ("updates/", "models/")]
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration={"QueueConfigurations": rules})
    return queue_url


class SqsObjectEvents:
    """`receive` long-polls the queue; an event not acknowledged comes back after the visibility timeout."""

    def __init__(self, queue_url: str, endpoint: str | None = None, client: Any | None = None,
                 visibility_seconds: int = 60):
        self.queue_url = queue_url
        self.sqs = client or boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
        self.visibility = visibility_seconds
        self.deliveries: dict[str, int] = {}  # receipt handle -> receive count, until acked or retried

    def receive(self, limit: int = 10, wait_seconds: float = 0.0) -> list[ObjectCreated]:
        resp = self.sqs.receive_message(QueueUrl=self.queue_url, MaxNumberOfMessages=min(limit, 10),
                                        WaitTimeSeconds=int(wait_seconds), VisibilityTimeout=self.visibility,
                                        MessageSystemAttributeNames=["ApproximateReceiveCount"])
        events = []
        for message in resp.get("Messages", []):
            keys = created_keys(message["Body"])
            if not keys:  # s3:TestEvent and the like: nothing to ingest
                self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=message["ReceiptHandle"])
                continue
            deliveries = int(message.get("Attributes", {}).get("ApproximateReceiveCount", 1))
            self.deliveries[message["ReceiptHandle"]] = deliveries
            events.extend(ObjectCreated(message["ReceiptHandle"], key, deliveries) for key in keys)
        return events

    def retry(self, event_ids: list[str]) -> None:
        """Visible again after the backoff of its deliveries (SQS rounds to whole seconds)."""
        for receipt in dict.fromkeys(event_ids):
            deliveries = self.deliveries.pop(receipt, 1)
            delay = jittered_backoff(deliveries, EVENT_RETRY_BASE_SECONDS, EVENT_RETRY_CAP_SECONDS)
            self.sqs.change_message_visibility(QueueUrl=self.queue_url, ReceiptHandle=receipt,
                                               VisibilityTimeout=max(1, round(delay)))

    def acknowledge(self, event_ids: list[str]) -> None:
        for receipt in dict.fromkeys(event_ids):
            self.deliveries.pop(receipt, None)
            self.sqs.delete_message(QueueUrl=self.queue_url, ReceiptHandle=receipt)


def created_keys(body: str) -> list[str]:
    try:
        event = json.loads(body)
    except ValueError:
        return []
    records = event.get("Records", []) if isinstance(event, dict) else []
    return [unquote_plus(r["s3"]["object"]["key"]) for r in records
            if isinstance(r, dict) and str(r.get("eventName", "")).startswith("ObjectCreated") and "s3" in r]
