"""Pause and stop: a paused experiment accepts and seals nothing; a stopped one only reads."""

from __future__ import annotations

import numpy as np
from harness import update_bytes

from fma.domain.auth import Role


def model() -> dict[str, np.ndarray]:
    return {"w": np.ones(4, np.float32)}


def start(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, model(), rounds={"min_updates": 2, "total_rounds": 3})
    return dev, exp_id, stack.enroll(dev, exp_id, 3)


def patch(stack, dev, exp_id, status):
    return stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": status})


def test_paused_experiment_accepts_and_seals_nothing_then_resumes_the_open_round(stack):
    dev, exp_id, clients = start(stack)
    (c0, t0), (c1, t1), (_c2, t2) = clients
    assert stack.submit(exp_id, 1, t0, update_bytes(model(), 1, 1)).status == 202
    stack.deliver(f"updates/{exp_id}/00000001/{c0}.safetensors")
    assert stack.submit(exp_id, 1, t1, update_bytes(model(), 1, 1)).status == 202  # uploaded, event pending
    assert patch(stack, dev, exp_id, "PAUSED").json()["status"] == "PAUSED"
    # the pending upload's event arrives while paused: deferred, not counted, nothing sealed
    stack.deliver(f"updates/{exp_id}/00000001/{c1}.safetensors")
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "OPEN" and rnd["accepted"] == 1 and stack.invoker.calls == []
    res = stack.submit(exp_id, 1, t2, update_bytes(model(), 1, 1))
    assert res.status == 409 and res.json()["error"]["code"] == "EXPERIMENT_NOT_RUNNING"
    info = stack.api("GET", f"/v1/experiments/{exp_id}/model", t2).json()
    assert info["status"] == "PAUSED" and info["round"] == 1
    # resume: the same round continues; the sweeper picks up the deferred upload
    assert patch(stack, dev, exp_id, "RUNNING").json()["status"] == "RUNNING"
    assert stack.experiment(dev, exp_id)["current_round"] == 1
    assert stack.sweep(advance=301)["reconciled"] == [f"{exp_id}/1/{c1}:accepted"]
    assert stack.round(dev, exp_id, 1)["state"] == "SEALED"
    assert stack.run_aggregations()[0]["status"] == "published"


def test_stopped_experiment_refuses_everything_but_reads(stack):
    dev, exp_id, clients = start(stack)
    (_c0, t0), _, _ = clients
    assert patch(stack, dev, exp_id, "STOPPED").json()["status"] == "STOPPED"
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "FAILED" and rnd["reason"].startswith("EXPERIMENT_STOPPED")
    assert stack.submit(exp_id, 1, t0, update_bytes(model(), 1, 1)).status == 410
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", t0,
                    json_body={"size": 10, "sha256": "0" * 64})
    assert res.status == 410
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/0/evaluations", t0,
                    json_body={"num_examples": 1, "metrics": {"accuracy": 0.5}})
    assert res.status == 410
    assert stack.api("POST", f"/v1/experiments/{exp_id}/enrollment-tokens", dev, json_body={}).status == 409
    assert patch(stack, dev, exp_id, "RUNNING").status == 409
    assert patch(stack, dev, exp_id, "PAUSED").status == 409
    # reads still work
    assert stack.api("GET", f"/v1/experiments/{exp_id}", dev).status == 200
    assert stack.api("GET", f"/v1/experiments/{exp_id}/rounds", dev).status == 200
    info = stack.api("GET", f"/v1/experiments/{exp_id}/model", t0).json()
    assert info["round"] is None and info["status"] == "STOPPED"
    assert stack.api("GET", f"/v1/experiments/{exp_id}/models/0", dev).status == 200


def test_invalid_status_changes_are_rejected(stack):
    dev, exp_id, _ = start(stack)
    assert patch(stack, dev, exp_id, "COMPLETED").status == 400
    assert patch(stack, dev, exp_id, "RUNNING").json()["status"] == "RUNNING"  # no-op
    res = stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "PAUSED", "name": "x"})
    assert res.status == 400 and res.json()["error"]["code"] == "UNKNOWN_FIELD"
