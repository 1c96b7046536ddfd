"""Issue 11, "a client crashes ingest" and "ingest trusts whatever key an object lands on":
every byte a client controls ends REJECTED with a specific reason in one ingest pass (never an
exception that retries the event for ever), and an object is counted only for the client that
asked for that upload, with the sha256 it declared."""

from __future__ import annotations

import json

import numpy as np
import pytest
from harness import update_bytes
from hostile import (
    assert_rejected_changing_only_its_update,
    bucket_objects,
    changed,
    model,
    model_header,
    nesting_bomb,
    own_update,
    raw_file,
    sha,
    submit_and_deliver,
    table_items,
    update_key,
    world,
)

from fma.domain.auth import Role
from fma.domain.codec import encode


@pytest.fixture
def exp(stack):
    dev, exp_id, clients = world(stack, clients=3)
    return stack, dev, exp_id, clients


# -- a client crashes ingest ---------------------------------------------------------------

def test_header_nested_100000_levels_deep_is_rejected_not_safetensors(exp):
    stack, _, exp_id, clients = exp
    data = raw_file(nesting_bomb(100_000))
    assert_rejected_changing_only_its_update(stack, exp_id, clients[0], data, "NOT_SAFETENSORS")


def test_nested_fma_metrics_are_rejected_bad_metrics(exp):
    stack, _, exp_id, clients = exp
    metrics = '{"loss": ' + "[" * 20_000 + "]" * 20_000 + "}"
    data = update_bytes(model(), 5, 1, extra={"fma.metrics": metrics})
    assert_rejected_changing_only_its_update(stack, exp_id, clients[0], data, "BAD_METRICS")
    shallow = update_bytes(model(), 5, 1, extra={"fma.metrics": '{"loss": {"a": 1}}'})
    assert_rejected_changing_only_its_update(stack, exp_id, clients[1], shallow, "BAD_METRICS")


def test_metric_written_as_a_400_digit_integer_is_rejected_bad_metrics(exp):
    stack, _, exp_id, clients = exp
    for client, text in zip(clients, ("9" * 400, "1e400"), strict=False):  # more in tests/unit
        data = update_bytes(model(), 5, 1, extra={"fma.metrics": '{"loss": ' + text + "}"})
        assert_rejected_changing_only_its_update(stack, exp_id, client, data, "BAD_METRICS")


def test_metric_names_that_repeat_are_rejected_bad_metrics(exp):
    stack, _, exp_id, clients = exp
    data = update_bytes(model(), 5, 1, extra={"fma.metrics": '{"loss": 1, "loss": 2}'})
    assert_rejected_changing_only_its_update(stack, exp_id, clients[0], data, "BAD_METRICS")


