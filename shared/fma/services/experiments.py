"""Experiment use cases: create, read, list, change status, enrollment and registration."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any

from fma.domain.aggregation_config import parse_aggregation
from fma.domain.auth import (
    Principal,
    Role,
    can_manage_experiment,
    can_read_experiment,
    hash_token,
    new_token,
    require_role,
)
from fma.domain.clock import iso
from fma.domain.errors import Conflict, Forbidden, InvalidInput, NotFound, PayloadTooLarge
from fma.domain.experiment import Experiment, RoundPolicy, parse_client_config, parse_name
from fma.domain.multipart import MAX_OBJECT_BYTES
from fma.domain.records import Page, TokenRecord
from fma.domain.sharding import MAX_EXPECTED_CLIENTS, shard_count
from fma.domain.states import ENDED, EXPERIMENT_TRANSITIONS, USER_SETTABLE, ExperimentStatus
from fma.domain.strategy_catalog import check_async_strategy, validate_strategy
from fma.domain.update_limits import parse_update_limits
from fma.services import initial_upload
from fma.services.access import client_token_expiry, mint_token
from fma.services.bodies import listing, optional_int, require_object
from fma.services.deps import Deps, model_key
from fma.services.pointer import new_poll_id, registration_poll_url

CREATE_FIELDS = ("name", "strategy", "rounds", "client_config", "max_update_bytes", "from",
                 "update_limits", "aggregation", "expected_clients", "initial_model")


def load_experiment(deps: Deps, caller: Principal, experiment_id: str) -> Experiment:
    """The experiment if the caller may read it; 404 otherwise (no existence oracle).

    A client or enrollment token naming another experiment hears 404 too: that experiment is
    not found *for this token*, whether or not it exists.
    """
    scoped = caller.role in (Role.CLIENT, Role.ENROLLMENT)
    if scoped and caller.experiment_id != experiment_id:
        raise NotFound(f"experiment {experiment_id} not found (this token belongs to another experiment)",
                       code="EXPERIMENT_NOT_FOUND")
    if caller.role == Role.ENROLLMENT:
        raise Forbidden("an enrollment token may only register a client", code="FORBIDDEN_ROLE")
    exp = deps.repo.get_experiment(experiment_id) if _valid_id(experiment_id) else None
    if exp is None or not can_read_experiment(caller, experiment_id, exp.owner):
        raise NotFound(f"experiment {experiment_id} not found", code="EXPERIMENT_NOT_FOUND")
    return exp


def experiment_detail(deps: Deps, caller: Principal, experiment_id: str) -> dict[str, Any]:
    """GET /v1/experiments/{id}: the experiment, its lineage and its registry versions."""
    from fma.services import lineage

    return load_experiment(deps, caller, experiment_id).to_public() | lineage.links(deps, experiment_id)


def load_managed(deps: Deps, caller: Principal, experiment_id: str) -> Experiment:
    exp = load_experiment(deps, caller, experiment_id)
    if not can_manage_experiment(caller, exp.owner):
        raise Forbidden("only the experiment's developer may change it", code="FORBIDDEN_ROLE")
    return exp


def create_experiment(deps: Deps, caller: Principal, body: object) -> dict[str, Any]:
    require_role(caller, Role.DEVELOPER, Role.ADMIN)
    data = require_object(body, CREATE_FIELDS, ("name",))
    strategy = data.get("strategy", {"name": "fedavg"})
    if isinstance(strategy, str):
        strategy = {"name": strategy}
    strategy = require_object(strategy, ("name", "params"), ("name",))
    params = validate_strategy(strategy["name"], strategy.get("params"))
    cap = min(deps.limits.max_update_bytes, MAX_OBJECT_BYTES)
    max_bytes = optional_int(data, "max_update_bytes", min(100 << 20, cap), 1, cap)
    declared = initial_upload.parse_declared(data.get("initial_model"), max_bytes)
    policy = RoundPolicy.parse(data.get("rounds"))
    update_limits = parse_update_limits(data.get("update_limits"))
    _check_robust_quorum(strategy["name"], params, policy)
    if policy.is_async:  # which strategies run on staleness-weighted deltas (issue 15)
        check_async_strategy(strategy["name"], params, server_learning_rate=policy.server_learning_rate,
                             smallest_buffer=policy.smallest_buffer())
    expected = optional_int(data, "expected_clients", deps.limits.expected_clients, 1, MAX_EXPECTED_CLIENTS)
    stamp = iso(deps.clock())
    exp = Experiment(
        id=uuid.uuid4().hex[:16], name=parse_name(data["name"]), owner=caller.principal_id,
        strategy_name=strategy["name"], strategy_params=params, policy=policy,
        client_config=parse_client_config(data.get("client_config")), max_update_bytes=max_bytes,
        update_limits=update_limits, aggregation=parse_aggregation(data.get("aggregation")),
        expected_clients=expected, shards=shard_count(expected), poll_id=new_poll_id(),
        created_at=stamp, updated_at=stamp,
    )
    if data.get("from") is not None:  # a fork starts from another experiment's round (services/lineage.py)
        from fma.services import lineage

        if declared is not None:
            raise InvalidInput("a fork starts from its parent's model: initial_model is not allowed with from",
                               details={"field": "initial_model"})
        return lineage.create_fork(deps, caller, exp, data["from"], load_experiment)
    initial_upload.prepare(deps, exp, declared)
    deps.repo.create_experiment(exp)
    return {"experiment": exp.to_public(), "upload": initial_upload.upload_grant(deps, exp)}


def put_initial_model(deps: Deps, caller: Principal, experiment_id: str, body: bytes) -> dict[str, Any]:
    """Small initial models go through the API; ingest validates them from the S3 event."""
    exp = load_managed(deps, caller, experiment_id)
    if exp.status != ExperimentStatus.PENDING_MODEL:
        raise Conflict("the initial model is already set", code="MODEL_ALREADY_SET")
    _check_body_size(deps, body, exp.max_update_bytes)
    deps.store.put(model_key(exp.id, 0), body)
    return {"status": "UPLOADING", "key": model_key(exp.id, 0)}


def list_experiments(deps: Deps, caller: Principal, limit: int, cursor: str | None, archived: bool = False, *,
                     params: Mapping[str, str | None] | None = None) -> dict[str, Any]:
    """One page, newest first; archived experiments are listed only with `archived=True` (and
    only they); `params` are the query's filters (status, strategy, q; see experiment_list)."""
    from fma.services import experiment_list

    require_role(caller, Role.DEVELOPER, Role.ANALYST, Role.ADMIN)
    filters = experiment_list.parse_filters(params or {})
    owner = caller.principal_id if caller.role == Role.DEVELOPER else None
    page: Page = experiment_list.filtered_page(lambda n, c: deps.repo.list_experiments(owner, n, c, archived),
                                               filters, limit, cursor)
    return {"experiments": [e.to_public() | experiment_list.summary(deps, e) for e in page.items],
            "next_cursor": page.next_cursor}


