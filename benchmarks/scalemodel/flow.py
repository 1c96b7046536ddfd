"""One round's client operations through the real handlers, each traced as one instance.

The flow is a client's, as the SDK runs it: register with the enrollment token (whose
`max_uses` is 1,000 x the clients: at scale a use shard rarely runs dry, so a typical
registration is one of a large cohort's); GET model and
download it (the presigned GET's object request); upload the update (direct PUT, the SDK's path
for updates up to 4 MiB); ingest (the S3 event's SQS message); a poll (GET round, then GET model
with If-None-Match, or where the design has a pointer object, one CloudFront request for it);
after the last accept, which seals the round, the aggregate invocation
that publishes. `calls` of each operation counts what is not a DynamoDB or S3 request: API
Gateway requests (each one also an api Lambda invocation), SQS messages, async invocations.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any
from urllib.parse import unquote, urlsplit

import boto3
import numpy as np


class RecordError(Exception):
    pass


def cache_authorizer(dispatch: Any) -> None:
    """Answer each token's authorization once, as API Gateway does for `authorizer_cache_seconds`
    (300 s, longer than a recorded round; the policy is the whole API's, so one answer serves
    every route): the authorizer's reads are traced on a token's first request only, not on
    every request (local mode itself re-authorizes every request, so a revocation is immediate)."""
    module = dispatch.load_handler_module("authorizer")
    original, answers = module.handler, {}

    def cached(event: dict, context: Any) -> dict:
        token = event.get("authorizationToken", "")
        if token not in answers:
            answers[token] = original(event, context)
        return answers[token]

    cached.__wrapped__ = original  # type: ignore[attr-defined]
    module.handler = cached


class Round:
    def __init__(self, tracer: Any, clients: int, params: int) -> None:
        from fma.adapters.dynamo_models import configure_table, create_table
        from fma.adapters.factory import set_invoker_override
        from fma.adapters.invoker import RecordingInvoker
        from fma.local import dispatch

        self.tracer, self.clients, self.params = tracer, clients, params
        self.bucket, self.table = os.environ["FMA_BUCKET_NAME"], os.environ["FMA_TABLE_NAME"]
        self.s3 = boto3.client("s3", region_name="us-east-1")
        self.s3.create_bucket(Bucket=self.bucket)
        self.s3.put_bucket_versioning(Bucket=self.bucket, VersioningConfiguration={"Status": "Enabled"})
        configure_table(self.table)
        create_table()
        self.invoker = RecordingInvoker()
        set_invoker_override(self.invoker)
        dispatch.reset_handler_caches()
        self.dispatch = dispatch
        cache_authorizer(dispatch)
        self.exp_id, self.client_ids, self.enroll_hash = "", [], ""

    def stop(self) -> None:
        from fma.adapters.factory import set_invoker_override

        set_invoker_override(None)
        self.dispatch.reset_handler_caches()
        module = self.dispatch.load_handler_module("authorizer")
        module.handler = getattr(module.handler, "__wrapped__", module.handler)

    def api(self, method: str, path: str, token: str, json_body: Any = None, body: bytes | None = None,
            headers: dict[str, str] | None = None, ok: tuple[int, ...] = (200,)) -> Any:
        headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        if json_body is not None:
            body, headers["Content-Type"] = json.dumps(json_body).encode(), "application/json"
        elif body is not None:
            headers["Content-Type"] = "application/octet-stream"
        res = self.dispatch.call_api(method, f"/v1/{path}", headers, body)
        if res.status not in ok:
            raise RecordError(f"{method} {path} -> {res.status} {res.body[:300]!r}")
        return res

    def round(self) -> None:
        """Setup (not traced), then every client's operations, then the publish."""
        from fma.adapters.factory import build_deps
        from fma.adapters.settings import Settings
        from fma.domain.auth import Role
        from fma.domain.codec import encode
        from fma.services.access import mint_token

        dev, _ = mint_token(build_deps(Settings.from_env()), Role.DEVELOPER, "dev-1")
        initial = {"w": np.zeros(self.params, np.float32)}
        created = self.api("POST", "experiments", dev, {"name": "scale", "strategy": {"name": "fedavg"},
                           "rounds": {"min_updates": self.clients, "total_rounds": 1}}, ok=(201,))
        self.exp_id = exp = created.json()["experiment"]["id"]
        self.api("PUT", f"experiments/{exp}/model", dev, body=encode(initial), ok=(202,))
        self.dispatch.run_ingest(self.bucket, [f"models/{exp}/00000000.safetensors"])
        enroll = self.api("POST", f"experiments/{exp}/enrollment-tokens", dev, {"max_uses": 1000 * self.clients},
                          ok=(201,)).json()["token"]
        self.enroll_hash = hashlib.sha256(enroll.encode()).hexdigest()
        tokens = [self.register(exp, enroll, i) for i in range(self.clients)]
        for i, (client_id, token) in enumerate(tokens):
            etag, poll_url = self.download(exp, token)
            self.upload(exp, client_id, token, encode({"w": np.full(self.params, i, np.float32)},
                                                      {"fma.num_examples": str(10 + i % 7), "fma.round": "1"}))
            self.poll(exp, token, etag, poll_url)
        with self.tracer.operation("publish", invoke=len(self.invoker.calls)):
            while self.invoker.calls:
                self.dispatch.run_aggregate(self.invoker.calls.pop(0))
        state = self.api("GET", f"experiments/{exp}/rounds/1", dev).json()["state"]
        if state != "PUBLISHED":
            raise RecordError(f"the recorded round ended {state}, not PUBLISHED")

    def register(self, exp: str, enroll: str, i: int) -> tuple[str, str]:
        for _ in range(20):  # a spent use shard's rebalancing may answer 409: the SDK retries
            with self.tracer.operation("register", api=1):
                res = self.api("POST", f"experiments/{exp}/clients", enroll, {"name": f"scale-{i}"}, ok=(201, 409))
            if res.status == 201:
                body = res.json()
                self.client_ids.append(body["client_id"])
                return body["client_id"], body["token"]
        raise RecordError(f"client {i} could not register")

    def download(self, exp: str, token: str) -> tuple[str, str | None]:
        """The model's ETag and the experiment's pointer URL (None: a design without pointers)."""
        with self.tracer.operation("download", api=1):
            res = self.api("GET", f"experiments/{exp}/model", token)
            key = unquote(urlsplit(res.json()["url"]).path).lstrip("/").removeprefix(f"{self.bucket}/")
            self.s3.get_object(Bucket=self.bucket, Key=key)  # the client's presigned GET
        return res.headers.get("ETag") or res.headers.get("etag") or "", res.json().get("poll_url")

    def poll(self, exp: str, token: str, etag: str, poll_url: str | None) -> None:
        """A waiting client's poll: the pointer through CloudFront where the design has one (one
        CDN request; the edge's own S3 GET, at most one per 5 s per edge, is not per poll), else
        GET round and GET model with If-None-Match."""
        if poll_url:
            key = urlsplit(poll_url).path.lstrip("/")
            pointer = json.loads(self.s3.get_object(Bucket=self.bucket, Key=key)["Body"].read())  # untraced
            if pointer.get("experiment_id") != exp:
                raise RecordError(f"the pointer at {key} is not this experiment's: {pointer}")
            with self.tracer.operation("poll", cdn=1):
                return
        with self.tracer.operation("poll", api=2):
            self.api("GET", f"experiments/{exp}/rounds/1", token)
            self.api("GET", f"experiments/{exp}/model", token, headers={"If-None-Match": etag}, ok=(200, 304))

    def upload(self, exp: str, client_id: str, token: str, data: bytes) -> None:
        with self.tracer.operation("upload", api=1):
            self.api("PUT", f"experiments/{exp}/rounds/1/updates", token, body=data, ok=(202,))
        with self.tracer.operation("ingest", sqs=1):
            out = self.dispatch.run_ingest(self.bucket, [f"updates/{exp}/00000001/{client_id}.safetensors"])
        if out.get("batchItemFailures"):
            raise RecordError(f"ingest of {client_id} failed: {out}")
