"""DynamoDB answering chosen requests with its own errors, on the wire, in front of moto.

The fault is injected where botocore's HTTP layer meets moto (moto's ``before-send`` stubber), so
botocore's real retry logic and pynamodb's real error parsing see exactly what DynamoDB would send.
A rule answers the first `times` matching requests: before moto sees them (the write did not
happen) or, with ``after_apply``, after moto applied them (the write happened, its answer was lost).
"""

from __future__ import annotations

import json
from dataclasses import dataclass


@dataclass
class Rule:
    operation: str
    times: int
    code: str
    status: int = 400
    reasons: list[str | None] | None = None
    contains: bytes | None = None
    after_apply: bool = False
    hits: int = 0
    s3: bool = False  # an S3 rule: `operation` is the HTTP method, `contains` a part of the URL

    def body(self) -> str:
        if self.s3:
            return f"<Error><Code>{self.code}</Code><Message>injected {self.code}</Message></Error>"
        payload = {"__type": f"com.amazonaws.dynamodb.v20120810#{self.code}", "message": f"injected {self.code}"}
        if self.reasons is not None:
            payload["Message"] = f"Transaction cancelled [{', '.join(str(r) for r in self.reasons)}]"
            payload["CancellationReasons"] = [{"Code": r, "Message": "injected"} if r else {"Code": "None"}
                                              for r in self.reasons]
        return json.dumps(payload)


class WireFaults:
    def __init__(self, monkeypatch):
        from moto.core.models import botocore_stubber

        self.inner = botocore_stubber.process_request
        self.rules: list[Rule] = []
        self.requests: list[str] = []  # the DynamoDB operations that reached the wire, in order
        monkeypatch.setattr(botocore_stubber, "process_request", self)

    def fail(self, operation: str, times: int, code: str, **kwargs) -> Rule:
        rule = Rule(operation, times, code, **kwargs)
        self.rules.append(rule)
        return rule

    def fail_s3(self, method: str, url_part: str, times: int, code: str = "SlowDown", status: int = 503) -> Rule:
        rule = Rule(method, times, code, status=status, contains=url_part.encode(), s3=True)
        self.rules.append(rule)
        return rule

    def _s3(self, request):
        for rule in self.rules:
            if (rule.s3 and rule.times > 0 and request.method == rule.operation
                    and rule.contains.decode() in request.url):
                rule.times -= 1
                rule.hits += 1
                return rule.status, {"Content-Type": "application/xml"}, rule.body()
        return self.inner(request)

    def __call__(self, request):
        target = request.headers.get("X-Amz-Target") or b""
        target = target.decode() if isinstance(target, bytes) else target
        operation = target.rpartition(".")[2] if target.startswith("DynamoDB_") else None
        if not operation:  # S3, SQS ...: their bodies may be streams, only the URL is looked at
            return self._s3(request) if ".s3." in request.url or "s3.amazonaws" in request.url else self.inner(request)
        self.requests.append(operation)
        body = request.body if isinstance(request.body, bytes) else str(request.body or "").encode()
        for rule in self.rules:
            if (not rule.s3 and rule.times > 0 and operation == rule.operation
                    and (rule.contains is None or rule.contains in body)):
                rule.times -= 1
                rule.hits += 1
                if rule.after_apply:
                    self.inner(request)
                return rule.status, {"Content-Type": "application/x-amz-json-1.0"}, rule.body()
        return self.inner(request)