def patch_experiment(deps: Deps, caller: Principal, experiment_id: str, body: object) -> dict[str, Any]:
    """PATCH: `status` (pause, resume, stop) and/or `archived` (hide from lists), owner or admin."""
    exp = load_managed(deps, caller, experiment_id)
    data = require_object(body, ("status", "archived"))
    if not data:
        raise InvalidInput("send status, archived or both", code="MISSING_FIELD",
                           details={"missing": ["status"], "any_of": ["status", "archived"]})
    archived = data.get("archived", exp.archived)
    if not isinstance(archived, bool):
        raise InvalidInput("archived must be true or false", details={"field": "archived"})
    target = _patch_target(data) if "status" in data else exp.status
    if target != exp.status:
        _check_transition(exp, target)
    if archived != exp.archived:
        exp = deps.repo.set_archived(experiment_id, exp.owner, archived)
    if target == exp.status:
        return exp.to_public()
    allowed = _sources(target)
    if target == ExperimentStatus.STOPPED:  # one transaction with failing the current round
        if not deps.repo.stop_experiment(experiment_id, allowed, "EXPERIMENT_STOPPED: stopped by its developer"):
            raise Conflict(f"cannot change status from {exp.status} to {target}", code="INVALID_TRANSITION")
        updated = deps.repo.get_experiment(experiment_id) or exp
    else:
        updated = deps.repo.set_status(experiment_id, allowed, target)
    return updated.to_public() | {"status": str(target)}


def _patch_target(data: dict[str, Any]) -> ExperimentStatus:
    value = data["status"]
    if not isinstance(value, str) or value not in USER_SETTABLE:
        raise InvalidInput(f"status must be one of: {listing(USER_SETTABLE)}", details={"field": "status"})
    return ExperimentStatus(value)


def _sources(target: ExperimentStatus) -> set[ExperimentStatus]:
    if target == ExperimentStatus.RUNNING:
        return {ExperimentStatus.PAUSED}
    return {s for s, targets in EXPERIMENT_TRANSITIONS.items() if target in targets}


