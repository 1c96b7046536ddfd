"""At-least-once events, concurrency and retries change nothing twice."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
from harness import BUCKET, update_bytes

from fma.domain.auth import Role
from fma.local import dispatch


def model() -> dict[str, np.ndarray]:
    return {"w": np.arange(6, dtype=np.float32).reshape(2, 3), "b": np.ones(3, np.float32)}


def setup_round(stack, clients: int = 3, quota: int = 3):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, model(), rounds={"min_updates": quota, "total_rounds": 2})
    enrolled = stack.enroll(dev, exp_id, clients)
    keys = []
    for i, (client_id, token) in enumerate(enrolled):
        tensors = {k: v + i for k, v in model().items()}
        assert stack.submit(exp_id, 1, token, update_bytes(tensors, 5 + i, 1)).status == 202
        keys.append(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    return dev, exp_id, enrolled, keys


def round_one(stack, dev, exp_id):
    return stack.api("GET", f"/v1/experiments/{exp_id}/rounds/1", dev).json()


def test_duplicate_event_counts_once_and_invokes_once(stack):
    dev, exp_id, _, keys = setup_round(stack)
    stack.deliver(keys[0])
    stack.deliver(keys[0])  # the same S3 event again
    stack.deliver(keys[1], keys[1], keys[0])
    assert round_one(stack, dev, exp_id)["accepted"] == 2
    assert stack.invoker.calls == []
    stack.deliver(keys[2])
    stack.deliver(keys[2])
    assert round_one(stack, dev, exp_id)["accepted"] == 3
    assert len(stack.invoker.calls) == 1


def test_racing_ingests_of_last_updates_seal_once(stack):
    dev, exp_id, _, keys = setup_round(stack, clients=4, quota=3)
    stack.deliver(keys[0])
    barrier = threading.Barrier(4)
    errors: list[BaseException] = []

    def ingest(key: str) -> None:
        barrier.wait()
        try:
            dispatch.run_ingest(BUCKET, [key])
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=ingest, args=(k,)) for k in (keys[1], keys[2], keys[3], keys[2])]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    body = round_one(stack, dev, exp_id)
    assert body["state"] == "SEALED"
    assert body["accepted"] + body["late"] == 4
    assert body["accepted"] >= 3
    assert len(stack.invoker.calls) == 1


def test_aggregate_twice_publishes_once_with_same_bytes(stack):
    dev, exp_id, _, keys = setup_round(stack)
    stack.deliver(*keys)
    payload = stack.invoker.calls[0]
    first = dispatch.run_aggregate(payload)
    second = dispatch.run_aggregate(payload)
    assert first["status"] == "published" and second["status"] == "already_published"
    assert first["sha256"] == second["sha256"]
    versions = stack.s3.list_object_versions(Bucket=BUCKET, Prefix=f"models/{exp_id}/00000001.safetensors")
    assert len(versions["Versions"]) == 1
    exp = stack.api("GET", f"/v1/experiments/{exp_id}", dev).json()
    assert exp["current_round"] == 2 and exp["model_version"] == 1


def test_rerun_after_expired_lease_writes_identical_bytes(stack, monkeypatch):
    dev, exp_id, _, keys = setup_round(stack)
    stack.deliver(*keys)
    payload = stack.invoker.calls[0]
    deps = dispatch.load_handler_module("aggregate").deps()
    from fma.services import aggregation

    # A first run that crashes after writing the model, before publishing.
    real_publish = deps.repo.publish_round
    monkeypatch.setattr(deps.repo, "publish_round", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("killed")))
    with contextlib.suppress(RuntimeError):
        dispatch.run_aggregate(payload)
    monkeypatch.setattr(deps.repo, "publish_round", real_publish)
    assert round_one(stack, dev, exp_id)["state"] == "AGGREGATING"
    assert dispatch.run_aggregate(payload)["status"] == "busy"  # lease still held
    clock = deps.clock
    monkeypatch.setattr(deps, "clock", lambda: clock() + deps.limits.lease_seconds + 1)
    result = aggregation.aggregate_round(deps, exp_id, 1)
    assert result["status"] == "published"
    versions = stack.s3.list_object_versions(Bucket=BUCKET, Prefix=f"models/{exp_id}/00000001.safetensors")
    bodies = {stack.s3.get_object(Bucket=BUCKET, Key=v["Key"], VersionId=v["VersionId"])["Body"].read()
              for v in versions["Versions"]}
    assert len(versions["Versions"]) == 2 and len(bodies) == 1
    body = round_one(stack, dev, exp_id)
    assert body["state"] == "PUBLISHED" and {u["status"] for u in body["updates"]} == {"APPLIED"}
