"""Real-shaped Lambda events: API Gateway REST proxy, TOKEN authorizer, S3 and SQS records.

Local mode's gateway and the tests build events here, so both exercise the handlers exactly
as API Gateway, S3 and SQS would call them on AWS.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote_plus

API_ID = "local"
STAGE = "v1"
ACCOUNT = "123456789012"
REGION = "us-east-1"
TEXT_TYPES = ("application/json", "text/", "application/x-www-form-urlencoded")


@dataclass
class FakeContext:
    """The attributes powertools reads from a Lambda context."""

    function_name: str = "fma-local"
    memory_limit_in_mb: int = 1024
    aws_request_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def invoked_function_arn(self) -> str:
        return f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:{self.function_name}"

    def get_remaining_time_in_millis(self) -> int:
        return 900_000


def method_arn(method: str, path: str) -> str:
    return f"arn:aws:execute-api:{REGION}:{ACCOUNT}:{API_ID}/{STAGE}/{method}{path}"


def authorizer_event(authorization: str | None, method: str, path: str) -> dict[str, Any]:
    return {"type": "TOKEN", "authorizationToken": authorization or "", "methodArn": method_arn(method, path)}


def api_event(method: str, path: str, *, headers: dict[str, str] | None = None, body: bytes | None = None,
              query: dict[str, str] | None = None, authorizer: dict[str, Any] | None = None,
              source_ip: str = "127.0.0.1") -> dict[str, Any]:
    """A REST API proxy event for `/v1/{proxy+}` (binary bodies base64-encoded, as API Gateway does)."""
    headers = dict(headers or {})
    content_type = next((v for k, v in headers.items() if k.lower() == "content-type"), "")
    is_text = body is not None and any(content_type.startswith(t) for t in TEXT_TYPES)
    if body is None:
        encoded, b64 = None, False
    elif is_text:
        try:
            encoded, b64 = body.decode("utf-8"), False
        except UnicodeDecodeError:
            encoded, b64 = base64.b64encode(body).decode(), True
    else:
        encoded, b64 = base64.b64encode(body).decode(), True
    return {
        "resource": "/v1/{proxy+}", "path": path, "httpMethod": method, "headers": headers,
        "multiValueHeaders": {k: [v] for k, v in headers.items()},
        "queryStringParameters": query or None,
        "multiValueQueryStringParameters": {k: [v] for k, v in query.items()} if query else None,
        "pathParameters": {"proxy": path.removeprefix("/v1/")}, "stageVariables": None,
        "requestContext": {
            "resourcePath": "/v1/{proxy+}", "httpMethod": method, "path": f"/{STAGE}{path}", "stage": STAGE,
            "requestId": str(uuid.uuid4()), "accountId": ACCOUNT, "apiId": API_ID, "protocol": "HTTP/1.1",
            "requestTimeEpoch": int(time.time() * 1000), "identity": {"sourceIp": source_ip},
            "authorizer": authorizer or {},
        },
        "body": encoded, "isBase64Encoded": b64,
    }


def s3_record(bucket: str, key: str, size: int = 0, event_name: str = "ObjectCreated:Put") -> dict[str, Any]:
    return {
        "eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": REGION,
        "eventTime": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime()), "eventName": event_name,
        "s3": {"s3SchemaVersion": "1.0", "configurationId": "fma-ingest",
               "bucket": {"name": bucket, "arn": f"arn:aws:s3:::{bucket}"},
               "object": {"key": quote_plus(key), "size": size, "sequencer": uuid.uuid4().hex[:16].upper()}},
    }


def s3_event(bucket: str, key: str, size: int = 0) -> dict[str, Any]:
    return {"Records": [s3_record(bucket, key, size)]}


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    """An SQS batch as Lambda's event source mapping delivers it."""
    return {"Records": [{
        "messageId": str(uuid.uuid4()), "receiptHandle": uuid.uuid4().hex, "body": body,
        "attributes": {"ApproximateReceiveCount": "1", "SentTimestamp": str(int(time.time() * 1000))},
        "messageAttributes": {}, "md5OfBody": "", "eventSource": "aws:sqs",
        "eventSourceARN": f"arn:aws:sqs:{REGION}:{ACCOUNT}:fma-ingest", "awsRegion": REGION,
    } for body in bodies]}


def sqs_s3_event(bucket: str, keys: list[str]) -> dict[str, Any]:
    return sqs_event([json.dumps(s3_event(bucket, k)) for k in keys])
