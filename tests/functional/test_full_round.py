"""A full federated round through the real handlers under moto."""

from __future__ import annotations

import numpy as np
from harness import update_bytes

from fma.domain.auth import Role
from fma.domain.codec import decode


def initial_model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"dense/kernel": rng.normal(size=(4, 3)).astype(np.float32),
            "dense/bias": np.zeros(3, dtype=np.float32)}


def test_three_clients_seal_aggregate_and_open_round_two(stack):
    # Given an experiment with quota 3 and three registered clients
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model())
    clients = stack.enroll(dev, exp_id, 3)
    rng = np.random.default_rng(1)
    sent = {}
    # When each uploads an update for round 1
    for i, (client_id, token) in enumerate(clients):
        tensors = {k: (v + rng.normal(size=v.shape)).astype(np.float32) for k, v in initial_model().items()}
        sent[client_id] = (tensors, 10 * (i + 1))
        res = stack.submit(exp_id, 1, token, update_bytes(tensors, 10 * (i + 1), 1, {"loss": float(i)}))
        assert res.status == 202, res.body
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
        sealed_now = len(stack.invoker.calls) == 1
        assert sealed_now == (i == 2), "only the third upload seals the round"
    # Then the aggregate publishes the weighted mean
    [result] = stack.run_aggregations()
    assert result["status"] == "published"
    model, meta = decode(stack.get_object(f"models/{exp_id}/00000001.safetensors"))
    total = sum(w for _, w in sent.values())
    for name in model:
        expected = sum(t[name].astype(np.float64) * w for t, w in sent.values()) / total
        np.testing.assert_allclose(model[name], expected, rtol=1e-6, atol=1e-6)
    assert meta["fma.round"] == "1"
    # And round 2 is open and clients see it
    info = stack.api("GET", f"/v1/experiments/{exp_id}/model", clients[0][1]).json()
    assert info["round"] == 2 and info["version"] == 1
    rounds = stack.api("GET", f"/v1/experiments/{exp_id}/rounds", dev).json()["rounds"]
    assert [r["state"] for r in rounds] == ["PUBLISHED", "OPEN"]
    assert rounds[0]["accepted"] == 3
    assert {u["status"] for u in rounds[0]["updates"]} == {"APPLIED"}
    assert rounds[0]["metrics"]["loss"] == (0 * 10 + 1 * 20 + 2 * 30) / 60


def test_initial_model_stays_downloadable_with_its_sha256_after_round_one(stack):
    import hashlib

    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model(), rounds={"min_updates": 1, "total_rounds": 2})
    [(client_id, token)] = stack.enroll(dev, exp_id, 1)
    stack.submit(exp_id, 1, token, update_bytes(initial_model(), 3, 1))
    stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    stack.run_aggregations()
    info = stack.api("GET", f"/v1/experiments/{exp_id}/models/0", dev).json()
    initial = stack.get_object(f"models/{exp_id}/00000000.safetensors")
    assert info["sha256"] == hashlib.sha256(initial).hexdigest() and info["size"] == len(initial)


def test_manifest_describes_inputs_strategy_output_and_timings(stack):
    import hashlib
    import json

    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model(), rounds={"min_updates": 2, "total_rounds": 2},
                                     strategy={"name": "fedavgm", "params": {"server_momentum": 0.5}})
    clients = stack.enroll(dev, exp_id, 2)
    for i, (client_id, token) in enumerate(clients):
        stack.submit(exp_id, 1, token, update_bytes(initial_model(), 2 + i, 1))
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    stack.run_aggregations()
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    model = stack.get_object(f"models/{exp_id}/00000001.safetensors")
    assert manifest["output"]["sha256"] == hashlib.sha256(model).hexdigest()
    assert manifest["strategy"]["name"] == "fedavgm" and manifest["strategy"]["params"]["server_momentum"] == 0.5
    assert sorted(i["client_id"] for i in manifest["inputs"]) == sorted(c for c, _ in clients)
    assert all(len(i["sha256"]) == 64 for i in manifest["inputs"])
    assert abs(sum(i["weight"] for i in manifest["inputs"]) - 1.0) < 1e-9
    assert manifest["info"]["bytes_read"] > 0 and set(manifest["info"]["timings"]) >= {"fetch", "compute"}
    # FedAvgM keeps its momentum as state for the next round
    assert stack.s3.head_object(Bucket="fma-test-models", Key=f"state/{exp_id}/00000001.safetensors")


def test_update_overwritten_after_acceptance_does_not_reach_the_model(stack):
    from fma.domain.codec import decode

    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model(), rounds={"min_updates": 2, "total_rounds": 1})
    clients = stack.enroll(dev, exp_id, 2)
    good = {k: v + 1 for k, v in initial_model().items()}
    for _client_id, token in clients:
        stack.submit(exp_id, 1, token, update_bytes(good, 1, 1))
    stack.deliver(f"updates/{exp_id}/00000001/{clients[0][0]}.safetensors")
    # client 0 re-posts garbage of the same shape straight to S3 (e.g. reusing its presigned POST)
    evil = {k: v * 0 + 1e6 for k, v in good.items()}
    stack.put_object(f"updates/{exp_id}/00000001/{clients[0][0]}.safetensors", update_bytes(evil, 1, 1))
    stack.deliver(f"updates/{exp_id}/00000001/{clients[1][0]}.safetensors")
    stack.run_aggregations()
    model, _ = decode(stack.get_object(f"models/{exp_id}/00000001.safetensors"))
    for name, arr in model.items():
        np.testing.assert_allclose(arr, good[name], rtol=1e-6)
