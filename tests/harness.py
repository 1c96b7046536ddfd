"""A moto-backed FMA stack that calls the real Lambda handlers, as API Gateway, S3 and SQS would."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

import boto3
import numpy as np

from fma.adapters.dynamo_models import configure_table, create_table
from fma.adapters.factory import build_deps, set_invoker_override
from fma.adapters.invoker import RecordingInvoker
from fma.adapters.settings import Settings
from fma.domain.auth import Role
from fma.domain.codec import encode
from fma.local import dispatch
from fma.services.access import mint_token

BUCKET = os.environ["FMA_BUCKET_NAME"]


def update_bytes(tensors: dict[str, np.ndarray], num_examples: int | None, round_: int | None = None,
                 metrics: dict | None = None, extra: dict | None = None) -> bytes:
    meta: dict[str, str] = {}
    if num_examples is not None:
        meta["fma.num_examples"] = str(num_examples)
    if round_ is not None:
        meta["fma.round"] = str(round_)
    if metrics is not None:
        meta["fma.metrics"] = json.dumps(metrics)
    meta.update(extra or {})
    return encode(tensors, meta)


@dataclass
class Stack:
    invoker: RecordingInvoker
    s3: Any
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def deps(self):
        return build_deps(Settings.from_env())

    def token(self, role: Role, principal_id: str | None = None) -> str:
        token, _ = mint_token(self.deps, role, principal_id)
        return token

    def api(self, method: str, path: str, token: str | None = None, json_body: Any = None,
            body: bytes | None = None, headers: dict[str, str] | None = None,
            query: dict[str, str] | None = None) -> dispatch.HttpResult:
        headers = dict(headers or {})
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        if json_body is not None:
            body = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        elif body is not None:
            headers.setdefault("Content-Type", "application/octet-stream")
        return dispatch.call_api(method, path, headers, body, query)

    def deliver(self, *keys: str) -> dict:
        return dispatch.run_ingest(BUCKET, list(keys))

    def run_aggregations(self, advance: float = 0.0) -> list[dict]:
        """Run the queued async invocations, as if `advance` seconds had passed."""
        import time as _time

        deps = dispatch.load_handler_module("aggregate").deps()
        deps.clock = lambda: _time.time() + advance
        results = []
        try:
            while self.invoker.calls:
                results.append(dispatch.run_aggregate(self.invoker.calls.pop(0)))
        finally:
            deps.clock = _time.time
        return results

    def sweep(self, advance: float = 0.0) -> dict:
        """Run the sweeper handler as if `advance` seconds had passed."""
        import time as _time

        module = dispatch.load_handler_module("sweeper")
        deps = module.deps()
        deps.clock = lambda: _time.time() + advance
        try:
            return module.handler({"source": "aws.events"}, dispatch.FakeContext("sweeper"))
        finally:
            deps.clock = _time.time

    def round(self, token: str, exp_id: str, n: int) -> dict:
        return self.api("GET", f"/v1/experiments/{exp_id}/rounds/{n}", token).json()

    def experiment(self, token: str, exp_id: str) -> dict:
        return self.api("GET", f"/v1/experiments/{exp_id}", token).json()

    def snapshot(self) -> tuple:
        """Every item of the table and every object version of the bucket: equal before and after
        a refused request proves that it changed nothing."""
        ddb = boto3.client("dynamodb", region_name="us-east-1")
        items = [i for page in ddb.get_paginator("scan").paginate(TableName=os.environ["FMA_TABLE_NAME"])
                 for i in page["Items"]]
        objects = self.s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
        return (sorted(json.dumps(i, sort_keys=True) for i in items),
                sorted((o["Key"], o["ETag"], o["VersionId"]) for o in objects))

    def put_object(self, key: str, data: bytes) -> None:
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=data)

    def get_object(self, key: str) -> bytes:
        return self.s3.get_object(Bucket=BUCKET, Key=key)["Body"].read()

    # -- flows used by many tests ----------------------------------------------------------
    def create_experiment(self, dev: str, initial: dict[str, np.ndarray], **body: Any) -> str:
        payload = {"name": "exp", "strategy": {"name": "fedavg"}, "rounds": {"min_updates": 3, "total_rounds": 3}}
        payload.update(body)
        res = self.api("POST", "/v1/experiments", dev, json_body=payload)
        assert res.status == 201, res.body
        exp_id = res.json()["experiment"]["id"]
        res = self.api("PUT", f"/v1/experiments/{exp_id}/model", dev, body=encode(initial))
        assert res.status == 202, res.body
        self.deliver(f"models/{exp_id}/00000000.safetensors")
        return exp_id

    def enroll(self, dev: str, exp_id: str, count: int) -> list[tuple[str, str]]:
        res = self.api("POST", f"/v1/experiments/{exp_id}/enrollment-tokens", dev, json_body={"max_uses": count})
        assert res.status == 201, res.body
        enroll = res.json()["token"]
        clients = []
        for _ in range(count):
            reg = self.api("POST", f"/v1/experiments/{exp_id}/clients", enroll, json_body={})
            assert reg.status == 201, reg.body
            clients.append((reg.json()["client_id"], reg.json()["token"]))
        return sorted(clients)

    def submit(self, exp_id: str, n: int, client_token: str, data: bytes) -> dispatch.HttpResult:
        return self.api("PUT", f"/v1/experiments/{exp_id}/rounds/{n}/updates", client_token, body=data)


def start_stack() -> Stack:
    s3 = boto3.client("s3", region_name="us-east-1")
    s3.create_bucket(Bucket=BUCKET)
    s3.put_bucket_versioning(Bucket=BUCKET, VersioningConfiguration={"Status": "Enabled"})
    configure_table(os.environ["FMA_TABLE_NAME"])
    create_table()
    invoker = RecordingInvoker()
    set_invoker_override(invoker)
    dispatch.reset_handler_caches()
    return Stack(invoker, s3)


def stop_stack() -> None:
    set_invoker_override(None)
    dispatch.reset_handler_caches()
