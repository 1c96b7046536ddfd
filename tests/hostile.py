"""Helpers for the hostile-input tests: crafted safetensors files and before/after snapshots of
the table and the bucket, so a test can say exactly what a refused input changed."""

from __future__ import annotations

import hashlib
import json
import struct
from typing import Any

import boto3
import numpy as np
from harness import BUCKET, Stack

from fma.adapters.dynamo_shards import update_pk
from fma.domain.auth import Role


def model() -> dict[str, np.ndarray]:
    return {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


def raw_file(header_json: bytes | str, data: bytes = b"") -> bytes:
    """A safetensors-shaped file around any header text (valid or not)."""
    raw = header_json.encode() if isinstance(header_json, str) else header_json
    return struct.pack("<Q", len(raw)) + raw + data


def model_header(metadata: dict[str, str] | None = None) -> dict[str, Any]:
    """The header of model() in FMA's layout, as a dict to tamper with."""
    header: dict[str, Any] = {"b": {"dtype": "F32", "shape": [3], "data_offsets": [0, 12]},
                              "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [12, 36]}}
    if metadata is not None:
        header["__metadata__"] = metadata
    return header


def nesting_bomb(levels: int = 100_000) -> str:
    return '{"x": ' + "[" * levels + "]" * levels + "}"


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def table_items(stack: Stack) -> dict[tuple[str, str], str]:
    """Every item of the table by (pk, sk), as canonical JSON."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = [i for page in ddb.get_paginator("scan").paginate(TableName=stack.deps.repo.table_name)
             for i in page["Items"]]
    return {(i["pk"]["S"], i["sk"]["S"]): json.dumps(i, sort_keys=True) for i in items}


def bucket_objects(stack: Stack, prefix: str = "") -> list[tuple[str, str, str]]:
    versions = stack.s3.list_object_versions(Bucket=BUCKET, Prefix=prefix).get("Versions", [])
    return sorted((o["Key"], o["ETag"], o["VersionId"]) for o in versions)


def changed(before: dict, after: dict) -> set:
    """Keys of the items that were added, removed or changed."""
    return {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}


def update_key(exp_id: str, n: int, client_id: str) -> str:
    return f"updates/{exp_id}/{n:08d}/{client_id}.safetensors"


def world(stack: Stack, clients: int = 3, **body: Any) -> tuple[str, str, list[tuple[str, str]]]:
    """A developer, a RUNNING experiment over model() and its enrolled clients."""
    body.setdefault("rounds", {"min_updates": clients, "total_rounds": 2})
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, model(), **body)
    return dev, exp_id, stack.enroll(dev, exp_id, clients)


def submit_and_deliver(stack: Stack, exp_id: str, client: tuple[str, str], data: bytes, n: int = 1) -> dict:
    """PUT an update through the API, deliver its S3 event; the ingest handler must not fail."""
    client_id, token = client
    res = stack.submit(exp_id, n, token, data)
    assert res.status == 202, res.body
    result = stack.deliver(update_key(exp_id, n, client_id))
    assert result == {"batchItemFailures": []}, result
    return own_update(stack, exp_id, client, n)


def own_update(stack: Stack, exp_id: str, client: tuple[str, str], n: int = 1) -> dict:
    rnd = stack.round(client[1], exp_id, n)
    [mine] = rnd["updates"]
    return mine


def update_item_key(exp_id: str, n: int, client_id: str) -> tuple[str, str]:
    """(pk, sk) of a client's update item: under the client's partition (dynamo_shards)."""
    return update_pk(exp_id, client_id), f"UPDATE#{n:08d}#{client_id}"


def assert_rejected_changing_only_its_update(stack: Stack, exp_id: str, client: tuple[str, str], data: bytes,
                                            code: str) -> dict:
    """The update ends REJECTED with `code`; only its own item and the round's rejected count
    changed; no model, manifest or accepted count moved."""
    before, models = table_items(stack), bucket_objects(stack, "models/")
    mine = submit_and_deliver(stack, exp_id, client, data)
    assert mine["status"] == "REJECTED" and mine["reason"].startswith(code + ":"), mine
    after = table_items(stack)
    assert changed(before, after) == {update_item_key(exp_id, 1, client[0]),
                                      (f"EXP#{exp_id}", "ROUND#00000001")}
    rnd = stack.round(client[1], exp_id, 1)
    assert rnd["accepted"] == 0 and rnd["state"] == "OPEN"
    assert bucket_objects(stack, "models/") == models
    return mine
