"""Model registry routes through the real handlers: versions, stages, pagination, refusals."""

from __future__ import annotations

import hashlib
import json

import pytest
from history_helpers import finished_experiment, initial_model, run_rounds, snapshot

from fma.domain.auth import Role

FIELDS = {"name", "version", "experiment_id", "round", "sha256", "size", "stage", "notes", "created_by",
          "created_at", "manifest"}


@pytest.fixture
def world(stack):
    dev = stack.token(Role.DEVELOPER, "dev-1")
    exp_id = finished_experiment(stack, dev, rounds=2)
    return stack, dev, exp_id


def post(stack, token, name, body):
    return stack.api("POST", f"/v1/registry/{name}/versions", token, json_body=body)


def test_version_records_the_model_and_the_manifest_it_points_at(world):
    stack, dev, exp_id = world
    res = post(stack, dev, "fraud", {"experiment_id": exp_id, "round": 2, "notes": "first"})
    assert res.status == 201, res.body
    v = res.json()
    assert set(v) >= FIELDS
    model = stack.get_object(f"models/{exp_id}/00000002.safetensors")
    manifest = stack.get_object(f"models/{exp_id}/00000002.manifest.json")
    assert (v["name"], v["version"], v["experiment_id"], v["round"]) == ("fraud", "1.0.0", exp_id, 2)
    assert v["sha256"] == hashlib.sha256(model).hexdigest() and v["size"] == len(model)
    assert v["manifest"] == {"key": f"models/{exp_id}/00000002.manifest.json",
                             "sha256": hashlib.sha256(manifest).hexdigest()}
    assert (v["stage"], v["notes"], v["created_by"]) == ("none", "first", "dev-1")
    detail = stack.api("GET", f"/v1/registry/fraud/versions/{v['version']}", dev).json()
    assert {k: detail[k] for k in FIELDS} == v
    assert detail["url"].startswith("http") and "00000002.safetensors" in detail["url"]
    assert "00000002.manifest.json" in detail["manifest_url"]


