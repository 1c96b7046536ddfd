"""Issue 15 through HTTP on the aws connector (moto): creating an async-mode experiment (invalid
combinations answer 400 and create nothing), buffers, staleness, STALE, exactly-once, pause/stop."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
from harness import update_bytes
from hostile import (
    bucket_objects,
    changed,
    model,
    submit_and_deliver,
    table_items,
    update_item_key,
    update_key,
    world,
)

from fma.domain.auth import Role
from fma.domain.codec import decode

ASYNC = {"mode": "async", "buffer_size": 3, "max_staleness": 2, "total_rounds": 4}


def test_async_experiment_is_created_and_returns_its_full_policy(stack):
    dev = stack.token(Role.DEVELOPER)
    rounds = {**ASYNC, "max_wait_seconds": 60, "min_buffer": 2, "staleness": {"fn": "hinge", "a": 10, "b": 1}}
    res = stack.api("POST", "/v1/experiments", dev, json_body={"name": "a", "rounds": rounds})
    assert res.status == 201, res.body
    stored = stack.experiment(dev, res.json()["experiment"]["id"])["rounds"]
    assert stored == {**rounds, "staleness": {"fn": "hinge", "a": 10.0, "b": 1.0}, "server_learning_rate": 1.0}


INVALID = [
    ("async-field-in-sync", {"min_updates": 2, "buffer_size": 3}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("sync-field-in-async", {**ASYNC, "deadline_seconds": 60}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("no-buffer-size", {"mode": "async"}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("min-buffer-above-k", {**ASYNC, "max_wait_seconds": 5, "min_buffer": 4}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("bad-staleness", {**ASYNC, "staleness": {"fn": "hinge"}}, "fedavg", {}, "INVALID_ROUND_POLICY"),
    ("custom-params", {**ASYNC, "staleness": {"fn": "constant", "x": 1}}, "fedavg", {}, "UNKNOWN_FIELD"),
    ("dp-in-async", ASYNC, "fedavg", {"dp": {"clipping_norm": 1.0, "noise_multiplier": 1.0}}, "DP_NOT_SUPPORTED"),
    ("optimizer-with-eta", {**ASYNC, "server_learning_rate": 0.5}, "fedadam", {}, "INVALID_ROUND_POLICY"),
    ("krum-small-buffer", {**ASYNC, "buffer_size": 2}, "krum", {}, "INVALID_STRATEGY_PARAMS"),
]


@pytest.mark.parametrize("rounds, strategy, params, code", [c[1:] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_async_combinations_are_400_at_creation_and_create_nothing(stack, rounds, strategy, params, code):
    dev = stack.token(Role.DEVELOPER)
    before, objects = table_items(stack), bucket_objects(stack)
    body = {"name": "bad", "rounds": rounds, "strategy": {"name": strategy, "params": params}}
    res = stack.api("POST", "/v1/experiments", dev, json_body=body)
    assert res.status == 400, res.body
    error = res.json()["error"]
    assert error["code"] == code and error["message"] and error["details"]["field"]
    assert table_items(stack) == before and bucket_objects(stack) == objects


# -- the flow through the real handlers (moto) ------------------------------------------------

def _model(value: float) -> dict[str, np.ndarray]:
    return {k: np.full_like(v, value) for k, v in model().items()}


def async_world(stack, clients: int = 4, **rounds):
    policy = {"mode": "async", "buffer_size": 2, "max_staleness": 1, "total_rounds": 4,
              "staleness": {"fn": "polynomial", "exponent": 1.0}} | rounds
    return world(stack, clients=clients, rounds=policy)


def send(stack, exp_id, client, value: float, n: int, examples: int = 10) -> dict:
    return submit_and_deliver(stack, exp_id, client, update_bytes(_model(value), examples, n), n=n)


def published(stack, exp_id: str, v: int) -> dict[str, np.ndarray]:
    return decode(stack.get_object(f"models/{exp_id}/{v:08d}.safetensors"))[0]


def test_async_round_trip_weighs_stale_updates_rejects_too_stale_ones_and_lists_buffers(stack):
    dev, exp_id, clients = async_world(stack)
    c0, c1, c2, c3 = clients
    assert stack.api("GET", f"/v1/experiments/{exp_id}/model", c0[1]).json()["mode"] == "async"
    # version 1 from two fresh updates (base 0): plain FedAvg
    assert send(stack, exp_id, c0, 1.0, 1)["status"] == "ACCEPTED"
    assert send(stack, exp_id, c1, 3.0, 1, examples=30)["status"] == "ACCEPTED"
    assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    assert np.allclose(published(stack, exp_id, 1)["w"], (1.0 * 10 + 3.0 * 30) / 40)  # 2.5
    model = stack.api("GET", f"/v1/experiments/{exp_id}/model", c2[1]).json()
    assert (model["round"], model["version"]) == (2, 1)
    # version 2: c2 still on version 0 (staleness 1, s = 1/2), c0 on version 1
    assert send(stack, exp_id, c2, 2.0, 1)["status"] == "ACCEPTED"
    assert send(stack, exp_id, c0, 4.5, 2)["status"] == "ACCEPTED"
    assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    expected = 2.5 + (10 * 0.5 * (2.0 - 0.0) + 10 * 1.0 * (4.5 - 2.5)) / 20  # 3.0
    assert np.allclose(published(stack, exp_id, 2)["w"], expected)
    # c3 trained on version 0: two versions behind version 2 > max_staleness 1
    before, models = table_items(stack), bucket_objects(stack, "models/")
    stale = send(stack, exp_id, c3, 9.0, 1)
    assert stale["status"] == "REJECTED" and stale["reason"].startswith("STALE:"), stale
    assert "version 0" in stale["reason"] and "version 2" in stale["reason"]
    assert changed(before, table_items(stack)) == {update_item_key(exp_id, 1, c3[0]),
                                                   (f"EXP#{exp_id}", "ROUND#00000001")}
    assert bucket_objects(stack, "models/") == models
    # GET /rounds/1: the updates posted to round 1 and the version each one joined
    posted = {u["client_id"]: (u["status"], u["applied_in"]) for u in stack.round(dev, exp_id, 1)["updates"]}
    assert posted == {c0[0]: ("APPLIED", 1), c1[0]: ("APPLIED", 1), c2[0]: ("APPLIED", 2), c3[0]: ("REJECTED", None)}
    buffer = {(e["client_id"], e["round"]): e for e in stack.round(dev, exp_id, 2)["buffer"]}
    assert set(buffer) == {(c2[0], 1), (c0[0], 2)}
    assert (buffer[(c2[0], 1)]["base_version"], buffer[(c2[0], 1)]["staleness"]) == (0, 1)
    assert buffer[(c2[0], 1)]["staleness_weight"] == 0.5 and buffer[(c0[0], 2)]["staleness"] == 0
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000002.manifest.json"))
    assert manifest["mode"] == "async" and {i["base_version"] for i in manifest["inputs"]} == {0, 1}
    assert [b["version"] for b in manifest["base_models"]] == [0, 1]
    mine = stack.round(c2[1], exp_id, 2)["buffer"]
    assert [e["client_id"] for e in mine] == [c2[0]]  # a client sees only its own entries


def test_updates_arriving_while_a_buffer_aggregates_join_the_next_one(stack):
    dev, exp_id, clients = async_world(stack)
    send(stack, exp_id, clients[0], 1.0, 1)
    send(stack, exp_id, clients[1], 1.0, 1)  # buffer 1 sealed, not aggregated yet
    assert stack.round(dev, exp_id, 1)["state"] == "SEALED"
    late_comer = send(stack, exp_id, clients[2], 1.0, 1)
    assert (late_comer["status"], late_comer["applied_in"]) == ("ACCEPTED", 2)
    assert stack.experiment(dev, exp_id)["current_round"] == 2


def test_duplicate_and_reordered_events_count_once(stack):
    dev, exp_id, clients = async_world(stack, buffer_size=3)
    send(stack, exp_id, clients[0], 1.0, 1)
    key = update_key(exp_id, 1, clients[0][0])
    for _ in range(3):
        assert stack.deliver(key) == {"batchItemFailures": []}
    rnd = stack.round(dev, exp_id, 1)
    assert rnd["accepted"] == 1 and rnd["state"] == "OPEN" and not stack.invoker.calls


def test_versions_publish_in_order_when_a_later_buffer_seals_first(stack):
    dev, exp_id, clients = async_world(stack, clients=4)
    for c in clients:
        send(stack, exp_id, c, 2.0, 1)  # buffers 1 and 2 both sealed
    calls = list(stack.invoker.calls)
    assert [c["round"] for c in calls] == [1, 2]
    stack.invoker.calls[:] = calls[::-1]  # version 2's invoke runs first
    results = stack.run_aggregations()
    assert [r["status"] for r in results] == ["waiting", "published", "published"]
    assert stack.experiment(dev, exp_id)["model_version"] == 2


def test_crash_between_writing_and_publishing_reruns_to_the_same_bytes(stack):
    from fma.services.buffered_aggregation import build_version

    dev, exp_id, clients = async_world(stack)
    send(stack, exp_id, clients[0], 1.0, 1)
    send(stack, exp_id, clients[1], 5.0, 1, examples=7)
    deps = stack.deps
    exp = deps.repo.get_experiment(exp_id)
    assert deps.repo.acquire_lease(exp_id, 1, "crashed", deps.clock(), 60)
    first, _, _ = build_version(deps, exp, 1)  # model written, then the runner died
    stack.invoker.calls.clear()
    stack.sweep(advance=deps.limits.lease_seconds + 5)  # the lease expired: re-invoked
    assert [r["status"] for r in stack.run_aggregations(advance=deps.limits.lease_seconds + 5)] == ["published"]
    stored = stack.get_object(f"models/{exp_id}/00000001.safetensors")  # the bytes the crashed run streamed
    assert hashlib.sha256(stored).hexdigest() == first.sha256 and len(stored) == first.size
    assert stack.experiment(dev, exp_id)["model_version"] == 1


def test_max_wait_publishes_a_partial_buffer_of_min_buffer(stack):
    dev, exp_id, clients = async_world(stack, buffer_size=3, max_wait_seconds=60, min_buffer=2)
    send(stack, exp_id, clients[0], 1.0, 1)
    stack.sweep(advance=61)
    assert stack.round(dev, exp_id, 1)["state"] == "OPEN"  # one of min_buffer 2: wait another period
    send(stack, exp_id, clients[1], 3.0, 1)
    stack.sweep(advance=200)
    assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    assert np.allclose(published(stack, exp_id, 1)["w"], 2.0)


def test_pause_defers_updates_and_stop_discards_a_sealed_buffer(stack):
    dev, exp_id, clients = async_world(stack)
    send(stack, exp_id, clients[0], 1.0, 1)
    assert stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "PAUSED"}).status == 200
    res = stack.api("PUT", f"/v1/experiments/{exp_id}/rounds/1/updates", clients[1][1],
                    body=update_bytes(_model(1.0), 5, 1))
    assert res.status == 409 and res.json()["error"]["code"] == "EXPERIMENT_NOT_RUNNING"
    assert stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "RUNNING"}).status == 200
    send(stack, exp_id, clients[1], 1.0, 1)  # buffer 1 sealed
    assert stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "STOPPED"}).status == 200
    models = bucket_objects(stack, "models/")
    assert [r["status"] for r in stack.run_aggregations()] == ["ended"]
    assert stack.round(dev, exp_id, 1)["state"] == "FAILED" and stack.round(dev, exp_id, 2)["state"] == "FAILED"
    assert bucket_objects(stack, "models/") == models
    assert stack.experiment(dev, exp_id)["status"] == "STOPPED"


def test_an_update_for_an_unpublished_version_is_refused(stack):
    _dev, exp_id, clients = async_world(stack)
    res = stack.submit(exp_id, 2, clients[0][1], update_bytes(_model(1.0), 5, 2))
    assert res.status == 409 and res.json()["error"]["code"] == "ROUND_NOT_OPEN"


def test_fma_verify_reruns_every_async_version_to_the_same_bytes(stack, capsys):
    import os

    from harness import BUCKET

    from fma.cli import main

    _dev, exp_id, clients = async_world(stack)
    c0, c1, c2, _ = clients
    send(stack, exp_id, c0, 1.0, 1)
    send(stack, exp_id, c1, 3.0, 1, examples=30)
    stack.run_aggregations()
    send(stack, exp_id, c2, 2.0, 1)  # stale by one version
    send(stack, exp_id, c0, 4.5, 2)  # c0 again, on version 1
    stack.run_aggregations()
    code = main(["verify", exp_id, "--bucket", BUCKET, "--table", os.environ["FMA_TABLE_NAME"], "--rerun-all"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "round 1: re-run gives the same bytes" in out and "round 2: re-run gives the same bytes" in out


def test_one_client_can_have_two_updates_in_one_buffer_and_both_count(stack, capsys):
    import os

    from harness import BUCKET

    from fma.cli import main

    dev, exp_id, clients = async_world(stack)
    c0, c1, c2, _ = clients
    send(stack, exp_id, c1, 2.0, 1)
    send(stack, exp_id, c2, 2.0, 1)  # buffer 1 sealed
    assert send(stack, exp_id, c0, 1.0, 1)["applied_in"] == 2  # on version 0, into buffer 2
    stack.run_aggregations()  # version 1 = 2.0
    assert send(stack, exp_id, c0, 3.0, 2)["applied_in"] == 2  # on version 1, into buffer 2 too
    stack.run_aggregations()
    expected = 2.0 + (10 * 0.5 * (1.0 - 0.0) + 10 * 1.0 * (3.0 - 2.0)) / 20  # 2.75
    assert np.allclose(published(stack, exp_id, 2)["w"], expected)
    buffer = stack.round(dev, exp_id, 2)["buffer"]
    assert sorted((e["client_id"], e["round"]) for e in buffer) == [(c0[0], 1), (c0[0], 2)]
    code = main(["verify", exp_id, "--bucket", BUCKET, "--table", os.environ["FMA_TABLE_NAME"], "--rerun-all"])
    assert code == 0, capsys.readouterr().out


def test_an_update_arriving_after_a_stop_is_late_not_retried(stack):
    dev, exp_id, clients = async_world(stack)
    client_id, token = clients[0]
    assert stack.submit(exp_id, 1, token, update_bytes(_model(1.0), 5, 1)).status == 202
    assert stack.api("PATCH", f"/v1/experiments/{exp_id}", dev, json_body={"status": "STOPPED"}).status == 200
    assert stack.deliver(update_key(exp_id, 1, client_id)) == {"batchItemFailures": []}
    mine = stack.round(token, exp_id, 1)["updates"][0]
    assert mine["status"] == "LATE" and mine["applied_in"] is None
