"""What the round API says when things go wrong: refused-after-seal uploads counted as late,
uploads refused during a pause, what sealed a round, aggregation attempts, age, last error and
the stuck flag, and round 0 (the initial model's federated evaluation)."""

from __future__ import annotations

import time

import numpy as np
import pytest
from harness import update_bytes

from fma.domain.auth import Role
from fma.local import dispatch

REQ = {"size": 100, "sha256": "a" * 64}  # an upload request (size and sha256 are required)


def model() -> dict[str, np.ndarray]:
    return {"w": np.ones(4, np.float32)}


def start(stack, clients: int = 3, **rounds):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, model(), rounds={"min_updates": 2, "total_rounds": 3, **rounds})
    return dev, exp_id, stack.enroll(dev, exp_id, clients)


def upload(stack, exp_id, client, n=1):
    client_id, token = client
    res = stack.submit(exp_id, n, token, update_bytes(model(), 5, n, {"loss": 0.5}))
    assert res.status == 202, res.body
    stack.deliver(f"updates/{exp_id}/{n:08d}/{client_id}.safetensors")


def code(res) -> str:
    return res.json()["error"]["code"]


def entry(rnd: dict, client_id: str) -> dict | None:
    return next((u for u in rnd["updates"] if u["client_id"] == client_id), None)


def test_upload_refused_after_the_seal_counts_once_as_late(stack):
    # Given round 1 sealed by two of three clients
    dev, exp_id, clients = start(stack)
    upload(stack, exp_id, clients[0])
    upload(stack, exp_id, clients[1])
    assert stack.round(dev, exp_id, 1)["state"] == "SEALED"
    slow_id, slow = clients[2]

    # When the third client uploads (PUT) and asks for an upload (POST) after the seal
    res = stack.submit(exp_id, 1, slow, update_bytes(model(), 5, 1))
    assert res.status == 409 and code(res) == "ROUND_CLOSED"
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", slow, json_body=REQ)
    assert res.status == 409 and code(res) == "ROUND_CLOSED"

    # Then the round counts it late once, and lists it as LATE with the reason
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["late"] == 1 and rnd["accepted"] == 2
    late = entry(rnd, slow_id)
    assert late["status"] == "LATE" and late["reason"].startswith("ROUND_CLOSED")
    assert entry(stack.round(slow, exp_id, 1), slow_id)["status"] == "LATE"  # the client sees it too

    # And once published, a refused retry still counts nothing twice; an accepted client's retry is not late
    stack.run_aggregations()
    assert stack.round(dev, exp_id, 1)["state"] == "PUBLISHED"
    assert code(stack.submit(exp_id, 1, slow, update_bytes(model(), 5, 1))) == "ROUND_CLOSED"
    assert code(stack.submit(exp_id, 1, clients[0][1], update_bytes(model(), 5, 1))) == "ROUND_CLOSED"
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["late"] == 1 and entry(rnd, clients[0][0])["status"] == "APPLIED"


def test_malformed_upload_request_after_the_seal_is_400_and_changes_nothing(stack):
    _dev, exp_id, clients = start(stack)
    upload(stack, exp_id, clients[0])
    upload(stack, exp_id, clients[1])
    before = stack.snapshot()
    for body in ({"size": -1}, {"size": 10, "sha256": "XYZ"}, {"bogus": 1}):
        res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", clients[2][1], json_body=body)
        assert res.status == 400, res.body
    assert stack.snapshot() == before


def test_late_update_through_ingest_and_through_the_api_are_counted_alike(stack):
    dev, exp_id, clients = start(stack, clients=4)
    in_flight_id, in_flight = clients[2]
    assert stack.submit(exp_id, 1, in_flight, update_bytes(model(), 5, 1)).status == 202  # event still pending
    upload(stack, exp_id, clients[0])
    upload(stack, exp_id, clients[1])
    stack.deliver(f"updates/{exp_id}/00000001/{in_flight_id}.safetensors")  # arrives after the seal
    assert code(stack.submit(exp_id, 1, clients[3][1], update_bytes(model(), 5, 1))) == "ROUND_CLOSED"
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["late"] == 2
    assert {u["client_id"] for u in rnd["updates"] if u["status"] == "LATE"} == {in_flight_id, clients[3][0]}


