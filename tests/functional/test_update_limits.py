"""Issue 11, "one client owns the global model": `update_limits` on POST /v1/experiments bounds
what one client may count (TOO_MANY_EXAMPLES, NORM_TOO_LARGE, max_weight_share clipping)."""

from __future__ import annotations

import json

import numpy as np
import pytest
from harness import update_bytes
from hostile import (
    assert_rejected_changing_only_its_update,
    bucket_objects,
    model,
    submit_and_deliver,
    table_items,
    world,
)

from fma.domain.auth import Role
from fma.domain.codec import decode


def test_update_limits_have_defaults_and_are_returned_in_the_experiment(stack):
    dev = stack.token(Role.DEVELOPER)
    res = stack.api("POST", "/v1/experiments", dev, json_body={"name": "d"})
    assert res.status == 201
    default = {"max_num_examples": 1_000_000, "max_weight_share": None, "max_update_norm": None}
    assert res.json()["experiment"]["update_limits"] == default
    limits = {"max_num_examples": 500, "max_weight_share": 0.25, "max_update_norm": 3.5}
    res = stack.api("POST", "/v1/experiments", dev, json_body={"name": "l", "update_limits": limits})
    exp_id = res.json()["experiment"]["id"]
    assert res.json()["experiment"]["update_limits"] == limits
    assert stack.experiment(dev, exp_id)["update_limits"] == limits


INVALID = [
    ("not-object", 5), ("unknown-key", {"max_examples": 5}), ("share-zero", {"max_weight_share": 0}),
    ("share-above-one", {"max_weight_share": 1.5}), ("share-negative", {"max_weight_share": -0.1}),
    ("share-string", {"max_weight_share": "0.5"}), ("share-bool", {"max_weight_share": True}),
    ("norm-zero", {"max_update_norm": 0}), ("norm-negative", {"max_update_norm": -1}),
    ("norm-huge-int", {"max_update_norm": 10**400}), ("examples-zero", {"max_num_examples": 0}),
    ("examples-float", {"max_num_examples": 1.5}), ("examples-above-1e15", {"max_num_examples": 10**15 + 1}),
    ("examples-null", {"max_num_examples": None}),
]


@pytest.mark.parametrize("limits", [c[1] for c in INVALID], ids=[c[0] for c in INVALID])
def test_invalid_update_limits_are_400_and_create_nothing(stack, limits):
    dev = stack.token(Role.DEVELOPER)
    before, objects = table_items(stack), bucket_objects(stack)
    res = stack.api("POST", "/v1/experiments", dev, json_body={"name": "bad", "update_limits": limits})
    assert res.status == 400, res.body
    error = res.json()["error"]
    assert error["code"] in {"INVALID_INPUT", "UNKNOWN_FIELD", "NUMBER_OUT_OF_RANGE"}
    assert "update_limits" in error["message"]
    assert table_items(stack) == before and bucket_objects(stack) == objects


def test_update_declaring_more_than_max_num_examples_is_rejected_too_many_examples(stack):
    _dev, exp_id, clients = world(stack, clients=2, update_limits={"max_num_examples": 1000})
    assert_rejected_changing_only_its_update(stack, exp_id, clients[0], update_bytes(model(), 10**12, 1),
                                             "TOO_MANY_EXAMPLES")
    assert submit_and_deliver(stack, exp_id, clients[1], update_bytes(model(), 1000, 1))["status"] == "ACCEPTED"


def test_update_farther_than_max_update_norm_from_the_rounds_global_model_is_rejected(stack):
    dev, exp_id, clients = world(stack, clients=3, rounds={"min_updates": 2, "total_rounds": 3},
                                 update_limits={"max_update_norm": 3.0})
    threes = {k: np.full_like(v, 1.0) for k, v in model().items()}  # ||x - 0|| = 3 (9 ones)
    for client in clients[:2]:
        assert submit_and_deliver(stack, exp_id, client, update_bytes(threes, 5, 1))["status"] == "ACCEPTED"
    assert stack.run_aggregations()[0]["status"] == "published"
    # round 2 trains from the all-ones model: the norm is measured from it, not from the initial one
    near = {k: np.full_like(v, 2.0) for k, v in model().items()}  # ||x - 1|| = 3: allowed
    far = {k: np.full_like(v, 2.01) for k, v in model().items()}
    assert submit_and_deliver(stack, exp_id, clients[0], update_bytes(near, 5, 2), n=2)["status"] == "ACCEPTED"
    before, models = table_items(stack), bucket_objects(stack, "models/")
    mine = submit_and_deliver(stack, exp_id, clients[1], update_bytes(far, 5, 2), n=2)
    assert mine["status"] == "REJECTED" and mine["reason"].startswith("NORM_TOO_LARGE:"), mine
    assert bucket_objects(stack, "models/") == models
    after = table_items(stack)
    assert {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)} == {
        (f"EXP#{exp_id}", f"UPDATE#00000002#{clients[1][0]}"), (f"EXP#{exp_id}", "ROUND#00000002")}
    assert stack.round(dev, exp_id, 2)["accepted"] == 1


def test_max_weight_share_gives_900_and_100_examples_equal_weight_recorded_in_the_manifest(stack):
    _dev, exp_id, clients = world(stack, clients=2, rounds={"min_updates": 2, "total_rounds": 1},
                                  update_limits={"max_weight_share": 0.5})
    values = {clients[0][0]: (900, 1.0), clients[1][0]: (100, 3.0)}
    for client in clients:
        n, value = values[client[0]]
        data = update_bytes({k: np.full_like(v, value) for k, v in model().items()}, n, 1)
        assert submit_and_deliver(stack, exp_id, client, data)["status"] == "ACCEPTED"
    assert stack.run_aggregations()[0]["status"] == "published"
    tensors, _ = decode(stack.get_object(f"models/{exp_id}/00000001.safetensors"))
    assert all(np.allclose(t, 2.0) for t in tensors.values())  # (1 + 3) / 2, not (900 + 300) / 1000
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    by_client = {i["client_id"]: i for i in manifest["inputs"]}
    assert by_client[clients[0][0]]["num_examples"] == 900 and by_client[clients[0][0]]["counted_examples"] == 100
    assert by_client[clients[0][0]]["weight_clipped"] is True and by_client[clients[1][0]]["weight_clipped"] is False
    assert [round(i["weight"], 12) for i in manifest["inputs"]] == [0.5, 0.5]
    assert manifest["update_limits"]["max_weight_share"] == 0.5
