"""Ingest's SQS queue as Lambda's event source mapping drives it, for tests on moto: the queue,
one received batch shaped as the Lambda event, and a spy on the visibility changes ingest makes
(a failed record must come back within seconds, not after the queue's 720 s)."""

from __future__ import annotations

import json

from harness import BUCKET

from fma.local.events import s3_event


class VisibilitySpy:
    """An SQS client that records every visibility change before passing it on to moto."""

    def __init__(self, inner):
        self.inner, self.changes = inner, []

    def change_message_visibility(self, **kwargs):
        self.changes.append(kwargs["VisibilityTimeout"])
        return self.inner.change_message_visibility(**kwargs)


def ingest_queue(sqs) -> tuple[str, str]:
    """The ingest queue's URL and ARN."""
    url = sqs.create_queue(QueueName="fma-ingest")["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    return url, arn


def send_object_created(sqs, url: str, key: str) -> str:
    """S3's ObjectCreated event for `key` on the queue; its message id."""
    return sqs.send_message(QueueUrl=url, MessageBody=json.dumps(s3_event(BUCKET, key)))["MessageId"]


def receive_batch(sqs, url: str, arn: str) -> tuple[dict, list[dict]]:
    """One SQS batch shaped as Lambda's event source mapping delivers it; the event and the messages."""
    messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                   VisibilityTimeout=720).get("Messages", [])
    records = [{"messageId": m["MessageId"], "receiptHandle": m["ReceiptHandle"], "body": m["Body"],
                "attributes": {"ApproximateReceiveCount": m["Attributes"]["ApproximateReceiveCount"]},
                "messageAttributes": {}, "md5OfBody": m["MD5OfBody"], "eventSource": "aws:sqs",
                "eventSourceARN": arn, "awsRegion": "us-east-1"} for m in messages]
    return {"Records": records}, messages
