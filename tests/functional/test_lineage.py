"""Forks (`from` at creation), parent and children in the detail, and the chain across a fork."""

from __future__ import annotations

import hashlib
import json

import pytest
from history_helpers import finished_experiment, initial_model, run_rounds, snapshot

from fma.domain.auth import Role


@pytest.fixture
def parent(stack):
    dev = stack.token(Role.DEVELOPER, "dev-1")
    return stack, dev, finished_experiment(stack, dev, rounds=3)


def fork(stack, token, parent_id, n, **body):
    payload = {"name": "fork", "rounds": {"min_updates": 2, "total_rounds": 2}, "from": {"experiment_id": parent_id,
                                                                                     "round": n}}
    return stack.api("POST", "/v1/experiments", token, json_body={**payload, **body})


def test_fork_starts_running_with_the_parent_round_as_version_zero(parent):
    stack, dev, parent_id = parent
    # When a developer forks round 2 of its finished experiment
    res = fork(stack, dev, parent_id, 2)
    assert res.status == 201, res.body
    body = res.json()
    child = body["experiment"]
    # Then the fork runs at once, with the parent's model spec and round 2's model as version 0
    assert body["upload"] is None
    assert (child["status"], child["current_round"], child["model_version"]) == ("RUNNING", 1, 0)
    assert child["parent"] == {"experiment_id": parent_id, "round": 2} and child["children"] == []
    parent_bytes = stack.get_object(f"models/{parent_id}/00000002.safetensors")
    assert stack.get_object(f"models/{child['id']}/00000000.safetensors") == parent_bytes
    model0 = stack.api("GET", f"/v1/experiments/{child['id']}/models/0", dev).json()
    assert model0["sha256"] == hashlib.sha256(parent_bytes).hexdigest() == child["model_sha256"]
    assert stack.experiment(dev, child["id"])["model_spec"] == stack.experiment(dev, parent_id)["model_spec"]
    # And the parent lists it as a child; a root has no parent
    detail = stack.experiment(dev, parent_id)
    assert detail["children"] == [{"experiment_id": child["id"], "round": 2}] and detail["parent"] is None
    # And the copy's object-created event changes nothing
    assert stack.deliver(f"models/{child['id']}/00000000.safetensors") is not None
    assert stack.experiment(dev, child["id"])["status"] == "RUNNING"


def test_fork_trains_and_its_chain_starts_at_the_parent_round(parent):
    stack, dev, parent_id = parent
    child = fork(stack, dev, parent_id, 2).json()["experiment"]
    run_rounds(stack, child["id"], stack.enroll(dev, child["id"], 2), 1, 2, seed=5)
    assert stack.experiment(dev, child["id"])["status"] == "COMPLETED"
    manifest = json.loads(stack.get_object(f"models/{child['id']}/00000001.manifest.json"))
    parent_manifest = stack.get_object(f"models/{parent_id}/00000002.manifest.json")
    assert manifest["genesis"]["parent"] == {
        "experiment_id": parent_id, "round": 2, "model_sha256": child["model_sha256"],
        "manifest_sha256": hashlib.sha256(parent_manifest).hexdigest()}
    assert manifest["global_model"]["sha256"] == child["model_sha256"]


def test_fork_of_the_initial_model_and_a_fork_of_a_fork(parent):
    stack, dev, parent_id = parent
    first = fork(stack, dev, parent_id, 0).json()["experiment"]
    assert first["model_sha256"] == stack.experiment(dev, parent_id)["initial_sha256"]
    admin = stack.token(Role.ADMIN)
    second = fork(stack, admin, first["id"], 0)
    assert second.status == 201, second.body
    assert stack.experiment(dev, first["id"])["children"] == [{"experiment_id": second.json()["experiment"]["id"],
                                                              "round": 0}]


BAD = [
    # (id, who, from value, status, code)
    ("from-not-object", "dev", "abc", 400, "INVALID_BODY"),
    ("from-missing-round", "dev", {"experiment_id": "{parent}"}, 400, "MISSING_FIELD"),
    ("from-unknown-field", "dev", {"experiment_id": "{parent}", "round": 1, "version": 1}, 400, "UNKNOWN_FIELD"),
    ("from-round-negative", "dev", {"experiment_id": "{parent}", "round": -1}, 400, "INVALID_FROM"),
    ("from-round-bool", "dev", {"experiment_id": "{parent}", "round": True}, 400, "INVALID_FROM"),
    ("from-id-number", "dev", {"experiment_id": 7, "round": 1}, 400, "INVALID_FROM"),
    ("from-open-round", "dev", {"experiment_id": "{running}", "round": 2}, 409, "ROUND_NOT_PUBLISHED"),
    ("from-missing-id", "dev", {"round": 1}, 400, "MISSING_FIELD"),
    ("from-future-round", "dev", {"experiment_id": "{parent}", "round": 9}, 409, "ROUND_NOT_PUBLISHED"),
    ("from-pending-model", "dev", {"experiment_id": "{pending}", "round": 0}, 409, "ROUND_NOT_PUBLISHED"),
    ("from-unknown-experiment", "dev", {"experiment_id": "feedfeedfeedfeed", "round": 1}, 404, "PARENT_NOT_FOUND"),
    ("from-others-experiment", "other", {"experiment_id": "{parent}", "round": 1}, 404, "PARENT_NOT_FOUND"),
    ("analyst-forks", "analyst", {"experiment_id": "{parent}", "round": 1}, 403, "FORBIDDEN_ROLE"),
]


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_fork_is_refused_and_changes_nothing(stack, case):
    dev = stack.token(Role.DEVELOPER, "dev-1")
    parent_id = finished_experiment(stack, dev, rounds=1, clients=1)
    running = stack.create_experiment(dev, initial_model(), rounds={"min_updates": 1, "total_rounds": 3})
    run_rounds(stack, running, stack.enroll(dev, running, 1), 1, 1)
    pending = stack.api("POST", "/v1/experiments", dev, json_body={"name": "p"}).json()["experiment"]["id"]
    tokens = {"dev": dev, "other": stack.token(Role.DEVELOPER, "dev-2"), "analyst": stack.token(Role.ANALYST)}
    _, who, source, status, code = case
    source = json.loads(json.dumps(source).replace("{parent}", parent_id).replace("{running}", running)
                        .replace("{pending}", pending))
    before = snapshot(stack)
    res = stack.api("POST", "/v1/experiments", tokens[who], json_body={"name": "f", "from": source})
    assert res.status == status, res.body
    assert res.json()["error"]["code"] == code
    assert snapshot(stack) == before
