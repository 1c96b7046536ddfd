"""What a client does in a round: pull the model, upload an update, report an evaluation."""

from __future__ import annotations

import hashlib
import re
from typing import Any

from fma.domain.auth import Principal, Role
from fma.domain.errors import Conflict, Forbidden, Gone, InvalidInput, NotFound, PayloadTooLarge, UpdateRejected
from fma.domain.experiment import Experiment
from fma.domain.records import EvaluationRecord, UpdateRecord
from fma.domain.states import ENDED, ExperimentStatus, RoundState, UpdateStatus
from fma.domain.strategy_catalog import client_config_for
from fma.domain.update_meta import check_metrics
from fma.services import multipart_uploads as multipart
from fma.services.access import require_live_client
from fma.services.bodies import require_object, required_int
from fma.services.deps import Deps, model_key, model_version_id, update_key
from fma.services.experiments import _check_body_size, load_experiment
from fma.services.pointer import poll_url

SHA256 = re.compile(r"^[0-9a-f]{64}$")
#: a refused upload for a round in one of these states arrived after its seal: it is LATE.
SEALED_STATES = (RoundState.SEALED, RoundState.AGGREGATING, RoundState.PUBLISHED)


def model_info(deps: Deps, caller: Principal, experiment_id: str) -> dict[str, Any]:
    """The current global model and the round to train for (None once the experiment ended)."""
    if caller.role not in (Role.CLIENT, Role.DEVELOPER, Role.ADMIN):
        raise Forbidden("only clients and developers fetch the model", code="FORBIDDEN_ROLE")
    exp = load_experiment(deps, caller, experiment_id)
    if exp.model_version is None or exp.model_sha256 is None:
        raise Conflict("the initial model has not been ingested yet", code="MODEL_NOT_READY")
    training = exp.status in (ExperimentStatus.RUNNING, ExperimentStatus.PAUSED)
    # async mode: train on the newest version and post to round version + 1 (docs/async.md)
    n = exp.model_version + 1 if exp.policy.is_async else exp.current_round
    return {
        "round": n if training else None, "version": exp.model_version, "mode": exp.policy.mode,
        "sha256": exp.model_sha256, "status": str(exp.status),
        "url": deps.store.presigned_get(model_key(exp.id, exp.model_version), deps.limits.presign_seconds,
                                        model_version_id(exp, exp.model_version)),
        "client_config": {**exp.client_config, **client_config_for(exp.strategy_name, exp.strategy_params)},
        "poll_url": poll_url(deps.pointer_base_url, exp),
    }


def _open_round_for(deps: Deps, caller: Principal, experiment_id: str, n: int) -> Experiment:
    if caller.role != Role.CLIENT:
        raise Forbidden("only clients upload updates", code="FORBIDDEN_ROLE")
    exp = load_experiment(deps, caller, experiment_id)
    require_live_client(deps, caller)
    if exp.status in ENDED:
        raise Gone(f"experiment is {exp.status}", code="EXPERIMENT_CLOSED")
    if exp.status != ExperimentStatus.RUNNING:
        message = f"experiment is {exp.status}; updates are not accepted now"
        if exp.status == ExperimentStatus.PAUSED and 1 <= n <= exp.current_round:  # work a pause turned away
            deps.repo.record_refusal(experiment_id, n, caller.principal_id, "EXPERIMENT_NOT_RUNNING", message,
                                     deps.clock())
        raise Conflict(message, code="EXPERIMENT_NOT_RUNNING")
    if exp.policy.is_async:  # any published base may be uploaded against; ingest refuses it STALE if too old
        newest = (exp.model_version or 0) + 1
        if not 1 <= n <= newest:
            raise Conflict(f"round {n} trains on version {n - 1}, which is not published (newest round {newest})",
                           code="ROUND_NOT_OPEN", details={"current_round": newest})
        return exp
    if n > exp.current_round:
        raise Conflict(f"round {n} has not started (current round {exp.current_round})", code="ROUND_NOT_OPEN")
    rnd = deps.repo.get_round(experiment_id, n)
    if rnd is None or rnd.state != RoundState.OPEN:
        if rnd is not None and rnd.state in SEALED_STATES:  # too late for this round: counted as late, once
            deps.repo.mark_late(UpdateRecord(experiment_id, n, caller.principal_id, UpdateStatus.LATE,
                                             updated_at=deps.clock()))
        raise Conflict(f"round {n} is closed", code="ROUND_CLOSED", details={"current_round": exp.current_round})
    return exp


def request_upload(deps: Deps, caller: Principal, experiment_id: str, n: int, body: object) -> dict[str, Any]:
    """A presigned POST for the declared size; ingest accepts only bytes of the declared sha256."""
    data = require_object(body, ("size", "sha256"), ("size", "sha256"))
    size = required_int(data, "size", 1, 1 << 62)
    sha = data.get("sha256")
    if not isinstance(sha, str) or not SHA256.fullmatch(sha):
        raise InvalidInput("sha256 must be 64 lowercase hex characters", details={"field": "sha256"})
    exp = _open_round_for(deps, caller, experiment_id, n)
    if size > exp.max_update_bytes:
        raise PayloadTooLarge(f"size {size} exceeds max_update_bytes={exp.max_update_bytes}",
                              details={"limit": exp.max_update_bytes})
    key = update_key(experiment_id, n, caller.principal_id)
    if multipart.wants_multipart(deps, size):
        return _request_multipart(deps, caller, exp, n, key, size, sha)
    deps.repo.begin_upload(experiment_id, n, caller.principal_id, deps.clock(), deps.limits.reconcile_grace_seconds,
                           sha256=sha, size=size)
    upload = deps.store.presigned_post(key, size, size, deps.limits.presign_seconds, sha256=sha)
    return {"update_id": f"{n}:{caller.principal_id}", "upload": upload}