def test_uploads_refused_during_a_pause_are_recorded_per_client(stack):
    # Given a paused experiment
    dev, exp_id, clients = start(stack)
    (c0, t0), (c1, t1), _ = clients
    assert stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "PAUSED"}).status == 200

    # When one client's work is refused twice, and another's once
    for token in (t0, t0, t1):
        res = stack.submit(exp_id, 1, token, update_bytes(model(), 5, 1))
        assert res.status == 409 and code(res) == "EXPERIMENT_NOT_RUNNING"
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", t1, json_body=REQ)
    assert code(res) == "EXPERIMENT_NOT_RUNNING"

    # Then the round shows both clients, with how often each was refused and why
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["refused_paused"] == 2 and rnd["accepted"] == 0 and rnd["late"] == 0
    refused = {f["client_id"]: f for f in rnd["refused"]}
    assert refused[c0]["count"] == 2 and refused[c1]["count"] == 2
    assert refused[c0]["code"] == "EXPERIMENT_NOT_RUNNING" and "PAUSED" in refused[c0]["reason"]
    assert refused[c0]["first_at"] <= refused[c0]["last_at"]
    assert [f["client_id"] for f in stack.round(t0, exp_id, 1)["refused"]] == [c0]  # a client sees its own

    # And after resuming, the same clients' uploads are accepted as usual
    assert stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "RUNNING"}).status == 200
    upload(stack, exp_id, (c0, t0))
    upload(stack, exp_id, (c1, t1))
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "SEALED" and rnd["sealed_by"] == "quota" and rnd["refused_paused"] == 2


def test_deadline_seal_is_marked_as_such(stack):
    dev, exp_id, clients = start(stack, deadline_seconds=60, min_updates_at_deadline=1)
    assert stack.round(dev, exp_id, 1)["sealed_by"] is None
    upload(stack, exp_id, clients[0])
    assert stack.sweep(advance=61)["sealed"] == [f"{exp_id}/1"]
    stack.run_aggregations()
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "PUBLISHED" and rnd["sealed_by"] == "deadline"
    upload(stack, exp_id, clients[0], n=2)
    upload(stack, exp_id, clients[1], n=2)
    assert stack.round(dev, exp_id, 2)["sealed_by"] == "quota"


def set_api_clock(advance: float) -> None:
    """Run the API function's reads as if `advance` seconds had passed."""
    import importlib

    dispatch.load_handler_module("api")
    importlib.import_module("api.deps").deps().clock = lambda: time.time() + advance


@pytest.fixture
def api_clock():
    yield set_api_clock
    set_api_clock(0)


def test_failed_aggregation_shows_attempts_error_age_and_is_flagged(stack, monkeypatch):
    # Given a sealed round whose aggregation raises
    dev, exp_id, clients = start(stack)
    upload(stack, exp_id, clients[0])
    upload(stack, exp_id, clients[1])
    sealed = stack.round(dev, exp_id, 1)
    assert sealed["stuck"] is False and sealed["age_seconds"] >= 0 and sealed["attempts"] == 0
    payload = stack.invoker.calls.pop()
    agg = dispatch.load_handler_module("aggregate").deps()
    monkeypatch.setattr(agg.repo, "publish_round",
                        lambda *a, **k: (_ for _ in ()).throw(RuntimeError("throttled\n  by DynamoDB")))
    with pytest.raises(RuntimeError):
        dispatch.run_aggregate(payload)

    # Then the round says so: attempt, start, lease, one-line error, and it is stuck
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "AGGREGATING" and rnd["attempts"] == 1
    assert rnd["last_error"] == "attempt 1: RuntimeError: throttled by DynamoDB"
    assert rnd["aggregation_started_at"] and rnd["lease_expires_at"] > rnd["aggregation_started_at"]
    assert rnd["stuck"] is True and rnd["expected_seconds"] == 900

    # And the experiments list marks the experiment instead of a plain RUNNING
    [listed] = stack.api("GET", "/v1/experiments", dev).json()["experiments"]
    assert listed["status"] == "RUNNING" and listed["current_round_state"] == "AGGREGATING"
    attention = listed["attention"]
    assert attention["code"] == "ROUND_STUCK" and attention["round"] == 1 and attention["attempts"] == 1
    assert attention["last_error"] == rnd["last_error"]


