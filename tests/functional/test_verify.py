"""`fma verify` against the bucket and the table (moto): clean history passes; each kind of
tampering fails with a report line that names it."""

from __future__ import annotations

import hashlib
import json
import os

import pytest
from harness import BUCKET
from history_helpers import finished_experiment

from fma.cli import main
from fma.domain.auth import Role


@pytest.fixture
def finished(stack):
    dev = stack.token(Role.DEVELOPER, "dev-1")
    return stack, dev, finished_experiment(stack, dev, rounds=3)


def verify(capsys, exp_id: str, *extra: str) -> tuple[int, str]:
    code = main(["verify", exp_id, "--bucket", BUCKET, "--table", os.environ["FMA_TABLE_NAME"], *extra])
    return code, capsys.readouterr().out


def manifest(stack, exp_id: str, n: int) -> dict:
    return json.loads(stack.get_object(f"models/{exp_id}/{n:08d}.manifest.json"))


def put_manifest(stack, exp_id: str, n: int, data: dict) -> bytes:
    raw = json.dumps(data, indent=1, sort_keys=True).encode()
    stack.put_object(f"models/{exp_id}/{n:08d}.manifest.json", raw)
    return raw


def test_clean_history_verifies_and_every_round_reruns_to_the_same_bytes(finished, capsys):
    stack, dev, exp_id = finished
    stack.api("POST", "/v1/registry/m/versions", dev, json_body={"experiment_id": exp_id, "round": 3})
    code, out = verify(capsys, exp_id, "--rerun-all")
    assert code == 0, out
    assert out.startswith(f"OK: experiment {exp_id}")
    for n in (1, 2, 3):
        assert f"round {n}: re-run gives the same bytes" in out
    assert "registry m 1.0.0: round 3" in out


def test_chain_links_each_manifest_to_the_previous_one_and_round_one_to_the_genesis(finished):
    from fma.services.history import canonical

    stack, dev, exp_id = finished
    first = manifest(stack, exp_id, 1)
    assert first["previous_manifest_sha256"] == hashlib.sha256(canonical(first["genesis"])).hexdigest()
    initial = stack.get_object(f"models/{exp_id}/00000000.safetensors")
    assert first["genesis"]["initial_model"]["sha256"] == hashlib.sha256(initial).hexdigest()
    assert first["genesis"]["settings"]["strategy"]["name"] == "fedavg" and first["genesis"]["parent"] is None
    for n in (2, 3):
        previous = stack.get_object(f"models/{exp_id}/{n - 1:08d}.manifest.json")
        assert manifest(stack, exp_id, n)["previous_manifest_sha256"] == hashlib.sha256(previous).hexdigest()
    rounds = stack.api("GET", f"/v1/experiments/{exp_id}/rounds", dev).json()["rounds"]
    for r in rounds:
        raw = stack.get_object(f"models/{exp_id}/{r['round']:08d}.manifest.json")
        assert r["manifest_sha256"] == hashlib.sha256(raw).hexdigest()


def test_changed_model_bytes_fail_with_the_object_named(finished, capsys):
    stack, _, exp_id = finished
    key = f"models/{exp_id}/00000002.safetensors"
    stack.put_object(key, stack.get_object(key)[:-4] + b"\0\0\0\0")
    code, out = verify(capsys, exp_id)
    assert code == 1
    assert f"round 2: model: {key} has sha256" in out and "the manifest records" in out
    assert out.count("  x ") == 1, out


def test_edited_manifest_breaks_the_chain_and_the_registry_pointer(finished, capsys):
    stack, dev, exp_id = finished
    stack.api("POST", "/v1/registry/m/versions", dev, json_body={"experiment_id": exp_id, "round": 1})
    edited = manifest(stack, exp_id, 1)
    edited["inputs"][0]["weight"] = 0.99
    put_manifest(stack, exp_id, 1, edited)
    code, out = verify(capsys, exp_id)
    assert code == 1
    assert "round 1: manifest sha256" in out and "recorded when the round was published" in out
    assert "round 2: chain broken: previous_manifest_sha256 is" in out and "manifest of round 1 hashes to" in out
    assert "registry m 1.0.0: points at manifest" in out


def test_removed_manifest_is_reported(finished, capsys):
    stack, _, exp_id = finished
    stack.s3.delete_object(Bucket=BUCKET, Key=f"models/{exp_id}/00000002.manifest.json")
    code, out = verify(capsys, exp_id)
    assert code == 1
    assert f"round 2: manifest models/{exp_id}/00000002.manifest.json is missing" in out


