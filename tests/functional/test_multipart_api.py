"""Issue 13 item 4 through the real API handler on moto: a declared size at or above the
multipart threshold gets a multipart plan (presigned part URLs); the client PUTs the parts to
S3 and asks the API to complete; the API validates against S3's ListParts (every part, each of
its planned size, the declared total) and refuses anything else with a named 4xx that changes
nothing; the completed object is ingested like any update. Initial models declared with
`initial_model: {size, sha256}` take the same path."""

from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import requests
from harness import BUCKET, update_bytes

from fma.domain.auth import Role
from fma.domain.codec import encode

THRESHOLD, PART = 4096, 1024


@pytest.fixture
def mp(stack, monkeypatch):
    """The stack with a 4 KiB threshold and 1 KiB parts (moto's 5 MiB part minimum lowered)."""
    from fma.local import dispatch

    monkeypatch.setenv("FMA_MULTIPART_THRESHOLD_BYTES", str(THRESHOLD))
    monkeypatch.setenv("FMA_MULTIPART_PART_BYTES", str(PART))
    monkeypatch.setattr("moto.s3.models.S3_UPLOAD_PART_MIN_SIZE", 256)
    dispatch.reset_handler_caches()
    return stack


def model() -> dict[str, np.ndarray]:
    return {"w": np.zeros(2000, np.float32)}


def running(stack, clients: int = 2, min_updates: int = 2) -> tuple[str, str, list[tuple[str, str]]]:
    dev = stack.token(Role.DEVELOPER, "dev-1")
    res = stack.api("POST", "/v1/experiments", dev, json_body={
        "name": "mp", "rounds": {"min_updates": min_updates, "total_rounds": 2}})
    exp_id = res.json()["experiment"]["id"]
    stack.put_object(f"models/{exp_id}/00000000.safetensors", encode(model()))
    stack.deliver(f"models/{exp_id}/00000000.safetensors")
    return dev, exp_id, stack.enroll(dev, exp_id, clients)


def update(seed: float) -> bytes:
    return update_bytes({"w": np.full(2000, seed, np.float32)}, 10, 1)


def ask(stack, exp_id: str, token: str, data: bytes, n: int = 1):
    body = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    return stack.api("POST", f"/v1/experiments/{exp_id}/rounds/{n}/updates", token, json_body=body)


def put_parts(plan: dict, data: bytes, only: set[int] | None = None, sizes: dict[int, int] | None = None) -> list:
    """PUT each planned part (or `only` these, with `sizes` overriding their lengths): the etags."""
    done = []
    for part in plan["parts"]:
        n = part["part_number"]
        if only is not None and n not in only:
            continue
        start = (n - 1) * plan["part_size"]
        chunk = data[start:start + (sizes or {}).get(n, part["size"])]
        resp = requests.put(part["url"], data=chunk, timeout=10)
        assert resp.status_code == 200, resp.text
        done.append({"part_number": n, "etag": resp.headers["ETag"]})
    return done


def complete(stack, exp_id: str, token: str, update_id: str, parts: list, n: int = 1):
    return stack.api("POST", f"/v1/experiments/{exp_id}/rounds/{n}/updates/{update_id}/complete", token,
                     json_body={"parts": parts})


