"""Fanout aggregation through the real handlers on moto: the aggregate function's start /
reduce / fail tasks and the aggregate_piece function, driven by the local executor exactly as
the state machine drives them; the published bytes are those of the single plan."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from harness import BUCKET, update_bytes

from fma.domain.aggregation.fanout import decode_piece
from fma.domain.auth import Role
from fma.local import dispatch
from fma.local.fanout import LocalFanout
from fma.services.rerun import reproduce_round

TINY = {"plan": "fanout", "partition_updates": 2, "shard_bytes": 64 << 10}
DP = {"clipping_norm": 1.0, "noise_multiplier": 0.8}


@pytest.fixture
def keyed(stack, tmp_path, monkeypatch):
    monkeypatch.setenv("FMA_DP_SECRET_FILE", str(tmp_path / "dp-noise.key"))
    dispatch.reset_handler_caches()
    return stack


def initial_model() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {"dense/kernel": rng.normal(size=(200, 90)).astype(np.float32),
            "dense/bias": np.zeros(90, dtype=np.float32), "steps": np.zeros(1, dtype=np.int64)}


def sealed_round(stack, k: int = 7, strategy: dict | None = None, aggregation: dict | None = None):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model(), strategy=strategy or {"name": "fedavg"},
                                     rounds={"min_updates": k, "total_rounds": 2},
                                     aggregation=aggregation or TINY)
    rng = np.random.default_rng(1)
    for i, (client_id, token) in enumerate(stack.enroll(dev, exp_id, k)):
        tensors = {n: (v + rng.normal(size=v.shape) * 0.1).astype(v.dtype) for n, v in initial_model().items()}
        assert stack.submit(exp_id, 1, token, update_bytes(tensors, 10 + i, 1, {"loss": float(i)})).status == 202
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    assert stack.invoker.calls == [{"experiment_id": exp_id, "round": 1}]  # sealed: one invocation
    stack.invoker.calls.clear()
    return dev, exp_id


def run_fanout(**kwargs) -> LocalFanout:
    return LocalFanout(backoff_seconds=0.0, **kwargs)


@pytest.mark.parametrize("strategy", [
    {"name": "fedavg"}, {"name": "fedadam"}, {"name": "krum", "params": {"num_malicious": 1}},
    {"name": "fedmedian"}, {"name": "fedavg", "params": {"dp": DP}},
], ids=lambda s: s["name"] + ("-dp" if "dp" in s.get("params", {}) else ""))
def test_fanout_publishes_the_bytes_the_single_plan_computes(keyed, strategy):
    stack = keyed
    dev, exp_id = sealed_round(stack, strategy=strategy)
    pieces: list[dict] = []

    def piece(event):
        pieces.append(event)
        return dispatch.run_aggregate_piece(event)

    result = run_fanout(run_piece=piece).run(exp_id, 1)
    assert result["status"] == "published", result
    published = stack.get_object(f"models/{exp_id}/00000001.safetensors")
    # the single plan, re-run from the manifest, gives the same bytes
    again = reproduce_round(dispatch.load_handler_module("aggregate").deps(), exp_id, 1)
    assert hashlib.sha256(again).hexdigest() == hashlib.sha256(published).hexdigest() == result["sha256"]
    assert len(pieces) >= 3
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    assert manifest["info"]["plan"] == "fanout"
    assert manifest["info"]["partitioning"]["partition_updates"] == 2
    assert manifest["info"]["fanout"]["bytes_read"] > 0
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "PUBLISHED" and {u["status"] for u in rnd["updates"]} == {"APPLIED"}
    cost = rnd["cost"]
    assert rnd["plan"] == "fanout" and cost == manifest["info"]["cost"]
    assert {t["task"] for t in cost["tasks"]} == {"piece", "start+reduce", "reduce"}
    assert next(t for t in cost["tasks"] if t["task"] == "piece")["count"] == len(pieces)
    assert cost["state_transitions"] > 2 * len(pieces) and cost["usd"]["step_functions"] > 0
    assert cost["s3_bytes_read"] >= manifest["info"]["fanout"]["bytes_read"] > 0
    assert cost["usd_total"] > 0 and cost["gb_seconds"] > 0
    keys = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"partials/{exp_id}/")["Contents"]]
    assert f"partials/{exp_id}/00000001/plan.json" in keys
    assert any(k.endswith("/000000.safetensors") for k in keys)


def test_a_rerun_of_a_fanout_round_writes_the_same_bytes(stack):
    _, exp_id = sealed_round(stack)
    first = run_fanout().run(exp_id, 1)
    piece_key = f"partials/{exp_id}/00000001/pass-000/000001.safetensors"
    before = decode_piece(stack.get_object(piece_key))
    # a retried piece (the Map re-running an item) writes the same partial (its timings aside)
    dispatch.run_aggregate_piece({"experiment_id": exp_id, "round": 1, "pass": 0, "piece": 1})
    after = decode_piece(stack.get_object(piece_key))
    assert after[0].tobytes() == before[0].tobytes()
    facts = [{k: v for k, v in f.items() if k not in ("timings", "seconds")} for f in (after[1], before[1])]
    assert facts[0] == facts[1]
    # a second execution of the published round changes nothing
    assert run_fanout().run(exp_id, 1)["status"] == "already_published"
    assert hashlib.sha256(stack.get_object(f"models/{exp_id}/00000001.safetensors")).hexdigest() == first["sha256"]


def test_a_failing_child_is_retried_and_the_round_publishes_the_same_bytes(stack):
    _, exp_id = sealed_round(stack)
    failures = {"left": 2}

    def flaky(event):
        if event["piece"] == 1 and failures["left"]:
            failures["left"] -= 1
            raise OSError("connection reset by peer")
        return dispatch.run_aggregate_piece(event)

    result = run_fanout(run_piece=flaky, retries=2).run(exp_id, 1)
    assert result["status"] == "published" and failures["left"] == 0
    again = reproduce_round(dispatch.load_handler_module("aggregate").deps(), exp_id, 1)
    assert hashlib.sha256(again).hexdigest() == result["sha256"]


def test_a_child_failing_for_good_fails_the_round_with_its_reason(stack):
    dev, exp_id = sealed_round(stack)

    def broken(event):
        if event["piece"] == 2:
            raise OSError("the disk is on fire")
        return dispatch.run_aggregate_piece(event)

    result = run_fanout(run_piece=broken, retries=1).run(exp_id, 1)
    assert result["status"] == "failed"
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "FAILED"
    assert "piece 2 of pass 0" in rnd["reason"] and "the disk is on fire" in rnd["reason"]
    keys = [o["Key"] for o in stack.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"models/{exp_id}/")["Contents"]]
    assert keys == [f"models/{exp_id}/00000000.safetensors"]  # no model, no manifest


def test_the_experiment_returns_its_aggregation_and_refuses_a_bad_one(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, initial_model(), aggregation={"plan": "single", "partition_updates": 50})
    exp = stack.experiment(dev, exp_id)
    assert exp["aggregation"] == {"plan": "single", "partition_updates": 50, "shard_bytes": 64 << 20}
    before = stack.api("GET", "/v1/experiments", dev).json()
    bads = [({"plan": "many"}, "aggregation.plan"), ({"partition_updates": 0}, "aggregation.partition_updates"),
            ({"shard_bytes": "big"}, "aggregation.shard_bytes"), ({"fan": 1}, "aggregation"), ([], "aggregation")]
    for bad, field in bads:
        res = stack.api("POST", "/v1/experiments", dev, json_body={"name": "x", "aggregation": bad})
        assert res.status == 400, (bad, res.body)
        assert res.json()["error"]["details"]["field"] == field
    assert stack.api("GET", "/v1/experiments", dev).json() == before  # nothing was created


def test_the_single_plan_records_its_cost_in_the_manifest_and_the_round(stack):
    dev, exp_id = sealed_round(stack, aggregation={"plan": "single"})
    [result] = [dispatch.run_aggregate({"experiment_id": exp_id, "round": 1})]
    assert result["status"] == "published"
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["plan"] == "single" and rnd["cost"] == manifest["info"]["cost"]
    cost = rnd["cost"]
    assert [t["task"] for t in cost["tasks"]] == ["aggregate"] and cost["state_transitions"] == 0
    assert cost["s3_get"] >= 7 + 1 and cost["s3_put"] == 2  # 7 updates (+ global model); model + manifest
    assert cost["dynamodb_write_units"] >= 7 and cost["usd"]["step_functions"] == 0 and cost["usd_total"] > 0