def test_attempt_killed_without_an_error_is_recorded_when_its_lease_expires(stack, monkeypatch):
    dev, exp_id, clients = start(stack)
    upload(stack, exp_id, clients[0])
    upload(stack, exp_id, clients[1])
    payload = stack.invoker.calls.pop()
    agg = dispatch.load_handler_module("aggregate").deps()
    monkeypatch.setattr(agg.repo, "publish_round", lambda *a, **k: (_ for _ in ()).throw(SystemExit("killed")))
    with pytest.raises(SystemExit):
        dispatch.run_aggregate(payload)
    assert stack.round(dev, exp_id, 1)["last_error"] is None
    assert stack.sweep(advance=901)["reinvoked"] == [f"{exp_id}/1"]
    error = stack.round(dev, exp_id, 1)["last_error"]
    assert error.startswith("attempt 1: LEASE_EXPIRED")


def test_round_waiting_longer_than_a_lease_is_stuck(stack, api_clock):
    dev, exp_id, clients = start(stack)
    upload(stack, exp_id, clients[0])
    upload(stack, exp_id, clients[1])
    stack.invoker.calls.clear()  # the invoke was lost: nobody aggregates
    assert stack.api("GET", "/v1/experiments", dev).json()["experiments"][0]["attention"] is None
    api_clock(901)
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "SEALED" and rnd["stuck"] is True and rnd["age_seconds"] > 900
    assert rnd["last_error"] is None
    assert stack.api("GET", "/v1/experiments", dev).json()["experiments"][0]["attention"]["state"] == "SEALED"


def test_published_round_is_neither_aged_nor_stuck(stack):
    dev, exp_id, clients = start(stack)
    upload(stack, exp_id, clients[0])
    upload(stack, exp_id, clients[1])
    stack.run_aggregations()
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["state"] == "PUBLISHED" and rnd["attempts"] == 1 and rnd["last_error"] is None
    assert rnd["age_seconds"] is None and rnd["stuck"] is False and rnd["lease_expires_at"] is None


def test_round_zero_is_the_initial_models_federated_evaluation(stack):
    dev = stack.token(Role.DEVELOPER)
    res = stack.api("POST", "/v1/experiments", dev, json_body={"name": "pending"})
    pending = res.json()["experiment"]["id"]
    res = stack.api("GET", f"/v1/experiments/{pending}/rounds/0", dev)
    assert res.status == 404 and code(res) == "ROUND_NOT_FOUND"

    dev, exp_id, clients = start(stack)
    for (_, token), (examples, acc) in zip(clients, ((10, 0.2), (30, 0.6)), strict=False):
        res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/0/evaluations", token,
                        json_body={"num_examples": examples, "metrics": {"accuracy": acc}})
        assert res.status == 201, res.body
    zero = stack.round(dev, exp_id, 0)
    assert zero["round"] == 0 and zero["state"] == "PUBLISHED" and zero["evaluations"] == 2
    assert zero["evaluation_metrics"]["accuracy"] == pytest.approx(0.5)
    assert zero["model_sha256"] == stack.experiment(dev, exp_id)["initial_sha256"]
    assert [(e["client_id"], e["num_examples"]) for e in zero["client_evaluations"]] == [
        (clients[0][0], 10), (clients[1][0], 30)]
    mine = stack.round(clients[0][1], exp_id, 0)["client_evaluations"]
    assert [e["client_id"] for e in mine] == [clients[0][0]]
