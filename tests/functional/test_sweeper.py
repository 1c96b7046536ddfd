"""The sweeper: deadline policies, lost invocations, expired leases, retries, lost S3 events."""

from __future__ import annotations

import numpy as np
import pytest
from harness import update_bytes

from fma.domain.auth import Role
from fma.local import dispatch


def model() -> dict[str, np.ndarray]:
    return {"w": np.ones((2, 2), np.float32)}


def start(stack, **rounds):
    dev = stack.token(Role.DEVELOPER)
    policy = {"min_updates": 3, "total_rounds": 2, **rounds}
    exp_id = stack.create_experiment(dev, model(), rounds=policy)
    return dev, exp_id, stack.enroll(dev, exp_id, 3)


def upload(stack, exp_id, client, n=1, deliver=True, scale=1.0):
    client_id, token = client
    res = stack.submit(exp_id, n, token, update_bytes({"w": model()["w"] * scale}, 2, n))
    assert res.status == 202, res.body
    if deliver:
        stack.deliver(f"updates/{exp_id}/{n:08d}/{client_id}.safetensors")


def test_deadline_aggregates_what_arrived(stack):
    dev, exp_id, clients = start(stack, deadline_seconds=60, min_updates_at_deadline=1)
    upload(stack, exp_id, clients[0], scale=3.0)
    assert stack.sweep(advance=30)["sealed"] == []
    report = stack.sweep(advance=61)
    assert report["sealed"] == [f"{exp_id}/1"]
    [result] = stack.run_aggregations()
    assert result["status"] == "published"
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "PUBLISHED" and rnd["accepted"] == 1
    assert stack.round(dev, exp_id, 2)["state"] == "OPEN"


def test_deadline_extends_when_too_few_arrived(stack):
    dev, exp_id, _ = start(stack, deadline_seconds=60, min_updates_at_deadline=2, on_deadline="extend")
    before = stack.round(dev, exp_id, 1)["deadline"]
    assert stack.sweep(advance=61)["extended"] == [f"{exp_id}/1"]
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "OPEN" and rnd["deadline"] > before
    assert stack.invoker.calls == []


def test_deadline_fails_round_and_experiment_when_policy_is_fail(stack):
    dev, exp_id, clients = start(stack, deadline_seconds=60, min_updates_at_deadline=2, on_deadline="fail")
    upload(stack, exp_id, clients[0])
    assert stack.sweep(advance=61)["failed"] == [f"{exp_id}/1"]
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "FAILED" and rnd["reason"].startswith("DEADLINE")
    assert stack.experiment(dev, exp_id)["status"] == "FAILED"


def test_lost_invocation_after_seal_is_reinvoked(stack):
    _dev, exp_id, clients = start(stack)
    for c in clients:
        upload(stack, exp_id, c)
    stack.invoker.calls.clear()  # the async invoke was lost
    assert stack.sweep(advance=10)["reinvoked"] == []
    assert stack.sweep(advance=901)["reinvoked"] == [f"{exp_id}/1"]
    assert stack.run_aggregations()[0]["status"] == "published"


def test_expired_lease_is_reclaimed_and_retries_end_in_failed(stack, monkeypatch):
    dev, exp_id, clients = start(stack)
    for c in clients:
        upload(stack, exp_id, c)
    payload = stack.invoker.calls.pop()
    deps = dispatch.load_handler_module("aggregate").deps()
    monkeypatch.setattr(deps.repo, "publish_round", lambda *a, **k: (_ for _ in ()).throw(RuntimeError("timeout")))
    for attempt in range(1, 4):
        with pytest.raises(RuntimeError):
            dispatch.run_aggregate(payload)
        assert stack.round(dev, exp_id, 1)["attempts"] == attempt
        report = stack.sweep(advance=901 * attempt)
        if attempt < 3:
            assert report["reinvoked"] == [f"{exp_id}/1"]
            payload = stack.invoker.calls.pop()
            deps.clock = lambda a=attempt: __import__("time").time() + 901 * a + 1
    assert report["failed"] == [f"{exp_id}/1"]
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "FAILED" and rnd["reason"].startswith("AGGREGATION_FAILED")
    assert stack.experiment(dev, exp_id)["status"] == "FAILED"


def test_dropped_s3_event_is_reconciled(stack):
    dev, exp_id, clients = start(stack)
    upload(stack, exp_id, clients[0])
    upload(stack, exp_id, clients[1])
    upload(stack, exp_id, clients[2], deliver=False)  # its S3 event never arrives
    assert stack.round(dev, exp_id, 1)["accepted"] == 2
    assert stack.sweep(advance=60)["reconciled"] == []  # still within the grace period
    report = stack.sweep(advance=301)
    assert report["reconciled"] == [f"{exp_id}/1/{clients[2][0]}:accepted"]
    assert stack.round(dev, exp_id, 1)["state"] == "SEALED"
    assert stack.run_aggregations()[0]["status"] == "published"
    assert stack.sweep(advance=301)["reconciled"] == []


def test_upload_never_made_is_abandoned_after_a_day(stack):
    _dev, exp_id, clients = start(stack)
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", clients[0][1],
                    json_body={"size": 100, "sha256": "0" * 64})
    assert res.status == 201
    assert stack.sweep(advance=301)["reconciled"] == []
    stack.sweep(advance=90_000)
    from fma.adapters.dynamo_models import UpdateItem, update_sk
    from fma.adapters.dynamo_shards import update_pk

    item = UpdateItem.get(update_pk(exp_id, clients[0][0]), update_sk(1, clients[0][0]))
    assert item.status == "UPLOADING" and item.due_pk is None


def test_last_round_completes_experiment_in_publish(stack):
    dev, exp_id, clients = start(stack, total_rounds=1)
    for c in clients:
        upload(stack, exp_id, c)
    stack.run_aggregations()
    exp = stack.experiment(dev, exp_id)
    assert exp["status"] == "COMPLETED" and exp["model_version"] == 1
    info = stack.api("GET", f"/v1/experiments/{exp_id}/model", clients[0][1]).json()
    assert info["round"] is None and info["status"] == "COMPLETED"


def test_failed_round_emits_the_metric_the_alarm_watches(stack, capsys):
    _dev, _exp_id, _clients = start(stack, deadline_seconds=60, min_updates_at_deadline=2, on_deadline="fail")
    capsys.readouterr()
    stack.sweep(advance=61)
    out = capsys.readouterr().out
    assert '"RoundsFailed":[1.0]' in out.replace(" ", "")
