"""Issue 11, "500s on bad input" and "NaN in JSON": hostile JSON, path segments and cursors are
400s with the error body and change nothing; every response is strict JSON."""

from __future__ import annotations

import base64
import itertools
import json

import numpy as np
import pytest

from fma.domain.auth import Role

DEEP = b'{"name": "x", "client_config": {"a": ' + b"[" * 100_000 + b"]" * 100_000 + b"}}"
HOSTILE = {
    "deep-nesting": (DEEP, "JSON_TOO_DEEP"),
    "nesting-over-limit": (b'{"a": ' + b"[" * 40 + b"]" * 40 + b"}", "JSON_TOO_DEEP"),
    "nan": (b'{"name": "x", "client_config": {"lr": NaN}}', "NON_FINITE_NUMBER"),
    "infinity": (b'{"name": "x", "client_config": {"lr": -Infinity}}', "NON_FINITE_NUMBER"),
    "float-overflow": (b'{"name": "x", "client_config": {"lr": 1e400}}', "NUMBER_OUT_OF_RANGE"),
    "huge-int": (b'{"name": "x", "client_config": {"lr": 1' + b"0" * 400 + b"}}", "NUMBER_OUT_OF_RANGE"),
    "duplicate-key": (b'{"name": "x", "name": "y"}', "DUPLICATE_KEY"),
    "invalid-utf8": (b'{"name": "\xff\xfe"}', "INVALID_UTF8"),
    "lone-surrogate": (b'{"name": "\\ud800"}', "INVALID_UTF8"),
}
#: every route that takes a JSON body, with the token that gets past authorization.
JSON_ROUTES = [
    ("admin", "POST", "/v1/tokens"),
    ("dev", "POST", "/v1/experiments"),
    ("dev", "PATCH", "/v1/experiments/{id}"),
    ("dev", "POST", "/v1/experiments/{id}/enrollment-tokens"),
    ("enroll", "POST", "/v1/experiments/{id}/clients"),
    ("client", "POST", "/v1/experiments/{id}/rounds/1/updates"),
    ("client", "POST", "/v1/experiments/{id}/rounds/0/evaluations"),
]


@pytest.fixture
def world(stack):
    dev = stack.token(Role.DEVELOPER)
    exp_id = stack.create_experiment(dev, {"w": np.zeros(2, np.float32)}, rounds={"min_updates": 2})
    enroll = stack.api("POST", f"/v1/experiments/{exp_id}/enrollment-tokens", dev, json_body={"max_uses": 5})
    enroll = enroll.json()["token"]
    client = stack.api("POST", f"/v1/experiments/{exp_id}/clients", enroll, json_body={}).json()["token"]
    tokens = {"dev": dev, "admin": stack.token(Role.ADMIN), "client": client, "enroll": enroll}
    return stack, tokens, exp_id


def assert_refused(stack, res, status: int, code: str) -> None:
    assert res.status == status, res.body
    error = res.json()["error"]
    assert set(error) == {"code", "message", "details"} and error["code"] == code, error


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_json_on_every_json_route_is_400_and_changes_nothing(world, case):
    stack, tokens, exp_id = world
    body, code = HOSTILE[case]
    before = stack.snapshot()
    for who, method, path in JSON_ROUTES:
        res = stack.api(method, path.replace("{id}", exp_id), tokens[who], body=body,
                        headers={"Content-Type": "application/json"})
        assert_refused(stack, res, 400, code)
    assert stack.snapshot() == before


def test_round_segment_of_non_ascii_digits_is_400(world):
    stack, tokens, exp_id = world
    before = stack.snapshot()
    for segment, (who, method, suffix, body) in itertools.product(SEGMENTS, ROUND_ROUTES):
        path = f"/v1/experiments/{exp_id}/rounds/{segment}{suffix}"
        if suffix == "MODEL":
            path = f"/v1/experiments/{exp_id}/models/{segment}"
        assert_refused(stack, stack.api(method, path, tokens[who], json_body=body), 400, "INVALID_ROUND")
    assert stack.snapshot() == before


SEGMENTS = ["²", "¹", "\u0661", "1²", " 1", "+1", "1.0", "-0"]  # U+0661: Arabic-Indic one
ROUND_ROUTES = (("dev", "GET", "", None), ("client", "POST", "/evaluations",
                                                                 {"num_examples": 1, "metrics": {}}),
                                      ("client", "POST", "/updates",
                                       {"size": 10, "sha256": "0" * 64}), ("dev", "GET", "MODEL", None))


def test_evaluation_metric_that_overflows_is_400(world):
    stack, tokens, exp_id = world
    before = stack.snapshot()
    for metric in (b"1e400", b"-1e400", b"1" + b"0" * 400):
        body = b'{"num_examples": 3, "metrics": {"loss": ' + metric + b"}}"
        res = stack.api("POST", f"/v1/experiments/{exp_id}/rounds/0/evaluations", tokens["client"], body=body,
                        headers={"Content-Type": "application/json"})
        assert_refused(stack, res, 400, "NUMBER_OUT_OF_RANGE")
        assert res.json()["error"]["message"].startswith("metrics.loss: "), res.body
    assert stack.snapshot() == before


def _cursor(key: dict) -> str:
    return base64.urlsafe_b64encode(json.dumps(key).encode()).decode()


