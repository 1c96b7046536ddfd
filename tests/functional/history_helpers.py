"""Finished experiments for the registry, lineage and verify tests, and a state snapshot."""

from __future__ import annotations

import json

import boto3
import numpy as np
from harness import BUCKET, update_bytes


def initial_model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    return {"dense/kernel": rng.normal(size=(3, 2)).astype(np.float32), "dense/bias": np.zeros(2, np.float32)}


def run_rounds(stack, exp_id: str, clients: list[tuple[str, str]], first: int, last: int, seed: int = 1) -> None:
    """Every client sends one update per round; each round is aggregated before the next."""
    rng = np.random.default_rng(seed)
    for n in range(first, last + 1):
        for i, (client_id, token) in enumerate(clients):
            tensors = {k: (v + rng.normal(size=v.shape)).astype(np.float32) for k, v in initial_model().items()}
            res = stack.submit(exp_id, n, token, update_bytes(tensors, 5 + i, n, {"loss": 1.0 / n + i}))
            assert res.status == 202, res.body
            stack.deliver(f"updates/{exp_id}/{n:08d}/{client_id}.safetensors")
        [result] = stack.run_aggregations()
        assert result["status"] == "published", result


def finished_experiment(stack, dev: str, rounds: int = 3, clients: int = 2, **body) -> str:
    body.setdefault("rounds", {"min_updates": clients, "total_rounds": rounds})
    exp_id = stack.create_experiment(dev, initial_model(), **body)
    run_rounds(stack, exp_id, stack.enroll(dev, exp_id, clients), 1, rounds)
    return exp_id


def snapshot(stack) -> tuple:
    """Every table item and every object version: equal snapshots mean nothing changed."""
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    items = [i for page in ddb.get_paginator("scan").paginate(TableName=stack.deps.repo.table_name)
             for i in page["Items"]]
    objects = stack.s3.list_object_versions(Bucket=BUCKET).get("Versions", [])
    return (sorted(json.dumps(i, sort_keys=True) for i in items),
            sorted((o["Key"], o["ETag"], o["VersionId"]) for o in objects))
