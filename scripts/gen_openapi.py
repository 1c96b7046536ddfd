"""Writes functions/api/openapi.json, the OpenAPI 3.1 document of the v1 API (served at
GET /v1/openapi.json).

Why a script and not powertools' generator: that one needs pydantic models on every route
and request validation, which the API function avoids for its cold start. The shapes here
follow docs/api-contract.md and the services in shared/fma/services; tests/unit/test_openapi.py
checks that the committed file is this script's output and that it names every route.

    python scripts/gen_openapi.py           # rewrite the file
    python scripts/gen_openapi.py --check   # exit 1 if the file is stale
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "functions" / "api" / "openapi.json"
Schema = dict[str, Any]

EXPERIMENT_STATUSES = ["PENDING_MODEL", "RUNNING", "PAUSED", "COMPLETED", "STOPPED", "FAILED"]
ROUND_STATES = ["OPEN", "SEALED", "AGGREGATING", "PUBLISHED", "FAILED"]
UPDATE_STATUSES = ["UPLOADING", "ACCEPTED", "REJECTED", "LATE", "APPLIED", "FAILED"]
ERROR_TEXT = {
    400: "Invalid input: malformed or non-strict JSON (NaN, Infinity, numbers out of range, duplicate keys, "
         "nesting deeper than 32, invalid UTF-8), unknown or missing field, value out of range, bad cursor.",
    401: "Missing, unknown or expired token.",
    403: "The token's role may not do this, the token was revoked (TOKEN_REVOKED, CLIENT_REVOKED), or an "
         "enrollment token is used up (ENROLLMENT_EXHAUSTED).",
    404: "No such experiment, round, model, client or token visible to this token.",
    409: "Conflict with the current state (closed round, wrong status, duplicate, or a request with the same "
         "Idempotency-Key still running: IDEMPOTENCY_IN_PROGRESS).",
    410: "The experiment has ended.",
    413: "Body too large: JSON over 256 KiB, a direct upload over its limit, or the gateway's.",
    422: "This Idempotency-Key was used for a different request (IDEMPOTENCY_KEY_REUSED).",
    429: "Throttled by the API stage.",
}


def ref(name: str) -> Schema:
    return {"$ref": f"#/components/schemas/{name}"}


def nullable(schema: Schema) -> Schema:
    if isinstance(schema.get("type"), str):
        return {**schema, "type": [schema["type"], "null"]}
    return {"anyOf": [schema, {"type": "null"}]}


def obj(required: dict[str, Schema], optional: dict[str, Schema] | None = None, *, closed: bool = False,
        description: str | None = None) -> Schema:
    """An object schema; `closed` (request bodies) refuses unknown fields as the server does."""
    out: Schema = {"type": "object", "properties": {**required, **(optional or {})}}
    if required:
        out["required"] = list(required)
    if closed:
        out["additionalProperties"] = False
    if description:
        out["description"] = description
    return out


STRING, INT, NUMBER, TIMESTAMP = {"type": "string"}, {"type": "integer"}, {"type": "number"}, {
    "type": "string", "description": "ISO 8601 UTC timestamp"}
COUNT = {"type": "integer", "minimum": 0}
SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
TOKEN_ID = {**SHA256, "description": "a token's public id (the sha256 it is stored under; no credential)"}
NAME = {"type": "string", "minLength": 1, "maxLength": 200}
METRICS = {"type": "object", "additionalProperties": {"type": "number"}}

POLICY = {
    "min_updates": {"anyOf": [{"type": "integer", "minimum": 1, "maximum": 100_000}, {"const": "all"}],
                    "default": 2},
    "total_rounds": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 10},
    "deadline_seconds": nullable({"type": "integer", "minimum": 1, "maximum": 30 * 86400}),
    "on_deadline": {"enum": ["aggregate", "extend", "fail"], "default": "aggregate"},
    "min_updates_at_deadline": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1},
}
MODE = {"enum": ["sync", "async"], "default": "sync",
        "description": "async (docs/async.md): buffers of buffer_size updates publish versions (FedBuff)"}
STALENESS = {"oneOf": [
    obj({"fn": {"const": "constant"}}, closed=True),
    obj({"fn": {"const": "polynomial"}}, {"exponent": {"type": "number", "minimum": 0, "maximum": 10,
                                                      "default": 0.5}}, closed=True),
    obj({"fn": {"const": "hinge"}, "a": {"type": "number", "minimum": 0, "maximum": 1000},
         "b": {"type": "number", "minimum": 0, "maximum": 1000}}, closed=True),
], "description": "s(tau): 1; (1 + tau)^-exponent; 1 if tau <= b else 1 / (a (tau - b) + 1)"}
ASYNC_POLICY = {
    "buffer_size": {"type": "integer", "minimum": 1, "maximum": 100_000,
                    "description": "updates per new version (required in async mode)"},
    "max_staleness": {"type": "integer", "minimum": 0, "maximum": 1000, "default": 10},
    "max_wait_seconds": nullable({"type": "integer", "minimum": 1, "maximum": 30 * 86400}),
    "min_buffer": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1},
    "staleness": STALENESS,
    "server_learning_rate": {"type": "number", "exclusiveMinimum": 0, "maximum": 1000, "default": 1.0},
}
ASYNC_VIEW = obj({"mode": {"const": "async"}, "total_rounds": POLICY["total_rounds"], **ASYNC_POLICY},
                 description="An async policy, every field filled in.")
SYNC_VIEW = obj(POLICY, description="A sync policy (no `mode` key), every field filled in.")

UPDATE_LIMITS = {
    "max_num_examples": {"type": "integer", "minimum": 1, "maximum": 10**15, "default": 1_000_000},
    "max_weight_share": nullable({"type": "number", "exclusiveMinimum": 0, "maximum": 1}),
    "max_update_norm": nullable({"type": "number", "exclusiveMinimum": 0}),
}

AGGREGATION = {  # issue 14: where a round aggregates, and the shape of its arithmetic (docs/scale.md)
    "plan": {"enum": ["auto", "single", "fanout"], "default": "auto"},
    "partition_updates": {"type": "integer", "minimum": 1, "maximum": 100_000, "default": 1000},
    "shard_bytes": {"type": "integer", "minimum": 65536, "maximum": 4 << 30, "default": 64 << 20},
}

SCHEMAS: dict[str, Schema] = {
    "Error": obj({"error": obj({"code": {**STRING, "description": "stable machine code, e.g. ROUND_CLOSED"},
                                "message": STRING, "details": {"type": "object"}})},
                 description="Every 4xx (and 5xx) body: never a stack trace."),
    "PresignedPost": obj({"url": STRING, "fields": {"type": "object", "additionalProperties": STRING}},
                         description="A presigned S3 POST: send `fields` then the file as multipart form data."),
    "Strategy": obj({"name": STRING, "params": {"type": "object"}}),
    "RoundPolicy": obj({}, {**POLICY, "mode": MODE, **ASYNC_POLICY}, closed=True,
                       description="How rounds seal; every field has a default. Sync fields (min_updates, "
                                   "deadline_seconds, on_deadline, min_updates_at_deadline) and async ones "
                                   "(buffer_size ... server_learning_rate) exclude each other: 400."),
    "RoundPolicyView": {"oneOf": [SYNC_VIEW, ASYNC_VIEW], "description": "The stored policy."},
    "UpdateLimits": obj({}, UPDATE_LIMITS, closed=True, description="What one client may count (docs/weighting.md)."),
    "UpdateLimitsView": obj(UPDATE_LIMITS, description="The stored limits, every field filled in."),
    "Aggregation": obj({}, AGGREGATION, closed=True, description="Plan and partitioning (docs/scale.md)."),
    "AggregationView": obj(AGGREGATION, description="The stored aggregation settings, every field filled in."),
    "TensorSpec": obj({"name": STRING, "dtype": STRING, "shape": {"type": "array", "items": COUNT}}),
    "Experiment": obj({
        "id": STRING, "name": STRING, "owner": STRING, "status": {"enum": EXPERIMENT_STATUSES},
        "strategy": ref("Strategy"), "rounds": ref("RoundPolicyView"), "client_config": {"type": "object"},
        "max_update_bytes": INT, "update_limits": ref("UpdateLimitsView"), "current_round": COUNT,
        "aggregation": ref("AggregationView"),
        "model_version": nullable(COUNT),
        "model_spec": nullable({"type": "array", "items": ref("TensorSpec")}),
        "model_sha256": nullable(STRING), "model_error": nullable(STRING), "clients": COUNT,
        "expected_clients": COUNT, "shards": {"type": "integer", "minimum": 1, "maximum": 128},
        "created_at": TIMESTAMP, "updated_at": TIMESTAMP,
        "archived": {"type": "boolean", "description": "hidden from lists unless `archived=true` is asked"},
    }),
    "UpdateEntry": obj({"client_id": STRING, "status": {"enum": UPDATE_STATUSES}, "reason": nullable(STRING),
                        "num_examples": nullable(INT), "metrics": METRICS,
                        "applied_in": {**nullable(COUNT), "description": "async mode: the version whose buffer "
                                       "this update joined (null until accepted, and in sync mode)"}}),
    "BufferEntry": obj({"client_id": STRING, "round": COUNT, "base_version": COUNT, "staleness": COUNT,
                        "staleness_weight": NUMBER, "num_examples": nullable(INT),
                        "counted_examples": nullable(NUMBER), "weight": nullable(NUMBER),
                        "effective_weight": nullable(NUMBER)},
                       description="One update in the buffer that published a version (docs/async.md)"),
    "Round": obj({
        "round": COUNT, "state": {"enum": ROUND_STATES}, "accepted": COUNT, "rejected": COUNT, "late": COUNT,
        "min_updates": {**STRING, "description": "updates needed to seal (an integer as a string)"},
        "deadline": nullable(TIMESTAMP), "opened_at": TIMESTAMP, "sealed_at": nullable(TIMESTAMP),
        "published_at": nullable(TIMESTAMP), "seal_seconds": nullable(NUMBER),
        "aggregation_seconds": nullable(NUMBER), "metrics": METRICS, "evaluation_metrics": METRICS,
        "evaluations": COUNT, "model_sha256": nullable(STRING), "privacy": nullable({"type": "object"}),
        "manifest_sha256": {**nullable(STRING), "description": "sha256 of the round's manifest, kept at publish"},
        "reason": nullable(STRING), "attempts": COUNT,
        "sealed_by": {**nullable({"enum": ["quota", "deadline"]}), "description": "what sealed the round"},
        "aggregation_started_at": {**nullable(TIMESTAMP), "description": "when the latest attempt took its lease"},
        "lease_expires_at": {**nullable(TIMESTAMP), "description": "while SEALED or AGGREGATING"},
        "last_error": {**nullable(STRING), "description": "`attempt N: ...` of the latest failed attempt"},
        "age_seconds": {**nullable(NUMBER), "description": "seconds since the seal while waiting for its model"},
        "expected_seconds": {**NUMBER, "description": "how long a round may wait for its model (one lease)"},
        "stuck": {"type": "boolean",
                  "description": "waiting longer than expected_seconds, or an attempt failed"},
        "refused_paused": {**COUNT, "description": "clients whose uploads were refused while paused"},
        "refused": {"type": "array", "items": ref("Refusal")},
        "updates": {"type": "array", "items": ref("UpdateEntry"),
                    "description": "a client sees only its own entries"},
        "client_evaluations": {"type": "array", "items": ref("ClientEvaluation"),
                               "description": "a client sees only its own entries"},
        "plan": {**nullable({"enum": ["single", "fanout"]}), "description": "how the round aggregated"},
        "cost": {**nullable({"type": "object"}), "description": "usage and USD at list prices (docs/scale.md)"},
        "buffer": {**nullable({"type": "array", "items": ref("BufferEntry")}),
                   "description": "async mode, once published: the buffer of this version (a client sees its own "
                                  "entries); null in sync mode"},
    }),
    "Refusal": obj({"client_id": STRING, "code": {**STRING, "description": "EXPERIMENT_NOT_RUNNING"},
                    "reason": STRING, "count": COUNT, "first_at": TIMESTAMP, "last_at": TIMESTAMP},
                   description="Uploads of one client the API refused in this round (during a pause)."),
    "ClientEvaluation": obj({"client_id": STRING, "num_examples": COUNT, "metrics": METRICS}),
    "Attention": obj({"code": {"const": "ROUND_STUCK"}, "round": COUNT, "state": {"enum": ROUND_STATES},
                      "age_seconds": NUMBER, "attempts": COUNT, "last_error": nullable(STRING), "message": STRING}),
    "LatestMetrics": obj({"round": {**COUNT, "description": "the latest published model"},
                          "training": METRICS, "evaluation_round": nullable(COUNT), "evaluation": METRICS}),
    "ExperimentListItem": {"allOf": [ref("Experiment"), obj({
        "current_round_state": nullable({"enum": ROUND_STATES}),
        "attention": {**nullable(ref("Attention")), "description": "set while the current round is stuck"},
        "latest_metrics": nullable(ref("LatestMetrics")),
    })]},
    "ModelInfo": obj({
        "round": {**nullable(COUNT), "description": "the round to train for; null once the experiment ended"},
        "version": COUNT, "sha256": SHA256, "status": {"enum": EXPERIMENT_STATUSES},
        "mode": {"enum": ["sync", "async"], "description": "async: train on the newest version, no quota to wait for"},
        "url": {**STRING, "description": "presigned GET of the model file"}, "client_config": {"type": "object"},
    }),
    "PublishedModel": obj({"round": COUNT, "sha256": nullable(STRING), "size": nullable(COUNT), "url": STRING,
                           "filename": {**STRING, "description": "<experiment-name>-round-<n>.safetensors"}}),
}


STAGES = ["none", "staging", "production"]
ROUND_REF = obj({"experiment_id": STRING, "round": COUNT}, description="A round of an experiment")
SEMVER = {"type": "string", "maxLength": 64, "description": "a semantic version (semver.org), e.g. 1.2.3"}
SCHEMAS.update({
    "RoundRef": ROUND_REF,
    "RegistryVersion": obj({
        "name": STRING, "version": SEMVER, "experiment_id": STRING, "round": COUNT, "sha256": SHA256,
        "size": COUNT, "stage": {"enum": STAGES}, "notes": nullable(STRING), "created_by": STRING,
        "created_at": TIMESTAMP, "manifest": obj({"key": STRING, "sha256": SHA256}),
    }, description="An immutable named model version; only its stage changes."),
    "RegistryName": obj({"name": STRING, "owner": STRING, "versions": COUNT, "latest_version": nullable(SEMVER),
                         "production_version": nullable(SEMVER), "created_at": TIMESTAMP,
                         "updated_at": TIMESTAMP}),
})
SCHEMAS["Experiment"]["properties"].update({
    "parent": {**nullable(ref("RoundRef")), "description": "the round this fork started from (detail only)"},
    "children": {"type": "array", "items": ref("RoundRef"), "description": "forks of this experiment (detail)"},
    "registry": {"type": "array", "description": "its registry versions (detail)", "items": obj(
        {"name": STRING, "version": SEMVER, "round": COUNT, "stage": {"enum": STAGES}})},
})


def registry_paths() -> dict[str, Schema]:
    """Issue 16: the model registry."""
    name = {"name": "name", "in": "path", "required": True,
            "schema": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"}}
    version = {"name": "version", "in": "path", "required": True, "schema": SEMVER}
    create = obj({"experiment_id": STRING, "round": {"type": "integer", "minimum": 1}}, {
        "version": {**SEMVER, "description": "default: the next patch of the highest version (first: 1.0.0)"},
        "stage": {"enum": STAGES, "default": "none"}, "notes": nullable({"type": "string", "maxLength": 2000}),
    }, closed=True)
    page = obj({"name": STRING, "versions": {"type": "array", "items": ref("RegistryVersion")},
                "next_cursor": nullable(STRING)})
    detail = {"allOf": [ref("RegistryVersion"), obj({"url": STRING, "manifest_url": STRING})]}
    artifacts = obj({"round": COUNT, "objects": {"type": "array", "items": obj(
        {"key": STRING, "version_id": nullable(STRING), "url": STRING})}})
    return {
        "/v1/experiments/{experiment_id}/rounds/{n}/artifacts": {"get": op(
            "getRoundArtifacts", "Presigned downloads of a round's model, manifest, state and pinned inputs "
            "(the experiment's developer; for fma verify --url)",
            {**ok(200, "The objects", artifacts), **errors(400, *AUTH, 404)}, tag="registry",
            params=[EXP_ID, ROUND_N])},
        "/v1/registry": {"get": op(
            "listRegistryNames", "Registered model names (developer, analyst, admin)",
            {**ok(200, "One page", obj({"names": {"type": "array", "items": ref("RegistryName")},
                                        "next_cursor": nullable(STRING)})), **errors(400, *AUTH)},
            tag="registry", params=LIST_PARAMS)},
        "/v1/registry/{name}/versions": {
            "post": op("createRegistryVersion", "Register a published round (the experiment's developer)",
                       {**ok(201, "Registered", ref("RegistryVersion")), **errors(400, *AUTH, 404, 409, 413)},
                       tag="registry", params=[name], body=json_body(create)),
            "get": op("listRegistryVersions", "Versions of a name, highest first",
                      {**ok(200, "One page", page), **errors(400, *AUTH, 404)}, tag="registry",
                      params=[name, *LIST_PARAMS]),
        },
        "/v1/registry/{name}/versions/{version}": {
            "get": op("getRegistryVersion", "One version with presigned downloads of its model and manifest",
                      {**ok(200, "The version", detail), **errors(400, *AUTH, 404)}, tag="registry",
                      params=[name, version]),
            "patch": op("setRegistryStage", "Move a version to a stage; one production version per name",
                        {**ok(200, "The version after the change", ref("RegistryVersion")),
                         **errors(400, *AUTH, 404, 409, 413)}, tag="registry", params=[name, version],
                        body=json_body(obj({"stage": {"enum": STAGES}}, closed=True))),
        },
    }


def errors(*codes: int) -> dict[str, Schema]:
    return {str(c): {"$ref": f"#/components/responses/E{c}"} for c in codes}


def json_body(schema: Schema, required: bool = True) -> Schema:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def ok(status: int, description: str, schema: Schema | None = None, headers: Schema | None = None) -> Schema:
    out: Schema = {"description": description}
    if schema is not None:
        out["content"] = {"application/json": {"schema": schema}}
    if headers:
        out["headers"] = headers
    return {str(status): out}


def op(op_id: str, summary: str, responses: dict[str, Schema], *, tag: str, params: list[Schema] | None = None,
       body: Schema | None = None, public: bool = False) -> Schema:
    out: Schema = {"operationId": op_id, "summary": summary, "tags": [tag]}
    if params:
        out["parameters"] = params
    if body:
        out["requestBody"] = body
    out["responses"] = responses
    if public:
        out["security"] = []
    return out


EXP_ID = {"$ref": "#/components/parameters/ExperimentId"}
ROUND_N = {"$ref": "#/components/parameters/RoundNumber"}
LIST_PARAMS = [{"$ref": "#/components/parameters/Limit"}, {"$ref": "#/components/parameters/Cursor"}]
LIST_FILTERS = [
    {"name": "status", "in": "query", "required": False, "schema": STRING,
     "description": f"one or more of {', '.join(EXPERIMENT_STATUSES)}, comma-separated"},
    {"name": "strategy", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 64},
     "description": "a known strategy name"},
    {"name": "q", "in": "query", "required": False, "schema": {"type": "string", "maxLength": 200},
     "description": "part of the name, any case"},
]
BINARY = {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}},
    "description": "A safetensors file (see docs/api-contract.md for the update metadata)."}
AUTH = (401, 403, 429)
ETAG = {"ETag": {"required": True, "schema": STRING, "description": 'the model\'s "<sha256>"'}}
RETRY_AFTER = {"Retry-After": {"required": False, "schema": {"type": "string", "pattern": "^[0-9]+$"},
                               "description": "seconds to wait before polling again (nothing changed yet)"}}


def paths() -> dict[str, Schema]:
    upload_request = obj({"size": {"type": "integer", "minimum": 1}, "sha256": SHA256}, closed=True)
    evaluation = obj({"num_examples": {"type": "integer", "minimum": 1, "maximum": 10**12}, "metrics": METRICS},
                     closed=True)
    create = obj({"name": NAME}, {
        "strategy": {"anyOf": [STRING, obj({"name": STRING}, {"params": {"type": "object"}}, closed=True)],
                     "default": "fedavg", "description": "fedavg, fedprox, fedadam, krum, ... (or a plugin)"},
        "rounds": nullable(ref("RoundPolicy")), "client_config": nullable({"type": "object"}),
        "max_update_bytes": {"type": "integer", "minimum": 1}, "update_limits": nullable(ref("UpdateLimits")),
        "aggregation": nullable(ref("Aggregation")),
        "expected_clients": nullable({"type": "integer", "minimum": 1, "maximum": 10_000_000, "description":
                                      "the clients it expects (default: the deployment's); fixes its write spread "
                                      "(shards = ceil(expected_clients / 8), at most 128: docs/scale.md)"}),
        "from": {**obj({"experiment_id": STRING, "round": COUNT}, closed=True),
                 "description": "fork: start RUNNING from this published round's model (no upload)"},
        "initial_model": {**obj({"size": {"type": "integer", "minimum": 1}, "sha256": SHA256}, closed=True),
                          "description": "the initial model to upload: from the multipart threshold up, `upload` "
                                         "is a multipart plan; ingest refuses other bytes"},
    }, closed=True)
    return {
        "/v1/health": {"get": op("health", "Liveness check", ok(200, "Up", obj({"status": {"const": "ok"}})),
                                 tag="meta", public=True)},
        "/v1/openapi.json": {"get": op("openapi", "This document", ok(200, "OpenAPI 3.1", {"type": "object"}),
                                       tag="meta", public=True)},
        "/v1/tokens": {"post": op(
            "createToken", "Mint a developer or analyst token (admin)",
            {**ok(201, "Minted; the token is shown once", obj({
                "token": STRING, "token_id": TOKEN_ID, "role": {"enum": ["developer", "analyst"]},
                "principal_id": STRING, "expires_at": nullable(TIMESTAMP)})), **errors(400, *AUTH, 413)},
            tag="tokens", body=json_body(obj({"role": {"enum": ["developer", "analyst"]}}, {
                "name": nullable({"type": "string", "maxLength": 200}),
                "expires_in_seconds": nullable({"type": "integer", "minimum": 60, "maximum": 10 * 365 * 86400}),
            }, closed=True)))},
        "/v1/tokens/{token_id}": {"delete": op(
            "revokeToken", "Revoke a token (admin: any; developer: the enrollment tokens it minted)",
            {**ok(200, "Revoked (again: still 200)", obj({"token_id": TOKEN_ID, "role": STRING,
                                                         "revoked": {"const": True}})),
             **errors(*AUTH, 404)}, tag="tokens",
            params=[{"name": "token_id", "in": "path", "required": True, "schema": TOKEN_ID}])},
        "/v1/experiments": {
            "post": op("createExperiment", "Create an experiment (developer, admin)",
                       {**ok(201, "Created; upload the initial model next (a fork: upload is null)", obj({
                           "experiment": ref("Experiment"), "upload": nullable(ref("Upload"))})),
                        **errors(400, *AUTH, 404, 409, 413)}, tag="experiments", body=json_body(create)),
            "get": op("listExperiments", "Experiments visible to the token (developer: its own), newest first",
                      {**ok(200, "One page (with filters, possibly short: follow next_cursor)", obj({
                          "experiments": {"type": "array", "items": ref("ExperimentListItem")},
                          "next_cursor": nullable(STRING)})), **errors(400, *AUTH)},
                      tag="experiments", params=[*LIST_PARAMS, *LIST_FILTERS, {
                          "name": "archived", "in": "query", "required": False,
                          "schema": {"enum": ["true", "false"], "default": "false"},
                          "description": "true: list the archived experiments (and only them)"}]),
        },
        "/v1/experiments/{experiment_id}": {
            "get": op("getExperiment", "One experiment", {**ok(200, "The experiment", ref("Experiment")),
                                                          **errors(*AUTH, 404)}, tag="experiments", params=[EXP_ID]),
            "patch": op("patchExperiment", "Pause, resume or stop; archive or unarchive (its developer, admin)",
                        {**ok(200, "The experiment after the change", ref("Experiment")),
                         **errors(400, *AUTH, 404, 409, 413)}, tag="experiments", params=[EXP_ID],
                        body=json_body({**obj({}, {"status": {"enum": ["PAUSED", "RUNNING", "STOPPED"]},
                                                   "archived": {"type": "boolean"}}, closed=True),
                                        "minProperties": 1})),
        },
        "/v1/experiments/{experiment_id}/model": {
            "put": op("putInitialModel", "Upload a small initial model through the API",
                      {**ok(202, "Stored; ingest validates it", obj({"status": {"const": "UPLOADING"},
                                                                     "key": STRING})),
                       **errors(400, *AUTH, 404, 409, 413)}, tag="experiments", params=[EXP_ID], body=BINARY),
            "get": op("getModel", "The current global model and the round to train for (client, developer)",
                      {**ok(200, "The model", ref("ModelInfo"), ETAG),
                       "304": {"description": "Unchanged since If-None-Match", "headers": {**ETAG, **RETRY_AFTER}},
                       **errors(*AUTH, 404, 409)}, tag="participation",
                      params=[EXP_ID, {"name": "If-None-Match", "in": "header", "required": False,
                                       "schema": STRING, "description": 'a previous ETag, "<sha256>"'}]),
        },
        "/v1/experiments/{experiment_id}/enrollment-tokens": {"post": op(
            "createEnrollmentToken", "A token that lets clients register (the experiment's developer)",
            {**ok(201, "Minted; shown once", obj({"token": STRING, "token_id": TOKEN_ID, "expires_at": TIMESTAMP,
                                                  "max_uses": nullable(INT)})),
             **errors(400, *AUTH, 404, 409, 413)}, tag="experiments", params=[EXP_ID],
            body=json_body(obj({}, {
                "expires_in_seconds": nullable({"type": "integer", "minimum": 60, "maximum": 90 * 86400,
                                                "default": 86400}),
                "max_uses": nullable({"type": "integer", "minimum": 1, "maximum": 1_000_000})}, closed=True),
                required=False))},
        "/v1/experiments/{experiment_id}/clients": {"post": op(
            "registerClient", "Register a client (enrollment token)",
            {**ok(201, "Registered; the client token is shown once", obj({
                "client_id": STRING, "token": STRING, "token_id": TOKEN_ID,
                "expires_at": {**TIMESTAMP, "description": "also ends a grace period after the experiment ends"}})),
             **errors(400, *AUTH, 404, 409, 413)}, tag="participation", params=[EXP_ID],
            body=json_body(obj({}, {"name": nullable({"type": "string", "maxLength": 200})}, closed=True),
                           required=False))},
        "/v1/experiments/{experiment_id}/clients/{client_id}": {"delete": op(
            "revokeClient", "Revoke a client: its token is refused and it leaves the `all` quota (its developer)",
            {**ok(200, "Revoked (again: still 200)", obj({"client_id": STRING, "token_id": nullable(TOKEN_ID),
                                                         "revoked": {"const": True}})),
             **errors(*AUTH, 404)}, tag="participation",
            params=[EXP_ID, {"name": "client_id", "in": "path", "required": True,
                             "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}}])},
        "/v1/experiments/{experiment_id}/rounds": {"get": op(
            "listRounds", "Rounds, newest page first", {
                **ok(200, "One page", obj({"rounds": {"type": "array", "items": ref("Round")},
                                           "next_cursor": nullable(STRING)})), **errors(400, *AUTH, 404)},
            tag="rounds", params=[EXP_ID, *LIST_PARAMS])},
        "/v1/experiments/{experiment_id}/rounds/{n}": {"get": op(
            "getRound", "One round (a client sees only its own updates)",
            {**ok(200, "The round (`Retry-After` while it is in progress)", ref("Round"), RETRY_AFTER),
             **errors(400, *AUTH, 404)}, tag="rounds",
            params=[EXP_ID, ROUND_N])},
        "/v1/experiments/{experiment_id}/rounds/{n}/updates": {
            "post": op("requestUpload", "A presigned POST for a large update (client)",
                       {**ok(201, "Upload the file to `upload`", obj({"update_id": STRING,
                                                                     "upload": ref("Upload")})),
                        **errors(400, *AUTH, 404, 409, 410, 413)}, tag="participation", params=[EXP_ID, ROUND_N],
                       body=json_body(upload_request)),
            "put": op("putUpdate", "Upload a small update through the API (client)",
                      {**ok(202, "Stored; validation follows", obj({"update_id": STRING,
                                                                    "status": {"const": "UPLOADING"}})),
                       **errors(400, *AUTH, 404, 409, 410, 413)}, tag="participation", params=[EXP_ID, ROUND_N],
                      body=BINARY),
        },
        "/v1/experiments/{experiment_id}/rounds/{n}/evaluations": {"post": op(
            "postEvaluation", "Metrics of the model published after round n on local data (client)",
            {**ok(201, "Recorded", obj({"round": COUNT, "client_id": STRING})),
             **errors(400, *AUTH, 404, 409, 410, 413)}, tag="participation", params=[EXP_ID, ROUND_N],
            body=json_body(evaluation))},
        "/v1/experiments/{experiment_id}/models/{n}": {"get": op(
            "getPublishedModel", "A published model (developer, analyst, admin); n=0 is the initial model",
            {**ok(200, "Its presigned URL", ref("PublishedModel")), **errors(400, *AUTH, 404)},
            tag="rounds", params=[EXP_ID, ROUND_N])},
        **registry_paths(),
        **multipart_paths(),
    }


CREATING = ("createToken", "createExperiment", "createEnrollmentToken", "registerClient", "requestUpload",
            "postEvaluation", "completeUpdate", "completeInitialModel")


PART_URL = obj({"part_number": COUNT, "size": COUNT, "url": {**STRING, "description": "PUT the part's bytes here"}})
SCHEMAS.update({
    "MultipartPlan": obj({
        "upload_id": STRING, "part_size": COUNT, "part_count": COUNT, "size": COUNT,
        "parts": {"type": "array", "items": PART_URL, "description": "at most 1000 URLs; next_part pages on"},
        "next_part": {**nullable(COUNT), "description": "GET .../parts?from=next_part for more URLs"},
    }, description="Every part is part_size bytes but the last; PUT each, keep its ETag, then complete."),
    "Upload": {"anyOf": [ref("PresignedPost"), obj({"multipart": ref("MultipartPlan")})],
               "description": "a presigned POST, or a multipart plan from the multipart threshold up"},
    "MultipartParts": obj({
        "upload_id": STRING, "part_size": COUNT, "part_count": COUNT, "size": COUNT,
        "uploaded": {"type": "array", "items": obj({"part_number": COUNT, "size": COUNT, "etag": STRING}),
                     "description": "the parts the store holds (ListParts)"},
        "parts": {"type": "array", "items": PART_URL, "description": "fresh URLs for missing parts from `from`"},
        "next_part": nullable(COUNT),
    }),
})


def multipart_paths() -> dict[str, Schema]:
    """Issue 13 item 4: resume and complete multipart uploads of updates and initial models."""
    update_id = {"name": "update_id", "in": "path", "required": True,
                 "schema": {**STRING, "description": "<round>:<client_id>, as requestUpload answered"}}
    start = {"name": "from", "in": "query", "required": False,
             "schema": {"type": "integer", "minimum": 1, "default": 1}}
    completion = obj({"parts": {"type": "array", "minItems": 1, "items": obj(
        {"part_number": COUNT, "etag": STRING}, closed=True)}}, closed=True)
    errs = errors(400, *AUTH, 404, 409, 410, 413)
    return {
        "/v1/experiments/{experiment_id}/rounds/{n}/updates/{update_id}/parts": {"get": op(
            "listUpdateParts", "The parts S3 holds and fresh URLs for the missing ones (the uploading client)",
            {**ok(200, "The parts", ref("MultipartParts")), **errors(400, *AUTH, 404, 409, 410)},
            tag="participation", params=[EXP_ID, ROUND_N, update_id, start])},
        "/v1/experiments/{experiment_id}/rounds/{n}/updates/{update_id}/complete": {"post": op(
            "completeUpdate", "Complete a multipart upload once every part is in S3 (the uploading client)",
            {**ok(202, "Completed; ingest validates it", obj({"update_id": STRING, "status": {"const": "UPLOADING"}})),
             **errs}, tag="participation", params=[EXP_ID, ROUND_N, update_id], body=json_body(completion))},
        "/v1/experiments/{experiment_id}/model/parts": {"get": op(
            "listInitialModelParts", "The initial model's parts held and URLs for the missing ones (its developer)",
            {**ok(200, "The parts", ref("MultipartParts")), **errors(400, *AUTH, 404, 409)},
            tag="experiments", params=[EXP_ID, start])},
        "/v1/experiments/{experiment_id}/model/complete": {"post": op(
            "completeInitialModel", "Complete the initial model's multipart upload (its developer)",
            {**ok(202, "Completed; ingest validates it", obj({"status": {"const": "UPLOADING"}, "key": STRING})),
             **errors(400, *AUTH, 404, 409, 413)}, tag="experiments", params=[EXP_ID], body=json_body(completion))},
    }


def with_idempotency(all_paths: dict[str, Schema]) -> dict[str, Schema]:
    """Every creating POST takes an optional Idempotency-Key (409 while the first runs, 422 on reuse)."""
    for ops in all_paths.values():
        post = ops.get("post")
        if post and post["operationId"] in CREATING:
            post["parameters"] = [*post.get("parameters", []), {"$ref": "#/components/parameters/IdempotencyKey"}]
            codes = {**post["responses"], **errors(409, 422)}
            post["responses"] = dict(sorted(codes.items()))
    return all_paths


def document() -> Schema:
    return {
        "openapi": "3.1.0",
        "info": {"title": "FMA API", "version": "1",
                 "description": "Serverless federated model aggregation. Errors are "
                                '`{"error": {"code", "message", "details"}}`; see docs/api-contract.md.'},
        "servers": [{"url": "/"}],
        "security": [{"bearer": []}],
        "tags": [{"name": n} for n in ("meta", "tokens", "experiments", "participation", "rounds", "registry")],
        "paths": with_idempotency(paths()),
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer",
                                           "description": "An FMA token: admin, developer, analyst, client "
                                                          "or (for registering only) enrollment."}},
            "parameters": {
                "ExperimentId": {"name": "experiment_id", "in": "path", "required": True,
                                 "schema": {"type": "string", "pattern": "^[A-Za-z0-9-]{1,64}$"}},
                "RoundNumber": {"name": "n", "in": "path", "required": True,
                                "schema": {"type": "integer", "minimum": 0, "maximum": 99_999_999}},
                "Limit": {"name": "limit", "in": "query", "required": False,
                          "schema": {"type": "integer", "minimum": 1, "maximum": 100}},
                "IdempotencyKey": {
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "schema": {"type": "string", "pattern": "^[\\x21-\\x7e]{1,255}$"},
                    "description": "A new random key (a UUID) per logical request: a retry with the same key and "
                                   "body gets the first response (status and body, `Idempotency-Replayed: true`) "
                                   "and creates nothing twice; another body under the key is 422. Scoped to the "
                                   "caller; kept for a day."},
                "Cursor": {"name": "cursor", "in": "query", "required": False,
                           "schema": {"type": "string"}, "description": "`next_cursor` of the previous page"},
            },
            "responses": {f"E{code}": {"description": text,
                                       "content": {"application/json": {"schema": ref("Error")}}}
                          for code, text in ERROR_TEXT.items()},
            "schemas": SCHEMAS,
        },
    }


def render() -> str:
    return json.dumps(document(), indent=2) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="fail if the committed file is stale")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = OUT.read_text() if OUT.exists() else ""
        if current != text:
            print(f"{OUT.relative_to(ROOT)} is stale: run python scripts/gen_openapi.py", file=sys.stderr)
            return 1
        return 0
    OUT.write_text(text)
    print(f"wrote {OUT.relative_to(ROOT)} ({len(text)} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