def test_initial_model_with_a_nesting_bomb_sets_model_error_visible_in_the_experiment(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.api("POST", "/v1/experiments", dev, json_body={"name": "bomb"}).json()["experiment"]["id"]
    before = table_items(stack)
    assert stack.api("PUT", f"/v1/experiments/{exp_id}/model", dev, body=raw_file(nesting_bomb())).status == 202
    assert stack.deliver(f"models/{exp_id}/00000000.safetensors") == {"batchItemFailures": []}
    body = stack.experiment(dev, exp_id)
    assert body["status"] == "PENDING_MODEL" and body["model_error"].startswith("NOT_SAFETENSORS:")
    assert changed(before, table_items(stack)) == {(f"EXP#{exp_id}", "META")}  # model_error only
    assert body["current_round"] == 0 and body["model_spec"] is None


@pytest.mark.parametrize("dtype", ["BF16", "F16"])
def test_initial_model_of_a_half_precision_dtype_never_stays_pending_without_a_reason(stack, dtype):
    """BF16/F16 become real dtypes in the codec; until a dtype decodes, the model is refused
    with UNSUPPORTED_DTYPE in model_error rather than left PENDING_MODEL with no reason."""
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.api("POST", "/v1/experiments", dev, json_body={"name": dtype}).json()["experiment"]["id"]
    header = json.dumps({"w": {"dtype": dtype, "shape": [4], "data_offsets": [0, 8]}})
    assert stack.api("PUT", f"/v1/experiments/{exp_id}/model", dev, body=raw_file(header, bytes(8))).status == 202
    assert stack.deliver(f"models/{exp_id}/00000000.safetensors") == {"batchItemFailures": []}
    body = stack.experiment(dev, exp_id)
    assert (body["status"] == "RUNNING" and body["model_error"] is None) or (
        body["status"] == "PENDING_MODEL" and body["model_error"].startswith("UNSUPPORTED_DTYPE:")), body


def test_initial_model_with_nan_sets_model_error(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.api("POST", "/v1/experiments", dev, json_body={"name": "nan"}).json()["experiment"]["id"]
    bad = {"w": np.array([1.0, np.nan], np.float32)}
    assert stack.api("PUT", f"/v1/experiments/{exp_id}/model", dev, body=encode(bad)).status == 202
    stack.deliver(f"models/{exp_id}/00000000.safetensors")
    body = stack.experiment(dev, exp_id)
    assert body["status"] == "PENDING_MODEL" and body["model_error"].startswith("NON_FINITE:")


# -- num_examples and duplicate keys ---------------------------------------------------------

#: through ingest; tests/unit/test_untrusted_parsers.py covers every other spelling.
BAD_NUM_EXAMPLES = [" 12", "1_000", "\u0661\u0662", str(10**15 + 1)]


def test_num_examples_must_be_ascii_digits_from_1_to_10_to_the_15(stack):
    _dev, exp_id, clients = world(stack, clients=len(BAD_NUM_EXAMPLES) + 1,
                                  update_limits={"max_num_examples": 10**15})
    for client, text in zip(clients, BAD_NUM_EXAMPLES, strict=False):
        data = update_bytes(model(), None, 1, extra={"fma.num_examples": text})
        assert_rejected_changing_only_its_update(stack, exp_id, client, data, "BAD_NUM_EXAMPLES")
    mine = submit_and_deliver(stack, exp_id, clients[-1], update_bytes(model(), 10**15, 1))
    assert mine["status"] == "ACCEPTED" and mine["num_examples"] == 10**15


def test_header_with_two_metadata_objects_is_rejected_not_safetensors(exp):
    stack, _, exp_id, clients = exp
    text = json.dumps(model_header({"fma.num_examples": "5"}))[:-1] + ', "__metadata__": {"fma.num_examples": "9"}}'
    assert_rejected_changing_only_its_update(stack, exp_id, clients[0], raw_file(text, bytes(36)), "NOT_SAFETENSORS")


def test_header_with_two_tensors_of_one_name_is_rejected_not_safetensors(exp):
    stack, _, exp_id, clients = exp
    text = json.dumps(model_header({"fma.num_examples": "5"}))[:-1] + (
        ', "w": {"dtype": "F32", "shape": [2, 3], "data_offsets": [36, 60]}}')
    assert_rejected_changing_only_its_update(stack, exp_id, clients[0], raw_file(text, bytes(60)), "NOT_SAFETENSORS")


# -- ingest trusts keys ----------------------------------------------------------------------

def _nothing_changed_by(stack, key: str, data: bytes) -> None:
    before, models = table_items(stack), bucket_objects(stack, "models/")
    stack.put_object(key, data)
    assert stack.deliver(key) == {"batchItemFailures": []}
    assert table_items(stack) == before
    assert bucket_objects(stack, "models/") == models


def test_object_under_a_never_enrolled_client_id_is_ignored_and_counts_nothing(exp):
    stack, dev, exp_id, _ = exp
    _nothing_changed_by(stack, update_key(exp_id, 1, "c-intruder00000000"), update_bytes(model(), 5, 1))
    assert stack.round(dev, exp_id, 1)["updates"] == []


def test_object_under_a_client_of_another_experiment_is_ignored(exp):
    stack, dev, exp_id, _ = exp
    _, _other_id, [outsider] = world(stack, clients=1)
    _nothing_changed_by(stack, update_key(exp_id, 1, outsider[0]), update_bytes(model(), 5, 1))
    assert stack.round(dev, exp_id, 1)["accepted"] == 0


def test_object_of_an_enrolled_client_that_asked_for_no_upload_is_ignored(exp):
    stack, dev, exp_id, clients = exp
    _nothing_changed_by(stack, update_key(exp_id, 1, clients[0][0]), update_bytes(model(), 5, 1))
    assert stack.round(dev, exp_id, 1)["updates"] == []


def test_bytes_other_than_the_declared_sha256_are_rejected_sha256_mismatch(exp):
    stack, _, exp_id, clients = exp
    (client_id, token), good, other = clients[0], update_bytes(model(), 5, 1), update_bytes(model(), 6, 1)
    res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates", token,
                    json_body={"size": len(good), "sha256": sha(good)})
    assert res.status == 201, res.body
    models = bucket_objects(stack, "models/")
    stack.put_object(update_key(exp_id, 1, client_id), other)  # what arrived is not what was declared
    assert stack.deliver(update_key(exp_id, 1, client_id)) == {"batchItemFailures": []}
    mine = own_update(stack, exp_id, clients[0])
    assert mine["status"] == "REJECTED" and mine["reason"].startswith("SHA256_MISMATCH:")
    assert stack.round(token, exp_id, 1)["accepted"] == 0 and bucket_objects(stack, "models/") == models
    stack.put_object(update_key(exp_id, 1, client_id), good)  # the declared bytes still count
    stack.deliver(update_key(exp_id, 1, client_id))
    assert own_update(stack, exp_id, clients[0])["status"] == "ACCEPTED"


def test_bytes_written_over_another_clients_direct_upload_are_rejected(exp):
    stack, _, exp_id, clients = exp
    client_id, token = clients[0]
    assert stack.submit(exp_id, 1, token, update_bytes(model(), 5, 1)).status == 202  # API records its sha256
    stack.put_object(update_key(exp_id, 1, client_id), update_bytes(model(), 10**6, 1))
    assert stack.deliver(update_key(exp_id, 1, client_id)) == {"batchItemFailures": []}
    mine = own_update(stack, exp_id, clients[0])
    assert mine["status"] == "REJECTED" and mine["reason"].startswith("SHA256_MISMATCH:")
    assert mine["num_examples"] is None


def test_second_post_after_acceptance_changes_no_model_manifest_or_listing(stack):
    dev, exp_id, clients = world(stack, clients=2, rounds={"min_updates": 2, "total_rounds": 2})
    ones = {k: np.ones_like(v) for k, v in model().items()}
    first = update_bytes(ones, 4, 1)
    for client in clients:
        assert submit_and_deliver(stack, exp_id, client, first)["status"] == "ACCEPTED"
    def listing_now() -> dict:  # the round as listed, less its age (the clock moves on between reads)
        return {k: v for k, v in stack.round(dev, exp_id, 1).items() if k != "age_seconds"}

    listing = listing_now()
    # a still-valid presigned URL lets the first client write a new version of its object
    evil = update_bytes({k: np.full_like(v, 1000.0) for k, v in model().items()}, 10**6, 1)
    key = update_key(exp_id, 1, clients[0][0])
    stack.put_object(key, evil)
    assert stack.deliver(key) == {"batchItemFailures": []}
    assert listing_now() == listing
    assert [r["status"] for r in stack.run_aggregations()] == ["published"]
    published = stack.round(dev, exp_id, 1)
    assert [u["status"] for u in published["updates"]] == ["APPLIED", "APPLIED"]
    stack.put_object(key, evil)  # and once more after publication
    assert stack.deliver(key) == {"batchItemFailures": []}
    assert stack.round(dev, exp_id, 1) == published
    from fma.domain.codec import decode

    tensors, _ = decode(stack.get_object(f"models/{exp_id}/00000001.safetensors"))
    assert all(np.array_equal(tensors[k], v) for k, v in ones.items())
    manifest = json.loads(stack.get_object(f"models/{exp_id}/00000001.manifest.json"))
    assert {i["sha256"] for i in manifest["inputs"]} == {sha(first)}
    assert [i["num_examples"] for i in manifest["inputs"]] == [4, 4]