def test_replaced_input_update_is_reported(finished, capsys):
    stack, _, exp_id = finished
    obj = manifest(stack, exp_id, 2)["input_objects"][0]
    stack.s3.delete_object(Bucket=BUCKET, Key=obj["key"], VersionId=obj["version_id"])
    stack.put_object(obj["key"], b"other bytes")
    code, out = verify(capsys, exp_id)
    assert code == 1
    assert f"round 2: input of {obj['client_id']}: {obj['key']} (version {obj['version_id']}) is missing" in out


def test_rechained_manifest_with_changed_inputs_fails_the_rerun(finished, capsys):
    # Given someone who rewrites round 2's inputs and re-links round 3 to the rewritten manifest
    stack, _, exp_id = finished
    edited = manifest(stack, exp_id, 2)
    edited["inputs"][0]["num_examples"] += 40
    raw = put_manifest(stack, exp_id, 2, edited)
    third = manifest(stack, exp_id, 3)
    third["previous_manifest_sha256"] = hashlib.sha256(raw).hexdigest()
    put_manifest(stack, exp_id, 3, third)
    # Then the chain holds, but the table's digests and the re-run expose it
    code, out = verify(capsys, exp_id, "--rerun", "2")
    assert code == 1
    assert "chain broken" not in out
    assert "round 2: re-run of the aggregation gives sha256" in out
    assert "round 2: manifest sha256" in out and "round 3: manifest sha256" in out


def test_fork_history_verifies_and_names_a_tampered_parent(finished, capsys):
    stack, dev, parent = finished
    res = stack.api("POST", "/v1/experiments", dev, json_body={
        "name": "fork", "rounds": {"min_updates": 2, "total_rounds": 1}, "from": {"experiment_id": parent, "round": 2}})
    child = res.json()["experiment"]["id"]
    from history_helpers import run_rounds

    run_rounds(stack, child, stack.enroll(dev, child, 2), 1, 1)
    assert verify(capsys, child, "--rerun", "1")[0] == 0
    edited = manifest(stack, parent, 2)
    edited["metrics"] = {"loss": 0.0}
    put_manifest(stack, parent, 2, edited)
    code, out = verify(capsys, child)
    assert code == 1 and f"parent: manifest of round 2 of {parent} hashes to" in out


def test_rerun_of_an_unpublished_round_and_missing_source_are_errors(finished, capsys):
    _, _, exp_id = finished
    code, out = verify(capsys, exp_id, "--rerun", "7")
    assert code == 1 and "--rerun 7: round 7 is not published" in out
    assert main(["verify", exp_id]) == 2
    assert "give --url and --token, --state-dir, or --bucket and --table" in capsys.readouterr().err
    assert main(["verify", "feedfeedfeedfeed", "--bucket", BUCKET, "--table", os.environ["FMA_TABLE_NAME"]]) == 2


def test_round_artifacts_grant_exactly_what_the_manifest_names(finished):
    from history_helpers import snapshot

    stack, dev, exp_id = finished
    res = stack.api("GET", f"/v1/experiments/{exp_id}/rounds/2/artifacts", dev)
    assert res.status == 200, res.body
    objects = {(o["key"], o["version_id"]): o["url"] for o in res.json()["objects"]}
    expected = {(f"models/{exp_id}/00000002.safetensors", None), (f"models/{exp_id}/00000002.manifest.json", None)}
    expected |= {(o["key"], o["version_id"]) for o in manifest(stack, exp_id, 2)["input_objects"]}
    assert set(objects) == expected
    assert all("Signature=" in url for url in objects.values())
    assert all(f"versionId={v}" in objects[(k, v)] for k, v in objects if v)
    assert stack.api("GET", f"/v1/experiments/{exp_id}/rounds/0/artifacts", dev).json()["objects"][0]["key"] == (
        f"models/{exp_id}/00000000.safetensors")
    analyst, other = stack.token(Role.ANALYST), stack.token(Role.DEVELOPER, "dev-2")
    before = snapshot(stack)
    for token, n, status, code in ((analyst, "2", 403, "FORBIDDEN_ROLE"), (other, "2", 404, "EXPERIMENT_NOT_FOUND"),
                                   (dev, "9", 404, "MODEL_NOT_FOUND"), (dev, "x", 400, "INVALID_ROUND")):
        res = stack.api("GET", f"/v1/experiments/{exp_id}/rounds/{n}/artifacts", token)
        assert (res.status, res.json()["error"]["code"]) == (status, code)
    assert snapshot(stack) == before
