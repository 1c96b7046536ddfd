"""Every bad input gets a clear 4xx with the error body of DESIGN section 6, never a 500;
bad update files are REJECTED with a reason visible in the round listing."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest
from harness import update_bytes

from fma.domain.auth import Role
from fma.domain.codec import encode


def model() -> dict[str, np.ndarray]:
    return {"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32)}


@pytest.fixture
def exp(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, model(), rounds={"min_updates": 2, "total_rounds": 2})
    clients = stack.enroll(dev, exp_id, 3)
    return stack, dev, exp_id, clients


def assert_error(res, status: int, code: str | None = None) -> dict:
    assert res.status == status, (res.status, res.body)
    err = res.json()["error"]
    assert set(err) == {"code", "message", "details"} and err["message"]
    if code:
        assert err["code"] == code, err
    return err


def test_malformed_json_is_400(exp):
    stack, dev, _, _ = exp
    res = stack.api("POST", "/v1/experiments", dev, body=b"{not json", headers={"Content-Type": "application/json"})
    assert_error(res, 400, "MALFORMED_JSON")


def test_unknown_field_is_400(exp):
    stack, dev, _, _ = exp
    assert_error(stack.api("POST", "/v1/experiments", dev, json_body={"name": "x", "colour": "red"}), 400,
                 "UNKNOWN_FIELD")


def test_unknown_strategy_and_bad_policy_are_400(exp):
    stack, dev, _, _ = exp
    assert_error(stack.api("POST", "/v1/experiments", dev, json_body={"name": "x", "strategy": {"name": "nope"}}),
                 400, "UNKNOWN_STRATEGY")
    assert_error(stack.api("POST", "/v1/experiments", dev, json_body={"name": "x", "rounds": {"min_updates": 0}}),
                 400, "INVALID_INPUT")


def test_missing_token_is_401(exp):
    stack, _, exp_id, _ = exp
    assert_error(stack.api("GET", f"/v1/experiments/{exp_id}"), 401)


def test_invalid_token_is_401(exp):
    stack, _, exp_id, _ = exp
    assert_error(stack.api("GET", f"/v1/experiments/{exp_id}", "fma_not-a-real-token"), 401)


def test_expired_token_is_401(exp):
    stack, _, exp_id, _ = exp
    from fma.services.access import mint_token

    token, _ = mint_token(stack.deps, Role.ANALYST, expires_in=60)
    stack.deps.repo  # noqa: B018 - same table
    deps = stack.deps
    deps.clock = lambda: 10**12
    from fma.services.access import authenticate

    with pytest.raises(Exception, match="expired"):
        authenticate(deps, token)
    from fma.adapters.dynamo_models import TokenItem
    from fma.domain.auth import hash_token

    TokenItem(f"TOKEN#{hash_token(token)}", "TOKEN").update(actions=[TokenItem.expires_at.set(1.0)])
    assert_error(stack.api("GET", f"/v1/experiments/{exp_id}", token), 401)


def test_client_token_on_another_experiment_is_404(exp):
    stack, dev, _exp_id, clients = exp
    other = stack.create_experiment(dev, model())
    assert_error(stack.api("GET", f"/v1/experiments/{other}/model", clients[0][1]), 404, "EXPERIMENT_NOT_FOUND")
    assert_error(stack.submit(other, 1, clients[0][1], update_bytes(model(), 1)), 404, "EXPERIMENT_NOT_FOUND")


def test_update_for_future_round_is_409(exp):
    stack, _, exp_id, clients = exp
    assert_error(stack.submit(exp_id, 2, clients[0][1], update_bytes(model(), 1, 2)), 409, "ROUND_NOT_OPEN")


def test_update_for_closed_round_is_409(exp):
    stack, _, exp_id, clients = exp
    for client_id, token in clients[:2]:
        stack.submit(exp_id, 1, token, update_bytes(model(), 1, 1))
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    assert_error(stack.submit(exp_id, 1, clients[2][1], update_bytes(model(), 1, 1)), 409, "ROUND_CLOSED")


def test_second_update_from_same_client_is_409(exp):
    stack, _, exp_id, clients = exp
    client_id, token = clients[0]
    assert stack.submit(exp_id, 1, token, update_bytes(model(), 1, 1)).status == 202
    stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    assert_error(stack.submit(exp_id, 1, token, update_bytes(model(), 1, 1)), 409, "ALREADY_SUBMITTED")


def test_body_over_limit_is_413(exp):
    stack, _, exp_id, clients = exp
    big = update_bytes({"w": np.zeros((2, 3), np.float32), "b": np.zeros(3, np.float32),
                        "pad": np.zeros(6 << 20, np.uint8)}, 1)
    assert_error(stack.submit(exp_id, 1, clients[0][1], big), 413, "PAYLOAD_TOO_LARGE")


def test_upload_request_over_max_update_bytes_is_413(exp):
    stack, _, exp_id, clients = exp
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", clients[0][1],
                    json_body={"size": 10**12, "sha256": "0" * 64})
    assert_error(res, 413)


def _rejected_reason(stack, exp_id: str, client: tuple[str, str], data: bytes) -> str:
    client_id, token = client
    assert stack.submit(exp_id, 1, token, data).status == 202
    stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    rnd = stack.api("GET", f"/v1/experiments/{exp_id}/rounds/1", token).json()
    [mine] = rnd["updates"]
    assert mine["status"] == "REJECTED" and rnd["rejected"] == 1 and rnd["accepted"] == 0
    return mine["reason"]


def test_update_that_is_not_safetensors_is_rejected(exp):
    stack, _, exp_id, clients = exp
    assert _rejected_reason(stack, exp_id, clients[0], b"PK\x03\x04 a zip file, not safetensors").startswith(
        "NOT_SAFETENSORS")


def test_update_with_wrong_shape_is_rejected(exp):
    stack, _, exp_id, clients = exp
    data = update_bytes({"w": np.zeros((3, 2), np.float32), "b": np.zeros(3, np.float32)}, 1)
    assert _rejected_reason(stack, exp_id, clients[0], data).startswith("WRONG_SHAPE")


def test_update_with_wrong_dtype_is_rejected(exp):
    stack, _, exp_id, clients = exp
    data = update_bytes({"w": np.zeros((2, 3), np.float64), "b": np.zeros(3, np.float32)}, 1)
    assert _rejected_reason(stack, exp_id, clients[0], data).startswith("WRONG_DTYPE")


def test_update_with_nan_is_rejected(exp):
    stack, _, exp_id, clients = exp
    w = np.zeros((2, 3), np.float32)
    w[1, 1] = np.nan
    assert _rejected_reason(stack, exp_id, clients[0], update_bytes({"w": w, "b": np.zeros(3, np.float32)}, 1)
                            ).startswith("NON_FINITE")


def test_update_with_inf_is_rejected(exp):
    stack, _, exp_id, clients = exp
    b = np.full(3, np.inf, np.float32)
    assert _rejected_reason(stack, exp_id, clients[0], update_bytes({"w": np.zeros((2, 3), np.float32), "b": b}, 1)
                            ).startswith("NON_FINITE")


def test_update_without_num_examples_is_rejected(exp):
    stack, _, exp_id, clients = exp
    assert _rejected_reason(stack, exp_id, clients[0], update_bytes(model(), None)).startswith("MISSING_NUM_EXAMPLES")


def test_update_with_huge_header_length_is_rejected(exp):
    stack, _, exp_id, clients = exp
    data = struct.pack("<Q", 100 << 20) + b"{}"
    assert _rejected_reason(stack, exp_id, clients[0], data).startswith("HEADER_TOO_LARGE")


def test_update_with_overlapping_offsets_is_rejected(exp):
    stack, _, exp_id, clients = exp
    header = json.dumps({"w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]},
                         "b": {"dtype": "F32", "shape": [3], "data_offsets": [12, 24]},
                         "__metadata__": {"fma.num_examples": "1"}}).encode()
    data = struct.pack("<Q", len(header)) + header + bytes(24)
    assert _rejected_reason(stack, exp_id, clients[0], data).startswith("BAD_OFFSETS")


def test_rejected_update_can_be_fixed_and_resent(exp):
    stack, _, exp_id, clients = exp
    client_id, token = clients[0]
    _rejected_reason(stack, exp_id, clients[0], b"garbage")
    assert stack.submit(exp_id, 1, token, update_bytes(model(), 4, 1)).status == 202
    stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    rnd = stack.api("GET", f"/v1/experiments/{exp_id}/rounds/1", token).json()
    assert rnd["updates"][0]["status"] == "ACCEPTED" and rnd["accepted"] == 1 and rnd["rejected"] == 1


def test_client_sees_only_its_own_updates(exp):
    stack, dev, exp_id, clients = exp
    for client_id, token in clients[:2]:
        stack.submit(exp_id, 1, token, update_bytes(model(), 1, 1))
        stack.deliver(f"updates/{exp_id}/00000001/{client_id}.safetensors")
    mine = stack.api("GET", f"/v1/experiments/{exp_id}/rounds/1", clients[0][1]).json()["updates"]
    assert [u["client_id"] for u in mine] == [clients[0][0]]
    assert len(stack.api("GET", f"/v1/experiments/{exp_id}/rounds/1", dev).json()["updates"]) == 2


def test_bad_paths_and_query_values_are_4xx(exp):
    stack, dev, exp_id, _ = exp
    assert_error(stack.api("GET", f"/v1/experiments/{exp_id}/rounds/abc", dev), 400, "INVALID_ROUND")
    assert_error(stack.api("GET", "/v1/experiments", dev, query={"limit": "0"}), 400)
    assert_error(stack.api("GET", "/v1/experiments", dev, query={"cursor": "!!!"}), 400, "INVALID_CURSOR")
    assert_error(stack.api("GET", "/v1/nothing-here", dev), 404)
    assert_error(stack.api("GET", "/v1/experiments/does-not-exist", dev), 404, "EXPERIMENT_NOT_FOUND")


def test_initial_model_that_is_not_safetensors_leaves_experiment_pending(stack):
    dev = stack.token(Role.DEVELOPER)
    res = stack.api("POST", "/v1/experiments", dev, json_body={"name": "bad model"})
    exp_id = res.json()["experiment"]["id"]
    assert stack.api("PUT", f"/v1/experiments/{exp_id}/model", dev, body=b"not a model").status == 202
    stack.deliver(f"models/{exp_id}/00000000.safetensors")
    body = stack.api("GET", f"/v1/experiments/{exp_id}", dev).json()
    assert body["status"] == "PENDING_MODEL" and body["model_error"].startswith("NOT_SAFETENSORS")
    assert stack.api("PUT", f"/v1/experiments/{exp_id}/model", dev, body=encode(model())).status == 202
    stack.deliver(f"models/{exp_id}/00000000.safetensors")
    assert stack.api("GET", f"/v1/experiments/{exp_id}", dev).json()["status"] == "RUNNING"


def test_bulyan_quorum_that_can_never_be_met_is_400(exp):
    stack, dev, _, _ = exp
    body = {"name": "b", "strategy": {"name": "bulyan", "params": {"num_malicious": 2}}, "rounds": {"min_updates": 8}}
    err = assert_error(stack.api("POST", "/v1/experiments", dev, json_body=body), 400, "INVALID_STRATEGY_PARAMS")
    assert err["details"]["minimum"] == 11
    body["rounds"]["min_updates"] = 11
    assert stack.api("POST", "/v1/experiments", dev, json_body=body).status == 201