def _request_multipart(deps: Deps, caller: Principal, exp: Experiment, n: int, key: str, size: int,
                       sha: str) -> dict[str, Any]:
    """A multipart plan; an earlier upload of this client's update still in flight is aborted (one
    upload per update, the newest), and so is the new one if the record refuses it."""
    earlier = deps.repo.get_update(exp.id, n, caller.principal_id)
    upload_id = multipart.start(deps, key)
    try:
        deps.repo.begin_upload(exp.id, n, caller.principal_id, deps.clock(), deps.limits.reconcile_grace_seconds,
                               sha256=sha, size=size, upload_id=upload_id)
    except Exception:
        deps.store.multipart_abort(key, upload_id)
        raise
    if earlier is not None and earlier.upload_id and earlier.upload_id != upload_id:
        deps.store.multipart_abort(key, earlier.upload_id)
    body = multipart.plan_body(deps, key, upload_id, multipart.plan_of(deps, size))
    return {"update_id": f"{n}:{caller.principal_id}", "upload": body}


def _multipart_update(deps: Deps, caller: Principal, experiment_id: str, n: int,
                      update_id: str) -> tuple[UpdateRecord, str]:
    """The caller's own UPLOADING multipart update (404 for anyone else's or an unknown id)."""
    if update_id != f"{n}:{caller.principal_id}":
        raise NotFound(f"update {update_id[:80]} not found", code="UPDATE_NOT_FOUND")
    rec = deps.repo.get_update(experiment_id, n, caller.principal_id)
    if rec is None or rec.declared_size is None:
        raise NotFound(f"update {update_id} not found", code="UPDATE_NOT_FOUND")
    if rec.status != UpdateStatus.UPLOADING:
        raise Conflict(f"update {update_id} is {rec.status}, not uploading", code="ALREADY_SUBMITTED")
    if rec.upload_id is None:
        raise NotFound(f"update {update_id} is not a multipart upload", code="UPLOAD_NOT_FOUND")
    return rec, update_key(experiment_id, n, caller.principal_id)


def update_parts(deps: Deps, caller: Principal, experiment_id: str, n: int, update_id: str,
                 from_part: str | None) -> dict[str, Any]:
    """GET .../updates/{update_id}/parts: what a resuming client needs."""
    _open_round_for(deps, caller, experiment_id, n)
    rec, key = _multipart_update(deps, caller, experiment_id, n, update_id)
    plan = multipart.plan_of(deps, rec.declared_size or 0)
    body = multipart.parts_body(deps, key, rec.upload_id, plan, multipart.parse_from(from_part, plan.part_count))
    return {"update_id": update_id, **body}


def complete_update(deps: Deps, caller: Principal, experiment_id: str, n: int, update_id: str,
                    body: object) -> dict[str, Any]:
    """POST .../updates/{update_id}/complete: join the parts the store holds, if they are the plan."""
    _open_round_for(deps, caller, experiment_id, n)
    rec, key = _multipart_update(deps, caller, experiment_id, n, update_id)
    multipart.complete(deps, key, rec.upload_id, multipart.plan_of(deps, rec.declared_size or 0), body)
    return {"update_id": update_id, "status": "UPLOADING"}


def put_update(deps: Deps, caller: Principal, experiment_id: str, n: int, body: bytes) -> dict[str, Any]:
    exp = _open_round_for(deps, caller, experiment_id, n)
    _check_body_size(deps, body, exp.max_update_bytes)
    deps.repo.begin_upload(experiment_id, n, caller.principal_id, deps.clock(), deps.limits.reconcile_grace_seconds,
                           sha256=hashlib.sha256(body).hexdigest())
    deps.store.put(update_key(experiment_id, n, caller.principal_id), body)
    return {"update_id": f"{n}:{caller.principal_id}", "status": "UPLOADING"}


def post_evaluation(deps: Deps, caller: Principal, experiment_id: str, n: int, body: object) -> dict[str, Any]:
    """A client's metrics of the global model published after round n (n=0: the initial model)."""
    if caller.role != Role.CLIENT:
        raise Forbidden("only clients post evaluations", code="FORBIDDEN_ROLE")
    exp = load_experiment(deps, caller, experiment_id)
    require_live_client(deps, caller)
    if exp.status in (ExperimentStatus.STOPPED, ExperimentStatus.FAILED):
        raise Gone(f"experiment is {exp.status}", code="EXPERIMENT_CLOSED")
    data = require_object(body, ("num_examples", "metrics"), ("num_examples", "metrics"))
    num = required_int(data, "num_examples", 1, 10**12)
    try:
        metrics = check_metrics(data["metrics"])
    except UpdateRejected as exc:
        raise InvalidInput(exc.message, code="INVALID_METRICS", details={"field": "metrics"}) from None
    if exp.model_version is None or n > exp.model_version or n < 0:
        raise NotFound(f"model of round {n} is not published", code="MODEL_NOT_FOUND")
    deps.repo.put_evaluation(experiment_id, EvaluationRecord(n, caller.principal_id, num, metrics), deps.clock())
    return {"round": n, "client_id": caller.principal_id}