def test_cursor_with_unknown_keys_or_anothers_key_is_400(world):
    stack, tokens, exp_id = world
    other = stack.token(Role.DEVELOPER)
    stack.api("POST", "/v1/experiments", other, json_body={"name": "theirs"})
    stack.api("POST", "/v1/experiments", tokens["dev"], json_body={"name": "second"})
    page = stack.api("GET", "/v1/experiments", tokens["dev"], query={"limit": "1"}).json()
    real = json.loads(base64.urlsafe_b64decode(page["next_cursor"]))
    tampered = [
        _cursor({"foo": {"S": "x"}}),
        _cursor({**real, "extra": {"S": "x"}}),
        _cursor({**real, "owner_pk": {"S": "OWNER#someone-else"}}),
        _cursor({**real, "pk": {"N": "1"}}),
        _cursor({**real, "list_sk": {"S": "x" * 5000}}),
        _cursor([1, 2]), "not base64!", "eyJhIjog", "\ud800",
        _cursor({"pk": {"S": f"EXP#{exp_id}"}, "sk": {"S": "META"}}),
    ]
    before = stack.snapshot()
    for cursor in tampered:
        for path in ("/v1/experiments", f"/v1/experiments/{exp_id}/rounds"):
            res = stack.api("GET", path, tokens["dev"], query={"cursor": cursor})
            assert_refused(stack, res, 400, "INVALID_CURSOR")
    assert stack.snapshot() == before
    # The real cursor still pages on.
    res = stack.api("GET", "/v1/experiments", tokens["dev"], query={"limit": "1", "cursor": page["next_cursor"]})
    assert res.status == 200 and len(res.json()["experiments"]) == 1


def test_client_config_with_nan_is_400_and_lists_stay_strict_json(world):
    stack, tokens, _ = world
    before = stack.snapshot()
    res = stack.api("POST", "/v1/experiments", tokens["dev"], body=b'{"name": "x", "client_config": {"lr": NaN}}',
                    headers={"Content-Type": "application/json"})
    assert_refused(stack, res, 400, "NON_FINITE_NUMBER")
    assert stack.snapshot() == before
    for who in ("dev", "admin"):
        listing = stack.api("GET", "/v1/experiments", tokens[who])
        json.loads(listing.body, parse_constant=lambda name: pytest.fail(f"{name} in a response"))


def test_non_finite_value_already_stored_is_served_as_null(world):
    """Data written before strict parsing (or by a bug) never makes a response invalid JSON."""
    from fma.adapters.dynamo_models import ExperimentItem, exp_pk

    stack, tokens, exp_id = world
    ExperimentItem(exp_pk(exp_id), "META").update(actions=[ExperimentItem.client_config.set({"lr": float("nan")})])
    res = stack.api("GET", "/v1/experiments", tokens["dev"])
    assert res.status == 200
    body = json.loads(res.body, parse_constant=lambda name: pytest.fail(f"{name} in a response"))
    assert body["experiments"][0]["client_config"] == {"lr": None}


def test_limit_of_non_ascii_digits_is_400(world):
    stack, tokens, exp_id = world
    for limit, path in itertools.product(["\u0661\u0660", " 10", "1_0", "+5", "10.0", "²"],
                                         ("/v1/experiments", f"/v1/experiments/{exp_id}/rounds")):
        assert_refused(stack, stack.api("GET", path, tokens["dev"], query={"limit": limit}), 400, "INVALID_INPUT")


def test_error_messages_show_no_python_reprs(world):
    stack, tokens, exp_id = world
    answers = [
        stack.api("POST", "/v1/tokens", tokens["admin"], json_body={"role": "root"}),
        stack.api("PATCH", f"/v1/experiments/{exp_id}", tokens["dev"], json_body={"status": "DONE"}),
        stack.api("POST", "/v1/experiments", tokens["dev"], json_body={"name": "x", "bogus": 1}),
        stack.api("POST", "/v1/experiments", tokens["dev"], json_body={"name": "x", "rounds": {"q": 1}}),
        stack.api("POST", "/v1/experiments", tokens["client"], json_body={"name": "x"}),
    ]
    for res in answers:
        message = res.json()["error"]["message"]
        assert res.status in (400, 403) and "<" not in message and "[" not in message, message
    assert "analyst, developer" in answers[0].json()["error"]["message"]
    assert "PAUSED, RUNNING, STOPPED" in answers[1].json()["error"]["message"]


def test_null_for_an_optional_integer_takes_its_default_and_for_a_required_one_is_400(world):
    """`"size": null` made the upload request raise (found by schemathesis): null is never a 500."""
    stack, tokens, exp_id = world
    created = stack.api("POST", "/v1/experiments", tokens["dev"], json_body={"name": "n", "max_update_bytes": None})
    assert created.status == 201 and created.json()["experiment"]["max_update_bytes"] > 0
    enroll = stack.api("POST", f"/v1/experiments/{exp_id}/enrollment-tokens", tokens["dev"],
                       json_body={"expires_in_seconds": None, "max_uses": None})
    assert enroll.status == 201 and enroll.json()["expires_at"] > created.json()["experiment"]["created_at"]
    before = stack.snapshot()
    for path, body in (("rounds/1/updates", {"size": None, "sha256": "0" * 64}),
                       ("rounds/0/evaluations", {"num_examples": None, "metrics": {}})):
        res = stack.api("POST", f"/v1/experiments/{exp_id}/{path}", tokens["client"], json_body=body)
        assert_refused(stack, res, 400, "INVALID_INPUT")
    assert stack.snapshot() == before
