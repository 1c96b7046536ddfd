"""The initial model's upload: a presigned POST, or (declared `initial_model: {size, sha256}` at
or above the multipart threshold) a multipart upload completed through the API."""

from __future__ import annotations

import re
from typing import Any

from fma.domain.auth import Principal
from fma.domain.errors import Conflict, InvalidInput, NotFound, PayloadTooLarge
from fma.domain.experiment import Experiment
from fma.domain.states import ExperimentStatus
from fma.services import multipart_uploads as multipart
from fma.services.bodies import require_object, required_int
from fma.services.deps import Deps, model_key

SHA256 = re.compile(r"^[0-9a-f]{64}$")


def parse_declared(value: object, max_bytes: int) -> tuple[int, str] | None:
    """`initial_model: {"size", "sha256"}` (optional): what the developer will upload."""
    if value is None:
        return None
    data = require_object(value, ("size", "sha256"), ("size", "sha256"))
    size = required_int(data, "size", 1, 1 << 62)
    sha = data["sha256"]
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        raise InvalidInput("initial_model.sha256 must be 64 lowercase hex characters",
                           details={"field": "initial_model.sha256"})
    if size > max_bytes:
        raise PayloadTooLarge(f"initial_model.size {size} exceeds max_update_bytes={max_bytes}",
                              details={"limit": max_bytes, "field": "initial_model.size"})
    return size, sha


def prepare(deps: Deps, exp: Experiment, declared: tuple[int, str] | None) -> None:
    """Record the declaration on the new experiment and start its multipart upload if it is large."""
    if declared is None:
        return
    exp.initial_declared_size, exp.initial_declared_sha256 = declared
    if multipart.wants_multipart(deps, declared[0]):
        exp.initial_upload_id = multipart.start(deps, model_key(exp.id, 0))


def upload_grant(deps: Deps, exp: Experiment) -> dict[str, Any]:
    """The `upload` of POST /v1/experiments: the multipart plan, or a presigned POST (bound to the
    declared size and sha256 when declared)."""
    key = model_key(exp.id, 0)
    if exp.initial_upload_id is not None and exp.initial_declared_size is not None:
        return multipart.plan_body(deps, key, exp.initial_upload_id, multipart.plan_of(deps, exp.initial_declared_size))
    if exp.initial_declared_size is not None:
        size = exp.initial_declared_size
        return deps.store.presigned_post(key, size, size, deps.limits.presign_seconds,
                                         sha256=exp.initial_declared_sha256)
    return deps.store.presigned_post(key, 1, exp.max_update_bytes, deps.limits.presign_seconds)


def _pending_multipart(deps: Deps, caller: Principal, experiment_id: str) -> Experiment:
    from fma.services.experiments import load_managed

    exp = load_managed(deps, caller, experiment_id)
    if exp.status != ExperimentStatus.PENDING_MODEL:
        raise Conflict("the initial model is already set", code="MODEL_ALREADY_SET")
    if exp.initial_upload_id is None or exp.initial_declared_size is None:
        raise NotFound("this experiment's initial model is not a multipart upload", code="UPLOAD_NOT_FOUND")
    return exp


def model_parts(deps: Deps, caller: Principal, experiment_id: str, from_part: str | None) -> dict[str, Any]:
    """GET /v1/experiments/{id}/model/parts: the parts held and fresh URLs for the missing ones."""
    exp = _pending_multipart(deps, caller, experiment_id)
    plan = multipart.plan_of(deps, exp.initial_declared_size or 0)
    return multipart.parts_body(deps, model_key(exp.id, 0), exp.initial_upload_id, plan,
                                multipart.parse_from(from_part, plan.part_count))


def complete_model(deps: Deps, caller: Principal, experiment_id: str, body: object) -> dict[str, Any]:
    """POST /v1/experiments/{id}/model/complete: ingest then validates and activates."""
    exp = _pending_multipart(deps, caller, experiment_id)
    plan = multipart.plan_of(deps, exp.initial_declared_size or 0)
    multipart.complete(deps, model_key(exp.id, 0), exp.initial_upload_id, plan, body)
    return {"status": "UPLOADING", "key": model_key(exp.id, 0)}