def test_a_large_update_gets_a_plan_and_a_small_one_a_presigned_post(mp):
    _, exp_id, [(_, c1), (_, c2)] = running(mp)
    big = update(1.0)
    res = ask(mp, exp_id, c1, big)
    assert res.status == 201, res.body
    plan = res.json()["upload"]["multipart"]
    assert plan["part_size"] == PART and plan["part_count"] == -(-len(big) // PART) and plan["size"] == len(big)
    assert [p["part_number"] for p in plan["parts"]] == list(range(1, plan["part_count"] + 1))
    assert sum(p["size"] for p in plan["parts"]) == len(big) and plan["next_part"] is None
    small = update_bytes({"w": np.zeros(2000, np.float32)}, 10, 1)[:THRESHOLD - 1]
    assert set(ask(mp, exp_id, c2, small).json()["upload"]) == {"url", "fields"}


def test_parts_completed_through_the_api_are_ingested_exactly(mp):
    _, exp_id, [(cid, c1), _] = running(mp)
    data = update(0.5)
    body = ask(mp, exp_id, c1, data).json()
    parts = put_parts(body["upload"]["multipart"], data)
    res = complete(mp, exp_id, c1, body["update_id"], parts)
    assert (res.status, res.json()) == (202, {"update_id": body["update_id"], "status": "UPLOADING"})
    key = f"updates/{exp_id}/00000001/{cid}.safetensors"
    assert mp.get_object(key) == data
    mp.deliver(key)
    entry = mp.round(c1, exp_id, 1)["updates"][0]
    assert entry["status"] == "ACCEPTED", entry
    again = complete(mp, exp_id, c1, body["update_id"], parts)
    assert (again.status, again.json()["error"]["code"]) == (409, "ALREADY_SUBMITTED")


def test_a_resuming_client_sees_the_parts_s3_holds_and_urls_for_the_rest(mp):
    _, exp_id, [(_, c1), _] = running(mp)
    data = update(0.25)
    body = ask(mp, exp_id, c1, data).json()
    plan = body["upload"]["multipart"]
    put_parts(plan, data, only={1, 3})
    res = mp.api("GET", f"/v1/experiments/{exp_id}/rounds/1/updates/{body['update_id']}/parts", c1)
    assert res.status == 200, res.body
    got = res.json()
    assert [p["part_number"] for p in got["uploaded"]] == [1, 3]
    missing = [n for n in range(1, plan["part_count"] + 1) if n not in (1, 3)]
    assert [p["part_number"] for p in got["parts"]] == missing
    put_parts({**plan, "parts": got["parts"]}, data)
    listed = mp.api("GET", f"/v1/experiments/{exp_id}/rounds/1/updates/{body['update_id']}/parts", c1).json()
    parts = [{"part_number": p["part_number"], "etag": p["etag"]} for p in listed["uploaded"]]
    assert complete(mp, exp_id, c1, body["update_id"], parts).status == 202


@pytest.mark.parametrize("fault,code", [("missing", "MULTIPART_INCOMPLETE"), ("short", "MULTIPART_PART_SIZE"),
                                        ("short-last", "MULTIPART_PART_SIZE"), ("etag", "MULTIPART_ETAG_MISMATCH")])
def test_completion_is_checked_against_what_s3_holds_and_a_refusal_changes_nothing(mp, fault, code):
    _, exp_id, [(_, c1), _] = running(mp)
    data = update(2.0)
    body = ask(mp, exp_id, c1, data).json()
    plan = body["upload"]["multipart"]
    last = plan["part_count"]
    only = set(range(1, last + 1)) - ({2} if fault == "missing" else set())
    sizes = {"short": {2: PART - 1}, "short-last": {last: plan["parts"][-1]["size"] - 1}}.get(fault, {})
    parts = put_parts(plan, data, only=only, sizes=sizes)
    if fault == "etag":
        parts[0]["etag"] = '"' + "0" * 32 + '"'
    before = mp.snapshot()
    res = complete(mp, exp_id, c1, body["update_id"], parts)
    assert res.status == 400 and res.json()["error"]["code"] == code, res.body
    assert "part_number" in res.json()["error"]["details"]
    assert mp.snapshot() == before


def test_only_the_client_that_asked_may_complete_and_unknown_ids_are_404(mp):
    _, exp_id, [(_, c1), (_, c2)] = running(mp)
    data = update(3.0)
    body = ask(mp, exp_id, c1, data).json()
    parts = put_parts(body["upload"]["multipart"], data)
    before = mp.snapshot()
    for token, update_id in ((c2, body["update_id"]), (c1, "1:c-nobody"), (c1, "x" * 500), (c2, "1:" + "é")):
        res = complete(mp, exp_id, token, update_id, parts)
        assert res.status == 404 and res.json()["error"]["code"] in ("UPDATE_NOT_FOUND", "NOT_FOUND"), res.body
        got = mp.api("GET", f"/v1/experiments/{exp_id}/rounds/1/updates/{update_id}/parts", token)
        assert got.status == 404, got.body
    assert mp.snapshot() == before


def test_a_second_completion_before_ingest_is_409_and_a_sealed_round_is_round_closed(mp):
    _, exp_id, [(cid1, c1), (cid2, c2)] = running(mp, clients=2, min_updates=1)
    data = update(4.0)
    body = ask(mp, exp_id, c1, data).json()
    parts = put_parts(body["upload"]["multipart"], data)
    late = ask(mp, exp_id, c2, data).json()  # c2 asks before the round seals
    late_parts = put_parts(late["upload"]["multipart"], data)
    assert complete(mp, exp_id, c1, body["update_id"], parts).status == 202
    again = complete(mp, exp_id, c1, body["update_id"], parts)
    assert (again.status, again.json()["error"]["code"]) == (409, "MULTIPART_COMPLETED")
    mp.deliver(f"updates/{exp_id}/00000001/{cid1}.safetensors")  # quota 1: sealed
    res = complete(mp, exp_id, c2, late["update_id"], late_parts)
    assert (res.status, res.json()["error"]["code"]) == (409, "ROUND_CLOSED")
    assert not mp.s3.list_objects_v2(Bucket=BUCKET, Prefix=f"updates/{exp_id}/00000001/{cid2}").get("Contents")


HOSTILE = [b"", b"null", b"[]", b'"parts"', b'{"parts": null}', b'{"parts": {}}', b'{"parts": []}',
           b'{"parts": [1]}', b'{"parts": [{"part_number": 1}]}', b'{"parts": [{"part_number": true, "etag": "a"}]}',
           b'{"parts": [{"part_number": 1, "etag": 5}]}', b'{"parts": [{"part_number": 99999, "etag": "a"}]}',
           b'{"parts": [{"part_number": 1, "etag": "a", "x": 1}]}', b'{"parts": [], "extra": 1}',
           b'{"parts": [{"part_number": 1e400, "etag": "a"}]}', b'{"parts": [{"part_number": 1, "etag": "\\u0000"}]}',
           b'{"parts": [{"part_number": 1, "etag": "a"}, {"part_number": 1, "etag": "a"}]}', b"\xff\xfe", b"{" * 5000]


@pytest.mark.parametrize("raw", HOSTILE, ids=range(len(HOSTILE)))
def test_hostile_completion_bodies_are_4xx_and_change_nothing(mp, raw):
    _, exp_id, [(_, c1), _] = running(mp)
    data = update(5.0)
    body = ask(mp, exp_id, c1, data).json()
    before = mp.snapshot()
    res = mp.api("POST", f"/v1/experiments/{exp_id}/rounds/1/updates/{body['update_id']}/complete", c1, body=raw,
                 headers={"Content-Type": "application/json"})
    assert 400 <= res.status < 500, res.body
    assert set(json.loads(res.body)["error"]) == {"code", "message", "details"}
    assert mp.snapshot() == before


def test_asking_again_aborts_the_earlier_upload(mp):
    _, exp_id, [(_, c1), _] = running(mp)
    data = update(6.0)
    first = ask(mp, exp_id, c1, data).json()["upload"]["multipart"]["upload_id"]
    second = ask(mp, exp_id, c1, data).json()["upload"]["multipart"]["upload_id"]
    inflight = mp.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads", [])
    assert first != second and [u["UploadId"] for u in inflight] == [second]


def test_the_sweeper_aborts_an_abandoned_multipart_upload(mp):
    _, exp_id, [(_, c1), _] = running(mp)
    ask(mp, exp_id, c1, update(7.0))
    assert mp.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")
    mp.sweep(advance=86400 + 3600)
    assert not mp.s3.list_multipart_uploads(Bucket=BUCKET).get("Uploads")


def test_a_declared_large_initial_model_is_a_multipart_upload_completed_through_the_api(mp):
    dev = mp.token(Role.DEVELOPER, "dev-1")
    data = encode({"w": np.linspace(-1, 1, 3000, dtype=np.float32)})
    res = mp.api("POST", "/v1/experiments", dev, json_body={
        "name": "big", "initial_model": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}})
    assert res.status == 201, res.body
    exp_id, plan = res.json()["experiment"]["id"], res.json()["upload"]["multipart"]
    parts = put_parts(plan, data, only={1})
    got = mp.api("GET", f"/v1/experiments/{exp_id}/model/parts", dev).json()
    assert [p["part_number"] for p in got["uploaded"]] == [1] and got["parts"][0]["part_number"] == 2
    refused = mp.api("POST", f"/v1/experiments/{exp_id}/model/complete", dev, json_body={"parts": parts})
    assert refused.json()["error"]["code"] == "MULTIPART_INCOMPLETE"
    parts += put_parts({**plan, "parts": got["parts"]}, data)
    assert mp.api("POST", f"/v1/experiments/{exp_id}/model/complete", dev, json_body={"parts": parts}).status == 202
    mp.deliver(f"models/{exp_id}/00000000.safetensors")
    exp = mp.experiment(dev, exp_id)
    assert exp["status"] == "RUNNING" and exp["model_sha256"] == hashlib.sha256(data).hexdigest()


def test_an_initial_model_that_is_not_the_declared_one_is_refused_by_ingest(mp):
    dev = mp.token(Role.DEVELOPER, "dev-1")
    data = encode({"w": np.zeros(100, np.float32)})
    declared = {"size": len(data), "sha256": "0" * 64}
    res = mp.api("POST", "/v1/experiments", dev, json_body={"name": "small", "initial_model": declared})
    exp_id, upload = res.json()["experiment"]["id"], res.json()["upload"]
    assert set(upload) == {"url", "fields"}  # below the threshold: a presigned POST bound to the size
    mp.put_object(f"models/{exp_id}/00000000.safetensors", data)
    mp.deliver(f"models/{exp_id}/00000000.safetensors")
    exp = mp.experiment(dev, exp_id)
    assert exp["status"] == "PENDING_MODEL" and exp["model_error"].startswith("SHA256_MISMATCH")