def test_default_version_is_the_next_patch_and_lists_page_newest_first(world):
    stack, dev, exp_id = world
    versions = [post(stack, dev, "m", {"experiment_id": exp_id, "round": 1}).json()["version"] for _ in range(2)]
    versions.append(post(stack, dev, "m", {"experiment_id": exp_id, "round": 2, "version": "2.0.0-rc.1"})
                    .json()["version"])
    versions.append(post(stack, dev, "m", {"experiment_id": exp_id, "round": 2}).json()["version"])
    assert versions == ["1.0.0", "1.0.1", "2.0.0-rc.1", "2.0.0"]
    seen, cursor = [], None
    while True:
        query = {"limit": "1", **({"cursor": cursor} if cursor else {})}
        page = stack.api("GET", "/v1/registry/m/versions", dev, query=query).json()
        seen += [v["version"] for v in page["versions"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == ["2.0.0", "2.0.0-rc.1", "1.0.1", "1.0.0"]
    post(stack, dev, "other", {"experiment_id": exp_id, "round": 1})
    names = stack.api("GET", "/v1/registry", stack.token(Role.ANALYST)).json()
    assert [(n["name"], n["versions"], n["latest_version"]) for n in names["names"]] == [
        ("m", 4, "2.0.0"), ("other", 1, "1.0.0")]


def test_one_production_version_per_name(world):
    stack, dev, exp_id = world
    post(stack, dev, "m", {"experiment_id": exp_id, "round": 1, "stage": "production"})
    post(stack, dev, "m", {"experiment_id": exp_id, "round": 2, "stage": "staging"})
    res = stack.api("PATCH", "/v1/registry/m/versions/1.0.1", dev, json_body={"stage": "production"})
    assert res.status == 200 and res.json()["stage"] == "production"
    stages = {v["version"]: v["stage"] for v in stack.api("GET", "/v1/registry/m/versions", dev).json()["versions"]}
    assert stages == {"1.0.0": "none", "1.0.1": "production"}
    # a new production version at creation demotes the current one too
    post(stack, dev, "m", {"experiment_id": exp_id, "round": 2, "version": "3.0.0", "stage": "production"})
    analyst = stack.token(Role.ANALYST)
    stages = {v["version"]: v["stage"] for v in stack.api("GET", "/v1/registry/m/versions", analyst).json()["versions"]}
    assert stages == {"1.0.0": "none", "1.0.1": "none", "3.0.0": "production"}
    assert stack.api("GET", "/v1/registry", analyst).json()["names"][0]["production_version"] == "3.0.0"
    # and leaving production clears the name's pointer
    stack.api("PATCH", "/v1/registry/m/versions/3.0.0", dev, json_body={"stage": "none"})
    assert stack.api("GET", "/v1/registry", analyst).json()["names"][0]["production_version"] is None


def test_experiment_detail_lists_its_registry_versions(world):
    stack, dev, exp_id = world
    post(stack, dev, "m", {"experiment_id": exp_id, "round": 2, "stage": "staging"})
    detail = stack.experiment(dev, exp_id)
    assert detail["registry"] == [{"name": "m", "version": "1.0.0", "round": 2, "stage": "staging"}]


def _other_world(stack):
    """A second developer with a finished experiment and a name of its own."""
    other = stack.token(Role.DEVELOPER, "dev-2")
    theirs = finished_experiment(stack, other, rounds=1, clients=1)
    assert post(stack, other, "theirs", {"experiment_id": theirs, "round": 1}).status == 201
    return other, theirs


BAD = [
    # (id, who, method, path, body, query, status, code)
    ("invalid-name", "dev", "POST", "/v1/registry/-bad/versions", {"round": 1}, None, 400, "INVALID_REGISTRY_NAME"),
    ("name-too-long", "dev", "POST", f"/v1/registry/{'n' * 129}/versions", {"round": 1}, None, 400,
     "INVALID_REGISTRY_NAME"),
    ("semver-two-parts", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "version": "1.0"}, None, 400,
     "INVALID_VERSION"),
    ("semver-leading-zero", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "version": "01.0.0"}, None, 400,
     "INVALID_VERSION"),
    ("semver-v-prefix", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "version": "v1.0.0"}, None, 400,
     "INVALID_VERSION"),
    ("semver-number", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "version": 1}, None, 400,
     "INVALID_VERSION"),
    ("semver-empty-pre", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "version": "1.0.0-"}, None, 400,
     "INVALID_VERSION"),
    ("duplicate-version", "dev", "POST", "/v1/registry/m/versions", {"round": 2, "version": "1.0.0"}, None, 409,
     "VERSION_EXISTS"),
    ("open-round", "dev", "POST", "/v1/registry/m/versions", {"round": 3}, None, 409, "ROUND_NOT_PUBLISHED"),
    ("no-such-round", "dev", "POST", "/v1/registry/m/versions", {"round": 40}, None, 409, "ROUND_NOT_PUBLISHED"),
    ("round-zero", "dev", "POST", "/v1/registry/m/versions", {"round": 0}, None, 400, "INVALID_ROUND"),
    ("round-bool", "dev", "POST", "/v1/registry/m/versions", {"round": True}, None, 400, "INVALID_ROUND"),
    ("round-string", "dev", "POST", "/v1/registry/m/versions", {"round": "2"}, None, 400, "INVALID_ROUND"),
    ("missing-round", "dev", "POST", "/v1/registry/m/versions", {}, None, 400, "MISSING_FIELD"),
    ("unknown-field", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "sha256": "0" * 64}, None, 400,
     "UNKNOWN_FIELD"),
    ("invalid-stage", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "stage": "prod"}, None, 400,
     "INVALID_STAGE"),
    ("notes-too-long", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "notes": "x" * 2001}, None, 400,
     "INVALID_NOTES"),
    ("not-an-object", "dev", "POST", "/v1/registry/m/versions", [1], None, 400, "INVALID_BODY"),
    ("others-experiment", "dev", "POST", "/v1/registry/m/versions", {"round": 1, "experiment_id": "{theirs}"}, None,
     404, "EXPERIMENT_NOT_FOUND"),
    ("others-name", "dev", "POST", "/v1/registry/theirs/versions", {"round": 1}, None, 403,
     "REGISTRY_NAME_FORBIDDEN"),
    ("analyst-creates", "analyst", "POST", "/v1/registry/m/versions", {"round": 1}, None, 403, "FORBIDDEN_ROLE"),
    ("client-reads", "client", "GET", "/v1/registry", None, None, 403, "FORBIDDEN_ROLE"),
    ("bad-cursor", "dev", "GET", "/v1/registry/m/versions", None, {"cursor": "!!"}, 400, "INVALID_CURSOR"),
    ("foreign-cursor", "dev", "GET", "/v1/registry/m/versions", None, {"cursor": "{names_cursor}"}, 400,
     "INVALID_CURSOR"),
    ("bad-limit", "dev", "GET", "/v1/registry", None, {"limit": "0"}, 400, "INVALID_INPUT"),
    ("unknown-name", "analyst", "GET", "/v1/registry/nope/versions", None, None, 404, "REGISTRY_NAME_NOT_FOUND"),
    ("unknown-version", "analyst", "GET", "/v1/registry/m/versions/9.9.9", None, None, 404, "VERSION_NOT_FOUND"),
    ("get-invalid-version", "analyst", "GET", "/v1/registry/m/versions/latest", None, None, 400, "INVALID_VERSION"),
    ("patch-immutable-field", "dev", "PATCH", "/v1/registry/m/versions/1.0.0", {"stage": "none", "round": 2}, None,
     400, "UNKNOWN_FIELD"),
    ("patch-invalid-stage", "dev", "PATCH", "/v1/registry/m/versions/1.0.0", {"stage": "archived"}, None, 400,
     "INVALID_STAGE"),
    ("patch-missing-stage", "dev", "PATCH", "/v1/registry/m/versions/1.0.0", {}, None, 400, "MISSING_FIELD"),
    ("patch-unknown-version", "dev", "PATCH", "/v1/registry/m/versions/1.2.3", {"stage": "staging"}, None, 404,
     "VERSION_NOT_FOUND"),
    ("patch-others-name", "dev", "PATCH", "/v1/registry/theirs/versions/1.0.0", {"stage": "production"}, None, 403,
     "REGISTRY_NAME_FORBIDDEN"),
    ("patch-by-analyst", "analyst", "PATCH", "/v1/registry/m/versions/1.0.0", {"stage": "production"}, None, 403,
     "FORBIDDEN_ROLE"),
]