def _check_transition(exp: Experiment, target: ExperimentStatus) -> None:
    if exp.status not in _sources(target):
        raise Conflict(f"cannot change status from {exp.status} to {target}", code="INVALID_TRANSITION")


def create_enrollment_token(deps: Deps, caller: Principal, experiment_id: str, body: object) -> dict[str, Any]:
    exp = load_managed(deps, caller, experiment_id)
    if exp.status in ENDED:
        raise Conflict("experiment has ended", code="EXPERIMENT_CLOSED")
    data = require_object(body, ("expires_in_seconds", "max_uses"))
    expires_in = optional_int(data, "expires_in_seconds", 86400, 60, 90 * 86400)
    max_uses = optional_int(data, "max_uses", None, 1, 1_000_000)
    token, rec = mint_token(deps, Role.ENROLLMENT, f"enroll-{uuid.uuid4().hex[:12]}", experiment_id=exp.id,
                            expires_in=expires_in, max_uses=max_uses, minted_by=caller.principal_id)
    return {"token": token, "token_id": rec.token_id, "expires_at": iso(rec.expires_at), "max_uses": max_uses}


def register_client(deps: Deps, caller: Principal, experiment_id: str, body: object) -> dict[str, Any]:
    if caller.role != Role.ENROLLMENT:
        raise Forbidden("registering needs an enrollment token of this experiment", code="FORBIDDEN_ROLE")
    if caller.experiment_id != experiment_id:
        raise NotFound(f"experiment {experiment_id} not found (this token belongs to another experiment)",
                       code="EXPERIMENT_NOT_FOUND")
    data = require_object(body, ("name",))
    name = data.get("name")
    if name is not None and (not isinstance(name, str) or len(name) > 200):
        raise InvalidInput("name must be a string of at most 200 characters", details={"field": "name"})
    client_id = new_client_id()
    token = new_token()
    rec = TokenRecord(hash_token(token), Role.CLIENT, client_id, experiment_id, client_token_expiry(deps), None, 0,
                      False, name, caller.principal_id)
    deps.repo.register_client(experiment_id, client_id, name, caller.token_hash or "", rec, deps.clock())
    return {"client_id": client_id, "token": token, "token_id": rec.token_id, "expires_at": iso(rec.expires_at),
            "poll_url": registration_poll_url(deps.pointer_base_url, experiment_id, deps.repo.get_experiment)}


def revoke_client(deps: Deps, caller: Principal, experiment_id: str, client_id: str) -> dict[str, Any]:
    """DELETE .../clients/{client_id}: the owner revokes a client's token (its later requests
    are refused with 403) and it no longer counts toward a `"all"` quota."""
    load_managed(deps, caller, experiment_id)
    found = deps.repo.get_client_token_hash(experiment_id, client_id) if _valid_id(client_id) else None
    if found is None:
        raise NotFound(f"client {client_id} not found", code="CLIENT_NOT_FOUND")
    token_hash, revoked = found
    if not revoked:
        deps.repo.revoke_client(experiment_id, client_id, token_hash)
    return {"client_id": client_id, "token_id": token_hash, "revoked": True}


def _check_robust_quorum(name: str, params: dict[str, Any], policy: RoundPolicy) -> None:
    """Bulyan refuses rounds of fewer than 4f+3 updates, Krum of at most 2f+2: refuse a policy
    that could never meet it."""
    f = int(params.get("num_malicious", 0) or 0)
    need = {"bulyan": 4 * f + 3, "krum": 2 * f + 3, "multikrum": 2 * f + 3}.get(name)
    if need is None or f == 0 or policy.min_updates == "all":
        return
    if int(policy.min_updates) < need:
        raise InvalidInput(f"{name} with num_malicious={f} needs rounds.min_updates >= {need}",
                           code="INVALID_STRATEGY_PARAMS", details={"field": "rounds.min_updates", "minimum": need})


def new_client_id() -> str:
    return f"c-{uuid.uuid4().hex[:16]}"


def _check_body_size(deps: Deps, body: bytes, max_bytes: int) -> None:
    limit = min(max_bytes, deps.limits.direct_upload_max_bytes)
    if len(body) > limit:
        raise PayloadTooLarge(f"body of {len(body)} bytes exceeds {limit}; use the presigned upload",
                              details={"limit": limit})
    if not body:
        raise InvalidInput("body is empty", code="EMPTY_BODY")


def _valid_id(value: str) -> bool:
    """ASCII letters, digits and '-' only (`isalnum` would let "²" and lone surrogates through)."""
    return 0 < len(value) <= 64 and value.isascii() and value.replace("-", "").isalnum()
