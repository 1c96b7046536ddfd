"""Fault injection: duplicated and shuffled events, a killed aggregator, racing aggregators,
an ingest batch failing midway, a dropped S3 event. Afterwards every accepted update is
APPLIED once, each round is published once, and the models equal a clean run's, bit for bit."""

from __future__ import annotations

import itertools
import random
import threading

import numpy as np
import pytest
from harness import BUCKET, update_bytes

from fma.domain.auth import Role
from fma.domain.codec import decode
from fma.local import dispatch
from fma.local.events import sqs_s3_event
from fma.services import experiments

CLIENTS, ROUNDS = 4, 3


@pytest.fixture
def deterministic_client_ids(monkeypatch):
    def reset():
        counter = itertools.count()
        monkeypatch.setattr(experiments, "new_client_id", lambda: f"c-{next(counter):04d}")
    return reset


def client_update(n: int, index: int) -> bytes:
    rng = np.random.default_rng(100 * n + index)
    tensors = {"dense/kernel": rng.normal(size=(16, 8)).astype(np.float32),
               "dense/bias": rng.normal(size=8).astype(np.float32)}
    return update_bytes(tensors, 3 + 5 * index, n, {"loss": 1.0 / (n + index)})


def start(stack, reset_ids):
    reset_ids()
    dev = stack.token(Role.DEVELOPER)
    initial = {"dense/kernel": np.zeros((16, 8), np.float32), "dense/bias": np.zeros(8, np.float32)}
    exp_id = stack.create_experiment(dev, initial, rounds={"min_updates": CLIENTS, "total_rounds": ROUNDS})
    return dev, exp_id, stack.enroll(dev, exp_id, CLIENTS)


def upload_round(stack, exp_id, clients, n) -> list[str]:
    keys = []
    for i, (client_id, token) in enumerate(clients):
        assert stack.submit(exp_id, n, token, client_update(n, i)).status == 202
        keys.append(f"updates/{exp_id}/{n:08d}/{client_id}.safetensors")
    return keys


def models(stack, exp_id) -> list[dict[str, bytes]]:
    out = []
    for n in range(1, ROUNDS + 1):
        tensors, _ = decode(stack.get_object(f"models/{exp_id}/{n:08d}.safetensors"))
        out.append({k: v.tobytes() for k, v in tensors.items()})
    return out


def clean_run(stack, reset_ids):
    _dev, exp_id, clients = start(stack, reset_ids)
    for n in range(1, ROUNDS + 1):
        stack.deliver(*upload_round(stack, exp_id, clients, n))
        assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    return models(stack, exp_id)


def deliver_shuffled(stack, keys, rng):
    """Every event 2-3 times, in random order and random batch sizes."""
    events = [k for k in keys for _ in range(rng.choice([2, 3]))]
    rng.shuffle(events)
    while events:
        size = rng.randint(1, 4)
        stack.deliver(*events[:size])
        del events[:size]


def test_faults_leave_no_trace(stack, deterministic_client_ids, monkeypatch):
    expected = clean_run(stack, deterministic_client_ids)
    rng = random.Random(42)
    dev, exp_id, clients = start(stack, deterministic_client_ids)
    agg_deps = dispatch.load_handler_module("aggregate").deps()
    published = []

    # Round 1: duplicated, shuffled events; the aggregator dies after writing the model.
    deliver_shuffled(stack, upload_round(stack, exp_id, clients, 1), rng)
    [payload] = stack.invoker.calls
    stack.invoker.calls.clear()
    real_publish = agg_deps.repo.publish_round
    monkeypatch.setattr(agg_deps.repo, "publish_round", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        dispatch.run_aggregate(payload)
    monkeypatch.setattr(agg_deps.repo, "publish_round", real_publish)
    assert stack.sweep(advance=901)["reinvoked"] == [f"{exp_id}/1"]
    published += [r["status"] for r in stack.run_aggregations(advance=901)]

    # Round 2: ingest fails midway through a batch (one record), SQS redelivers it; then two
    # aggregate runs race on the sealed round.
    keys = upload_round(stack, exp_id, clients, 2)
    ingest_deps = dispatch.load_handler_module("ingest").deps()
    real_get, failed_once = ingest_deps.store.get_range, []

    def flaky_get(key, start, end, version_id=None):  # ingest reads ranges (streaming ingest)
        if key == keys[1] and not failed_once:
            failed_once.append(key)
            raise ConnectionError("S3 read timed out")
        return real_get(key, start, end, version_id)

    monkeypatch.setattr(ingest_deps.store, "get_range", flaky_get)
    result = dispatch.run_ingest_event(sqs_s3_event(BUCKET, keys[:3]))
    assert len(result["batchItemFailures"]) == 1
    dispatch.run_ingest_event(sqs_s3_event(BUCKET, [keys[1], keys[3], keys[0]]))  # the redelivery
    [payload] = stack.invoker.calls
    stack.invoker.calls.clear()
    results: list[dict] = []
    threads = [threading.Thread(target=lambda: results.append(dispatch.run_aggregate(payload))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    published += [r["status"] for r in results]

    # Round 3: one S3 event is dropped entirely; the sweeper reconciles it.
    keys = upload_round(stack, exp_id, clients, 3)
    deliver_shuffled(stack, keys[:3], rng)
    assert stack.invoker.calls == []
    assert stack.sweep(advance=301)["reconciled"] == [f"{exp_id}/3/{clients[3][0]}:accepted"]
    published += [r["status"] for r in stack.run_aggregations()]

    assert published.count("published") == ROUNDS
    assert models(stack, exp_id) == expected
    for n in range(1, ROUNDS + 1):
        rnd = stack.round(dev, exp_id, n)
        assert rnd["state"] == "PUBLISHED" and rnd["accepted"] == CLIENTS and rnd["late"] == 0
        assert [u["status"] for u in rnd["updates"]] == ["APPLIED"] * CLIENTS
    assert stack.experiment(dev, exp_id)["status"] == "COMPLETED"