def test_at_least_thirty_registry_refusals():
    assert len({c[0] for c in BAD}) == len(BAD) >= 30


@pytest.mark.parametrize("case", BAD, ids=[c[0] for c in BAD])
def test_bad_registry_input_is_refused_and_changes_nothing(stack, case):
    # Given a name with version 1.0.0 and an open round 3, and another developer's name
    dev = stack.token(Role.DEVELOPER, "dev-1")
    exp_id = stack.create_experiment(dev, initial_model(), rounds={"min_updates": 1, "total_rounds": 3})
    run_rounds(stack, exp_id, stack.enroll(dev, exp_id, 1), 1, 2)
    assert post(stack, dev, "m", {"experiment_id": exp_id, "round": 1}).status == 201
    _, theirs = _other_world(stack)
    names_cursor = stack.api("GET", "/v1/registry", dev, query={"limit": "1"}).json()["next_cursor"]
    tokens = {"dev": dev, "analyst": stack.token(Role.ANALYST), "client": stack.enroll(dev, exp_id, 1)[0][1]}
    _, who, method, path, body, query, status, code = case
    if isinstance(body, dict) and method == "POST":
        body = {"experiment_id": exp_id, **body}
        body = json.loads(json.dumps(body).replace("{theirs}", theirs))
    if query and query.get("cursor") == "{names_cursor}":
        query = {"cursor": names_cursor}
    before = snapshot(stack)
    # When the request is refused
    res = stack.api(method, path, tokens[who], json_body=body, query=query)
    # Then with its status and code, and nothing in the table or the bucket changed
    assert res.status == status, res.body
    assert res.json()["error"]["code"] == code and res.json()["error"]["message"]
    assert snapshot(stack) == before
