"""Read models of rounds for clients, developers, analysts and the dashboard."""

from __future__ import annotations

from typing import Any

from fma.domain.auth import Principal, Role
from fma.domain.clock import iso
from fma.domain.errors import Forbidden, NotFound
from fma.domain.records import EvaluationRecord, RoundRecord, UpdateRecord
from fma.domain.states import RoundState
from fma.services.deps import Deps, model_key
from fma.services.experiments import load_experiment


def weighted(evals: list[EvaluationRecord]) -> dict[str, Any]:
    sums: dict[str, float] = {}
    weights: dict[str, float] = {}
    for e in evals:
        for k, v in e.metrics.items():
            sums[k] = sums.get(k, 0.0) + v * e.num_examples
            weights[k] = weights.get(k, 0.0) + e.num_examples
    return {k: sums[k] / weights[k] for k in sorted(sums)}


def round_public(r: RoundRecord, updates: list[UpdateRecord], evals: list[EvaluationRecord],
                 caller: Principal) -> dict[str, Any]:
    if caller.role == Role.CLIENT:
        updates = [u for u in updates if u.client_id == caller.principal_id]
    info = r.info or {}
    return {
        "round": r.round, "state": str(r.state), "accepted": r.accepted, "rejected": r.rejected, "late": r.late,
        "min_updates": r.min_updates, "deadline": iso(r.deadline) if r.deadline else None,
        "opened_at": iso(r.opened_at), "sealed_at": iso(r.sealed_at) if r.sealed_at else None,
        "published_at": iso(r.published_at) if r.published_at else None,
        "seal_seconds": round(r.sealed_at - r.opened_at, 3) if r.sealed_at else None,
        "aggregation_seconds": r.aggregation_seconds, "metrics": r.metrics or {},
        "evaluation_metrics": weighted(evals), "evaluations": len(evals),
        "model_sha256": r.model_sha256, "manifest_sha256": info.get("manifest_sha256"),
        "privacy": info.get("privacy"), "reason": r.reason,
        "attempts": r.attempts, "plan": info.get("plan"), "cost": info.get("cost"),
        "updates": [{"client_id": u.client_id, "status": str(u.status), "reason": u.reason,
                     "num_examples": u.num_examples, "metrics": u.metrics or {}, "applied_in": u.applied_in}
                    for u in updates],
        # async mode (docs/async.md): the updates whose buffer published this version
        "buffer": _buffer(info.get("buffer"), caller),
    }


def _buffer(entries: list[dict[str, Any]] | None, caller: Principal) -> list[dict[str, Any]] | None:
    """A published version's buffer (None in sync mode); a client sees only its own entries."""
    if entries is None:
        return None
    return [e for e in entries if caller.role != Role.CLIENT or e.get("client_id") == caller.principal_id]


def _detail(deps: Deps, caller: Principal, r: RoundRecord) -> dict[str, Any]:
    evals = deps.repo.list_evaluations(r.experiment_id, r.round)
    if caller.role == Role.CLIENT:  # a client polls its own update: one item, not the whole round
        own = deps.repo.get_update(r.experiment_id, r.round, caller.principal_id)
        return round_public(r, [own] if own else [], evals, caller)
    return round_public(r, deps.repo.list_updates(r.experiment_id, r.round), evals, caller)


def list_rounds(deps: Deps, caller: Principal, experiment_id: str, limit: int, cursor: str | None) -> dict[str, Any]:
    load_experiment(deps, caller, experiment_id)
    page = deps.repo.list_rounds(experiment_id, limit, cursor)
    return {"rounds": [_detail(deps, caller, r) for r in page.items], "next_cursor": page.next_cursor}


def get_round(deps: Deps, caller: Principal, experiment_id: str, n: int) -> dict[str, Any]:
    load_experiment(deps, caller, experiment_id)
    r = deps.repo.get_round(experiment_id, n)
    if r is None:
        raise NotFound(f"round {n} not found", code="ROUND_NOT_FOUND")
    return _detail(deps, caller, r)


def published_model(deps: Deps, caller: Principal, experiment_id: str, n: int) -> dict[str, Any]:
    if caller.role not in (Role.DEVELOPER, Role.ANALYST, Role.ADMIN):
        raise Forbidden("clients fetch the current model through /model", code="FORBIDDEN_ROLE")
    exp = load_experiment(deps, caller, experiment_id)
    if n == 0 and exp.model_version is not None:
        sha = exp.initial_sha256
    else:
        r = deps.repo.get_round(experiment_id, n)
        if r is None or r.state != RoundState.PUBLISHED:
            raise NotFound(f"model of round {n} is not published", code="MODEL_NOT_FOUND")
        sha = r.model_sha256
    key = model_key(experiment_id, n)
    return {"round": n, "sha256": sha, "size": deps.store.size(key),
            "url": deps.store.presigned_get(key, deps.limits.presign_seconds)}
