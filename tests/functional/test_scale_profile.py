"""The scale model's profiles are measured, not typed: recording a round on this code through
the real handlers gives the committed after-profile's key classes per operation, and the
committed profiles show the two designs' write patterns (issue 13's hot keys, then none)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.append(str(ROOT / "benchmarks"))  # last: only scalemodel is wanted

from scalemodel import profiles, report  # noqa: E402
from scalemodel.record import record  # noqa: E402

PROFILES = ROOT / "benchmarks" / "profiles"


def _written(profile: dict, op: str) -> set[str]:
    return {i["pk"] for r in profile["operations"][op]["requests"] if r["type"] == "write" for i in r["items"]}


def test_recording_this_code_reproduces_the_committed_after_profiles_key_classes():
    env = dict(os.environ)
    recording = record(clients=6)
    assert dict(os.environ) == env  # the recording leaves the process's settings as they were
    measured = profiles.key_classes(profiles.build(recording))
    committed = profiles.key_classes(profiles.load(PROFILES / "after.json")["operations"])
    assert measured == committed
    assert set(measured) == {"register", "download", "upload", "ingest", "seal", "poll", "publish"}


def test_the_committed_profiles_carry_the_hot_keys_before_and_none_after():
    before, after = (profiles.load(PROFILES / f"{n}.json") for n in ("before", "after"))
    assert before["meta"]["commit"] != after["meta"]["commit"]
    assert {"EXP#{exp}"} <= _written(before, "ingest") and "TOKEN#{enroll}" in _written(before, "register")
    assert "DUE_UPLOAD" in _written(before, "upload")
    for op in ("ingest", "register", "upload"):  # after: every write of a client lands on a shard or its own key
        assert all(profiles.scope(pk) != "one" for pk in _written(after, op)), (op, _written(after, op))


def test_the_model_tells_the_designs_apart_on_a_small_round():
    loaded = {n: json.loads((PROFILES / f"{n}.json").read_text()) for n in ("before", "after")}
    results = report.grid(loaded, clients=(1_000,), windows=((60.0, "60 s"),))
    before, after = results[("before", 1_000, "60 s")], results[("after", 1_000, "60 s")]
    assert before.sealed_at is not None and after.sealed_at is not None
    assert before.conflicted > 10 * max(after.conflicted, 1)  # one ROUND/META item vs counter shards
    assert before.dlq == after.dlq == 0
    lines = report.side_by_side(results, "before", "after")
    assert lines[2].startswith("| 1,000 | 60 s |")


def test_the_meters_listeners_see_each_writes_items_with_their_billed_sizes(stack):
    import boto3

    from fma.local import hot_keys

    table = os.environ["FMA_TABLE_NAME"]
    ddb = boto3.client("dynamodb", region_name="us-east-1")
    hot_keys.install()
    seen: list[dict] = []
    hot_keys.LISTENERS.append(seen.append)
    try:
        ddb.put_item(TableName=table, Item={"pk": {"S": "EXP#a"}, "sk": {"S": "META"}, "blob": {"S": "x" * 2000}})
        with pytest.raises(ddb.exceptions.TransactionCanceledException):
            ddb.transact_write_items(TransactItems=[
                {"Put": {"TableName": table, "Item": {"pk": {"S": "EXP#a"}, "sk": {"S": "UPDATE#1"}}}},
                {"ConditionCheck": {"TableName": table, "Key": {"pk": {"S": "EXP#a"}, "sk": {"S": "META"}},
                                    "ConditionExpression": "attribute_not_exists(pk)"}},
            ])
        ddb.get_item(TableName=table, Key={"pk": {"S": "EXP#a"}, "sk": {"S": "META"}})
    finally:
        hot_keys.LISTENERS.remove(seen.append)
    put, txn, get = seen
    assert put["call"] == "put_item" and put["ok"] and not put["txn"]
    assert put["items"][0]["pk"] == "EXP#a" and 2000 < put["items"][0]["bytes"] < 2100  # 2 write units
    assert txn["txn"] and not txn["ok"] and [i["kind"] for i in txn["items"]] == ["put", "check"]
    assert get == {"call": "get_item", "index": "table", "pk": "EXP#a", "sk": "META", "items": 1,
                   "bytes": put["items"][0]["bytes"]}


def test_polls_read_the_pointer_through_the_cdn_and_the_what_if_does_the_same_to_before():
    """The after design's recorded poll is one CloudFront request (the pointer object, issue 13
    item 5): no API request, Lambda or DynamoDB read; the `pointer-polls` what-if gives the
    before design the same and moves its polls off the API and DynamoDB."""
    from scalemodel.plan import compile_profile

    after, before = profiles.load(PROFILES / "after.json"), profiles.load(PROFILES / "before.json")
    poll = compile_profile(after, 1_000)["poll"]
    assert (poll.api, poll.cdn, poll.steps, poll.read_units) == (0, 1, [], 0.0)
    assert report.simulate(after, 1_000, 300.0).usage["cloudfront_request"] > 0
    api_polls = report.simulate(before, 1_000, 300.0)
    pointer = report.simulate(before, 1_000, 300.0, what_if="pointer-polls")
    assert api_polls.usage["cloudfront_request"] == 0 < pointer.usage["cloudfront_request"]
    assert pointer.usage["api_request"] < api_polls.usage["api_request"] / 2
    assert pointer.usage["ddb_read_unit"] < api_polls.usage["ddb_read_unit"] / 2
